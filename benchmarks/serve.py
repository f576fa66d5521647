"""``python -m benchmarks.serve``: the ``ceap serve`` endpoint over HTTP, beside MiniStack and moto.

All servers run in the same invocation, on 127.0.0.1, on the 5-Pass machine:

(a) sequential through boto3 (one client, one call after the other):
    - ``noop``: boto3 against a server that answers every call at once with the bytes of
      one of ceap's StartSyncExecution replies (same headers, members and size: boto3
      parses the same) - boto3's own ceiling on this machine, measured in blocks of calls
      alternating with ceap's, so both see the same load;
    - ``ceap`` / ``ministack``: Express StartSyncExecution;
    - ``moto`` has no StartSyncExecution: Standard StartExecution then DescribeExecution
      polling until it ended, and ``ceap`` the same way beside it.
(b) server capacity: several client processes, each with keep-alive HTTP connections
    (``http.client``, pre-built signed-less requests: the servers do not check signatures)
    in a few threads, StartSyncExecution for a fixed time; executions/s of the server and
    the CPU the clients used (their user+sys seconds per wall second).

MiniStack pins a botocore that conflicts with aiobotocore, so it runs from a venv of its own
(``--ministack-python``, or one made under ``~/.cache/ceap-bench/ministack`` with pip).

    python -m benchmarks.serve --quick
    python -m benchmarks.serve --json serve-results.json
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .scenarios import FIVE_PASS

__all__ = ["main"]

ROLE = "arn:aws:iam::123456789012:role/bench"
MINISTACK_VERSION = "1.5.33"
ROOT = Path(__file__).resolve().parents[1]


# -- servers ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


@contextmanager
def _process(cmd: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                               cwd=ROOT)
    try:
        _wait_port(port, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def ceap_server(*, workflows: bool = False) -> Iterator[str]:
    """``ceap serve`` on a free port with a temporary ``--data`` (ceap's workflows and their Pipes if ``workflows``)."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as data, _process(
            [sys.executable, "-m", "ceap_engine.cli", "serve", "--port", str(port), "--data", data,
             "--workflows" if workflows else "--no-workflows"], port):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def moto_server() -> Iterator[str]:
    port = _free_port()
    with _process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port):
        url = f"http://127.0.0.1:{port}"
        # By default moto leaves executions RUNNING; this makes it interpret them.
        request = urllib.request.Request(f"{url}/moto-api/config", method="POST", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode())
        urllib.request.urlopen(request, timeout=10).read()
        yield url


def ministack_python(given: str | None) -> str:
    if given:
        return given
    venv = Path.home() / ".cache" / "ceap-bench" / f"ministack-{MINISTACK_VERSION}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"ministack=={MINISTACK_VERSION}"], check=True)
    return str(python)


@contextmanager
def ministack_server(python: str) -> Iterator[str]:
    port = _free_port()
    with _process([python, "-m", "ministack"], port, {"GATEWAY_PORT": str(port), "BIND_HOST": "127.0.0.1"}):
        yield f"http://127.0.0.1:{port}"


def captured_reply(url: str, arn: str) -> bytes:
    """The bytes of one StartSyncExecution reply of the server at ``url`` (status line, headers, body).

    The no-op server answers with these: boto3 then parses the same members, headers and
    size from both, and the ratio of the two measures the server's own time.
    """
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/", json.dumps({"stateMachineArn": arn, "input": "{}"}).encode(),
                           {"X-Amz-Target": "AWSStepFunctions.StartSyncExecution", "Content-Type": "application/x-amz-json-1.0"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200 or b'"SUCCEEDED"' not in body:
        raise RuntimeError(f"StartSyncExecution answered {response.status}: {body[:200]!r}")
    head = "".join(f"{name}: {value}\r\n" for name, value in response.getheaders())
    return f"HTTP/1.1 {response.status} {response.reason}\r\n{head}\r\n".encode("latin-1") + body


def _noop_main(port: int, ready: Any, reply: bytes) -> None:
    """A server that answers every request with ``reply`` at once (the client's ceiling)."""

    class Answer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                head, sep, rest = self.buffer.partition(b"\r\n\r\n")
                if not sep:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if len(rest) < length:
                    return
                self.buffer = rest[length:]
                self.transport.write(reply)  # type: ignore[attr-defined]

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", port)
        ready.set()
        await server.serve_forever()

    asyncio.run(serve())


@contextmanager
def noop_server(reply: bytes) -> Iterator[str]:
    """The no-op server on a free port, answering every request with ``reply`` (see :func:`captured_reply`)."""
    port = _free_port()
    ready = multiprocessing.Event()
    process = multiprocessing.Process(target=_noop_main, args=(port, ready, reply), daemon=True)
    process.start()
    ready.wait(30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.join()


# -- clients ------------------------------------------------------------------------------
def _client(url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("stepfunctions", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench", config=Config(inject_host_prefix=False, retries={"max_attempts": 0}))


def _create(client: Any, name: str, machine_type: str) -> str:
    return client.create_state_machine(name=name, definition=json.dumps(FIVE_PASS), roleArn=ROLE,
                                       type=machine_type)["stateMachineArn"]


def sequential_sync(url: str, count: int) -> dict[str, Any]:
    client = _client(url)
    arn = _create(client, f"bench-x-{time.time_ns()}", "EXPRESS")
    for _ in range(min(20, count)):
        client.start_sync_execution(stateMachineArn=arn, input="{}")
    began = time.perf_counter()
    for _ in range(count):
        result = client.start_sync_execution(stateMachineArn=arn, input="{}")
        if result["status"] != "SUCCEEDED":
            raise RuntimeError(f"execution ended {result['status']}")
    wall = time.perf_counter() - began
    return {"executions": count, "seconds": round(wall, 3), "per_second": round(count / wall, 1)}


def sequential_sync_beside_ceiling(url: str, count: int, block: int = 20) -> tuple[dict, dict]:
    """:func:`sequential_sync` on ``url`` and on a no-op server, in alternating blocks of ``block`` calls.

    The no-op server answers with a reply ``url`` gave (:func:`captured_reply`: the same
    headers, members and size), so boto3 does the same work on both and the difference is
    the server's. On a shared machine the load moves within seconds; measured one after the
    other, the ceiling and the server saw different machines. Interleaved, both see the same one.
    """
    server = _client(url)
    arn = _create(server, f"bench-x-{time.time_ns()}", "EXPRESS")
    reply = captured_reply(url, arn)
    with noop_server(reply) as noop_url:
        ours, ceiling = _interleaved({"server": server, "noop": _client(noop_url)}, arn, count, block)
    ceiling["reply_bytes"] = len(reply)
    return ours, ceiling


def _interleaved(clients: dict[str, Any], arn: str, count: int, block: int) -> tuple[dict, dict]:
    seconds = {"server": 0.0, "noop": 0.0}
    for which in clients:
        for _ in range(min(20, count)):
            clients[which].start_sync_execution(stateMachineArn=arn, input="{}")
    done = 0
    while done < count:
        size = min(block, count - done)
        for which in ("noop", "server") if done % (2 * block) == 0 else ("server", "noop"):
            began = time.perf_counter()
            for _ in range(size):
                result = clients[which].start_sync_execution(stateMachineArn=arn, input="{}")
                if result["status"] != "SUCCEEDED":
                    raise RuntimeError(f"execution ended {result['status']}")
            seconds[which] += time.perf_counter() - began
        done += size
    rows = {which: {"executions": count, "seconds": round(seconds[which], 3), "per_second": round(count / seconds[which], 1)}
            for which in seconds}
    rows["noop"]["interleaved_with"] = "a_ceap_sync_express"
    return rows["server"], rows["noop"]


def sequential_standard(url: str, count: int) -> dict[str, Any]:
    client = _client(url)
    arn = _create(client, f"bench-s-{time.time_ns()}", "STANDARD")
    polls = 0
    began = time.perf_counter()
    for i in range(count):
        execution = client.start_execution(stateMachineArn=arn, name=f"e{i}", input="{}")["executionArn"]
        deadline = time.monotonic() + 60
        while True:
            polls += 1
            status = client.describe_execution(executionArn=execution)["status"]
            if status != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{execution} still RUNNING after 60 s")
        if status != "SUCCEEDED":
            raise RuntimeError(f"execution ended {status}")
    wall = time.perf_counter() - began
    return {"executions": count, "seconds": round(wall, 3), "per_second": round(count / wall, 1),
            "describe_calls_per_execution": round(polls / count, 2)}


def _capacity_worker(url: str, arn: str, seconds: float, threads: int, out: Any) -> None:
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"stateMachineArn": arn, "input": "{}"}).encode()
    headers = {"X-Amz-Target": "AWSStepFunctions.StartSyncExecution", "Content-Type": "application/x-amz-json-1.0"}
    counts = [0] * threads
    failures = [0] * threads
    deadline = time.monotonic() + seconds

    def drive(i: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)  # one keep-alive connection per thread
        while time.monotonic() < deadline:
            connection.request("POST", "/", body, headers)
            response = connection.getresponse()
            data = response.read()
            if response.status == 200 and b'"SUCCEEDED"' in data:
                counts[i] += 1
            else:
                failures[i] += 1
        connection.close()

    before = resource.getrusage(resource.RUSAGE_SELF)
    workers = [threading.Thread(target=drive, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    after = resource.getrusage(resource.RUSAGE_SELF)
    out.put({"done": sum(counts), "failed": sum(failures),
             "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)})


def capacity(url: str, *, processes: int, threads: int, seconds: float) -> dict[str, Any]:
    arn = _create(_client(url), f"bench-c-{time.time_ns()}", "EXPRESS")
    queue: Any = multiprocessing.Queue()
    began = time.perf_counter()
    workers = [multiprocessing.Process(target=_capacity_worker, args=(url, arn, seconds, threads, queue))
               for _ in range(processes)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join()
    wall = time.perf_counter() - began
    done = sum(r["done"] for r in results)
    return {"executions": done, "failed": sum(r["failed"] for r in results), "seconds": round(wall, 2),
            "per_second": round(done / seconds, 1), "client_processes": processes, "connections": processes * threads,
            "client_cpu_per_wall_second": round(sum(r["cpu"] for r in results) / wall, 2)}


# -- the run -------------------------------------------------------------------------------
def run(quick: bool, ministack: str | None, skip_ministack: bool) -> dict[str, Any]:
    n = 200 if quick else 1000
    n_slow = 30 if quick else 150  # MiniStack and moto are slow: fewer calls, same method
    cap = {"processes": 3, "threads": 4, "seconds": 3.0 if quick else 10.0}
    rows: dict[str, Any] = {"cpus": os.cpu_count(), "mode": "quick" if quick else "full"}
    with ceap_server() as url:
        rows["a_ceap_sync_express"], rows["a_noop_boto3_ceiling"] = sequential_sync_beside_ceiling(url, n)
        rows["a_ceap_standard_polling"] = sequential_standard(url, n_slow)
        rows["b_ceap_capacity"] = capacity(url, **cap)
        print(json.dumps({k: v for k, v in rows.items() if k.startswith(("a_", "b_"))}), file=sys.stderr, flush=True)
    with moto_server() as url:
        rows["a_moto_standard_polling"] = sequential_standard(url, n_slow)
        print(json.dumps({"a_moto_standard_polling": rows["a_moto_standard_polling"]}), file=sys.stderr, flush=True)
    if not skip_ministack:
        with ministack_server(ministack_python(ministack)) as url:
            rows["a_ministack_sync_express"] = sequential_sync(url, n_slow)
            rows["b_ministack_capacity"] = capacity(url, **cap)
    ceiling = rows["a_noop_boto3_ceiling"]["per_second"]
    rows["a_ceap_share_of_boto3_ceiling"] = round(rows["a_ceap_sync_express"]["per_second"] / ceiling, 3)
    if "b_ministack_capacity" in rows and rows["b_ministack_capacity"]["per_second"]:
        rows["b_ceap_over_ministack"] = round(rows["b_ceap_capacity"]["per_second"] / rows["b_ministack_capacity"]["per_second"], 1)
    rows["a_ceap_over_moto_standard"] = round(rows["a_ceap_standard_polling"]["per_second"]
                                              / rows["a_moto_standard_polling"]["per_second"], 1)
    return rows


def run_reported(*, quick: bool, progress: Any) -> dict[str, Any]:
    """:func:`run` for ``python -m benchmarks``: a failure is reported in the document, not raised."""
    print("[serve] ceap serve beside MiniStack and moto ...", end="", file=progress, flush=True)
    started = time.perf_counter()
    try:
        rows = run(quick, None, False)
    except Exception as exc:  # noqa: BLE001 - the rest of the run's results still count
        print(f" FAILED {exc}", file=progress, flush=True)
        return {"error": f"{type(exc).__name__}: {exc}"}
    print(f" {time.perf_counter() - started:.1f} s", file=progress, flush=True)
    print(json.dumps(rows, indent=2), file=progress, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and a 3 s capacity run")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    parser.add_argument("--ministack-python", metavar="PYTHON", help="a Python with ministack==1.5.33 installed")
    parser.add_argument("--no-ministack", action="store_true", help="leave MiniStack out")
    args = parser.parse_args(argv)
    rows = run(args.quick, args.ministack_python, args.no_ministack)
    text = json.dumps(rows, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
