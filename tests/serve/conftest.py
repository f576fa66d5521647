"""A real ``ceap serve`` on a free port, driven with boto3 (Step Functions and SQS) and the AWS CLI.

The server is started as a subprocess with ``--port 0`` and is ready when it prints its
readiness line (which names the port it bound): no fixed sleep, no port race.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
from botocore.config import Config

READY = "ceap serve: listening on "
ROLE = "arn:aws:iam::123456789012:role/ceap-test"

MOCK_CONFIG = {
    "StateMachines": {
        "Mocked": {"TestCases": {
            "HappyPath": {"Charge": "ChargeOk"},
            "Declined": {"Charge": "ChargeDeclined"},
        }}
    },
    "MockedResponses": {
        "ChargeOk": {"0": {"Return": {"StatusCode": 200, "Payload": {"charged": True}}}},
        "ChargeDeclined": {"0-1": {"Throw": {"Error": "Card.Declined", "Cause": "insufficient funds"}}},
    },
}


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    data: Path
    lines: list[str]

    def client(self, **config):
        return boto3.client(
            "stepfunctions", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="test",
            aws_secret_access_key="test", config=Config(inject_host_prefix=False, retries={"max_attempts": 1}, **config),
        )

    def sqs(self):
        """A boto3 SQS client (the AWS JSON protocol) on this server."""
        return boto3.client("sqs", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="test",
                            aws_secret_access_key="test", config=Config(retries={"max_attempts": 1}))

    def kill(self) -> None:
        """kill -9: no shutdown hook runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(data: Path, *args: str, env: dict | None = None) -> Server:
    """Start ``ceap serve`` and return once it printed its readiness line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ceap_engine.cli", "serve", "--port", "0", "--data", str(data), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parents[2],
    )
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if line.startswith(READY):
            url = line[len(READY):].split()[0]
            # Keep draining its output so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [lines.append(x) for x in process.stdout], daemon=True).start()
            return Server(process, url, data, lines)
    process.wait()
    raise RuntimeError("ceap serve exited before it was ready:\n" + "".join(lines))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("serve")
    mock_file = data / "mocks.json"
    mock_file.write_text(json.dumps(MOCK_CONFIG))
    running = start_server(data, "--mock-config", str(mock_file), "--function", "Echo=tests.serve.handlers:echo")
    yield running
    running.stop()


@pytest.fixture
def sfn(server: Server):
    return server.client()
