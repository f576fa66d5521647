"""glibc's malloc tuned for ceap's processes (ceap_engine.runtime.memory).

Each probe runs in a fresh interpreter (mallopt is process-wide) and reads glibc's own
account of its heaps, ``malloc_info``: what the settings decide, not the peak RSS they
save, which depends on the host's allocator state.
"""

import json
import subprocess
import sys
from pathlib import Path

from ceap_engine.runtime.memory import fix_mmap_threshold, limit_malloc_arenas

ROOT = Path(__file__).resolve().parents[2]

# glibc's malloc_info as a string, for the probes below.
MALLOC_INFO = """
import ctypes, ctypes.util, os, re, tempfile
def malloc_info():
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
        text = f.read()
    os.unlink(path)
    return text
"""


def _probe(code: str, mode: str) -> dict:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", MALLOC_INFO + code, mode], capture_output=True, text=True, check=True,
                          env=env)
    return json.loads(done.stdout)


def test_the_environment_wins_over_the_settings(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert limit_malloc_arenas() is False
    assert fix_mmap_threshold() is False


def test_stage_calls_in_threads_allocate_in_one_arena():
    # As the stage runtime does: each call a new event loop, the part's records made in a thread
    # (asyncio.to_thread), encoded back on the loop's thread, all dropped. malloc_info lists the
    # arenas (<heap nr=...>): each call's new thread gets one of its own by default, none with the cap.
    probe = """
import asyncio, json, sys
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
print(json.dumps({"capped": capped, "heaps": len(re.findall(r'<heap nr="\\d+">', malloc_info()))}))
"""
    runs = {mode: _probe(probe, mode) for mode in ("cap", "default")}
    assert runs["cap"] == {"capped": True, "heaps": 1}
    assert runs["default"]["capped"] is False and runs["default"]["heaps"] > 1


def test_a_big_buffer_is_mapped_even_after_one_was_freed():
    # A 4 MiB piece of a source read, freed, then the next one: glibc's default raises its mmap
    # threshold to the freed size and carves the next piece from the heap; with the fixed
    # threshold it is mapped on its own (and unmapped when freed). malloc_info's mmap total
    # counts the bytes mapped that way now.
    probe = """
import json, sys
from ceap_engine.runtime.memory import fix_mmap_threshold
fixed = fix_mmap_threshold() if sys.argv[1] == "fixed" else False
piece = bytes(4 << 20)
del piece
piece = bytes(4 << 20)
mapped = int(re.search(r'<total type="mmap" count="\\d+" size="(\\d+)"/>', malloc_info()).group(1))
print(json.dumps({"fixed": fixed, "mapped": mapped}))
"""
    runs = {mode: _probe(probe, mode) for mode in ("fixed", "default")}
    assert runs["fixed"]["fixed"] is True and runs["fixed"]["mapped"] >= 4 << 20
    assert runs["default"]["fixed"] is False and runs["default"]["mapped"] < 4 << 20
