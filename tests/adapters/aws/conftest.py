"""Fixtures of the AWS adapter tests: Lambda-platform wheels, fetched from the package index once per session."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.aws.packaging import LambdaBuild, dependency_pins, fetch_wheels

WheelReport = list[str]


@pytest.fixture(scope="session")
def lambda_wheels(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, WheelReport]]:
    """``lambda_wheels("3.12")``: a folder of manylinux x86_64 wheels for that CPython, and what the download reported.

    Every CPython's wheels go to one folder: the pure wheels fetched for one are taken as they are
    for the next (fetch_wheels picks the wheels that fit its runtime), so only its compiled ones are
    downloaded - a third of the index calls.
    """
    made: dict[str, tuple[Path, WheelReport]] = {}
    folder = tmp_path_factory.mktemp("lambda-wheels")

    def get(python: str) -> tuple[Path, WheelReport]:
        if python not in made:
            lines: WheelReport = []
            build = LambdaBuild(python=python)
            fetch_wheels(dependency_pins(python=python), build, folder, report=lines.append)
            made[python] = (folder, lines)
        return made[python]

    return get


@pytest.fixture(scope="session")
def lambda_wheelhouse(lambda_wheels: Callable[[str], tuple[Path, WheelReport]]) -> Path:
    """Wheels for the default Lambda runtime (python3.12, manylinux x86_64)."""
    return lambda_wheels("3.12")[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def ministack_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MiniStack server (``python -m ministack``) on 127.0.0.1 for the session; yields its endpoint URL.

    Started like the moto server: its own port (``GATEWAY_PORT``), bound to 127.0.0.1
    (``BIND_HOST``), ready when it logs ``Running on http://127.0.0.1:PORT``; stopped at
    the end with the Lambda workers it started (its own process group).
    """
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    folder = tmp_path_factory.mktemp("ministack")
    empty = folder / "no-aws-config"
    empty.write_text("")
    patch = pytest.MonkeyPatch()
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": str(empty),
                        "AWS_SHARED_CREDENTIALS_FILE": str(empty)}.items():
        patch.setenv(name, value)
    patch.delenv("AWS_SESSION_TOKEN", raising=False)
    patch.delenv("AWS_PROFILE", raising=False)
    patch.delenv("AWS_ENDPOINT_URL", raising=False)
    server = subprocess.Popen(
        [sys.executable, "-m", "ministack"],
        env={**os.environ, "GATEWAY_PORT": str(port), "BIND_HOST": "127.0.0.1", "TMPDIR": str(folder)},
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log = folder / "ministack.log"

    def pump() -> None:  # keeps reading, so the pipe never fills; the first lines also go to `lines`
        assert server.stdout is not None
        with log.open("w") as out:
            for raw in server.stdout:
                text = raw.decode(errors="replace")
                out.write(text)
                out.flush()
                lines.put(text)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    ready = f"Running on {endpoint}"
    try:
        deadline = time.monotonic() + 60
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError(f"MiniStack exited before it was ready: {log.read_text()[-2000:]}")
            if ready in line:
                break
        yield endpoint
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        except ProcessLookupError:
            pass
        patch.undo()
