import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def example_payload() -> dict:
    """The shipped realtime payload with its source made absolute."""
    payload = json.loads((EXAMPLES / "payload.json").read_text())
    payload["source"] = str((EXAMPLES / payload["source"]).resolve())
    return payload
