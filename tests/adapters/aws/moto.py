"""Helpers for tests against the session's moto server (see ``tests/conftest.py``)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.conftest import MOTO_REGION


def queue_lambda_results(endpoint: str, results: list[Any]) -> None:
    """Queue canned Lambda responses: with ``use_docker: false`` moto's Lambda runs no code.

    Each invocation (of any function) pops the next result; with none queued,
    moto answers with the request payload itself.
    """
    body = {"results": [r if isinstance(r, str) else json.dumps(r) for r in results], "region": MOTO_REGION}
    request = urllib.request.Request(
        f"{endpoint}/moto-api/static/lambda-simple/response",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def workflow_results(stages: Any, execution: str = "x") -> list[dict[str, Any]]:
    """The canned Lambda results of one run of a built workflow whose stages have no parts.

    The first stage fans out over its source (docs/architecture.md): its Plan call finds no
    byte range, so its two Maps have no item, and its Manifest call comes next; each later
    stage's Map has no item either, so its manifest assembly is its one call.
    """
    first, *rest = [s.name for s in stages]
    plan = {"stage": first, "ranges": [], "groups": [], "partCount": 0, "rangeCount": 0, "groupCount": 0,
            "counts": {"ranges": 0, "groups": 0}}
    return [plan, stage_result(first, execution), *(stage_result(name, execution) for name in rest)]


def stage_result(stage: str, execution: str = "x") -> dict[str, Any]:
    """A stage pointer with no parts, for moto's canned Lambda results.

    Each later stage's Map then has no item, so the Lambda calls are ETL and then each
    stage's manifest assembly, one per stage, in order.
    """
    return {"stage": stage, "outputKey": f"executions/{execution}/{stage}/output.json", "counts": {"inputCount": 3},
            "partList": f"executions/{execution}/{stage}/parts.jsonl", "parts": []}

