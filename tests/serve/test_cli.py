"""``ceap serve`` arguments: bad input exits 2 before anything listens."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def serve(*args: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ceap_engine.cli", "serve", "--data", str(tmp_path), "--no-workflows", *args],
                          check=False, capture_output=True, text=True, timeout=120)


def test_a_port_in_use_is_a_clear_error(tmp_path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        out = serve("--port", str(taken.getsockname()[1]), tmp_path=tmp_path)
    assert out.returncode == 2
    assert "cannot listen on 127.0.0.1" in out.stderr and "--port" in out.stderr


@pytest.mark.parametrize(("args", "says"), [
    (("--function", "nothing"), "use NAME=module:attr"),
    (("--function", "F=no.such.module:f"), "cannot load no.such.module:f"),
    (("--aws-endpoint-url", "localhost:4566"), "give an http(s):// URL or 'aws'"),
    (("--wait-time-scale", "-1"), "must be >= 0"),
    (("--mock-config", "/no/such/file.json"), "mock config file not found"),
])
def test_bad_arguments_exit_2(tmp_path, args, says) -> None:
    out = serve(*args, tmp_path=tmp_path)
    assert out.returncode == 2, out.stderr
    assert says in out.stderr
