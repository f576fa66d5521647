import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ceap(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real ``ceap`` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "ceap_engine.cli", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def json_out(proc: subprocess.CompletedProcess) -> dict:
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:  # pragma: no cover - shows what went wrong
        raise AssertionError(f"not JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None


@pytest.fixture
def run_ceap():
    return ceap
