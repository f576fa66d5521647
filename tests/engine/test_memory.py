"""glibc's malloc arenas capped for ceap's processes (ceap_engine.runtime.memory)."""

import json
import subprocess
import sys
from pathlib import Path

from ceap_engine.runtime.memory import limit_malloc_arenas

ROOT = Path(__file__).resolve().parents[2]


def test_the_environment_wins_over_the_cap(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


def test_stage_calls_in_threads_allocate_in_one_arena():
    # As the stage runtime does: each call a new event loop, the part's records made in a thread
    # (asyncio.to_thread), encoded back on the loop's thread, all dropped. glibc's malloc_info lists
    # the arenas (<heap nr=...>): each call's new thread gets one of its own by default, none with
    # the cap. (The peak RSS this saves, 64 against 74 MiB on one host, depends on the host's
    # allocator state and is no test's business; the arena count is what the cap decides.)
    probe = """
import asyncio, ctypes, ctypes.util, json, os, re, sys, tempfile
from ceap_engine.runtime.memory import limit_malloc_arenas
capped = limit_malloc_arenas() if sys.argv[1] == "cap" else False
line = json.dumps({"customerId": "C-000123", "optIns": {"email": True}, "text": "x" * 300})
body = "\\n".join(line for _ in range(10_000))
def stage(text):
    return [json.loads(l) for l in text.splitlines()]
async def call(i):
    records = await asyncio.to_thread(stage, body.replace("C-000123", f"C-{i:06d}"))
    return len([json.dumps(r) for r in records])
for i in range(4):
    asyncio.run(call(i))
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
fd, path = tempfile.mkstemp()
os.close(fd)
stream = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, stream)
libc.fclose(stream)
with open(path) as f:
    heaps = len(re.findall(r'<heap nr="\\d+">', f.read()))
os.unlink(path)
print(json.dumps({"capped": capped, "heaps": heaps}))
"""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    runs = {mode: json.loads(subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True,
                                            check=True, env=env).stdout) for mode in ("cap", "default")}
    assert runs["cap"] == {"capped": True, "heaps": 1}
    assert runs["default"]["capped"] is False and runs["default"]["heaps"] > 1
