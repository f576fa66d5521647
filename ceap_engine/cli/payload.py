"""The checks a pipeline payload passes before anything runs or is written (``ceap run``, ``ceap send``).

A payload is checked with the first stage's own input model, then for what
the model lets through but the run would trip over later: unknown fields
(a typo of an optional field is otherwise silently ignored), dates given as
numbers (pydantic reads ``5`` as 1970-01-01T00:00:05), a source whose
extension no reader knows, a size over Step Functions' input limit.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ceap_engine.asl.interpreter import INPUT_LIMIT_BYTES
from ceap_engine.asl.payload import payload_size
from ceap_engine.pipeline import WorkflowSpec
from ceap_engine.pipeline.stage_runtime import describe_errors, load_stage_function

from ..errors import InputError, Problem
from ._options import read_payload

__all__ = ["check_payload", "read_payload", "validate_payload"]


def _field_names(model: Any) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def validate_payload(spec: WorkflowSpec, payload: dict[str, Any]) -> None:
    """Every problem of ``payload`` for ``spec``'s first stage, with its path, at once.

    >>> from ceap_engine.pipeline import REALTIME
    >>> validate_payload(REALTIME, {"programId": "p", "marketplace": "US", "source": "o.jsonl",
    ...                             "dateRange": {"start": "2025-03-01", "end": "2025-03-31"}})
    """
    from pydantic import ValidationError

    first = load_stage_function(spec.stages[0].function)  # type: ignore[arg-type]
    problems: list[Problem] = []
    try:
        first.input_model.model_validate(payload)
    except ValidationError as exc:
        problems += [
            Problem("/" + "/".join(str(p) for p in err.get("loc", ())), str(err.get("msg")), "INVALID_PAYLOAD")
            for err in exc.errors()
        ] or [Problem("/", describe_errors(exc), "INVALID_PAYLOAD")]
    known = _field_names(first.input_model)
    for key in sorted(set(payload) - known):
        problems.append(Problem(f"/{key}", f"unknown field {key!r} (the payload's fields: {', '.join(sorted(known))})",
                                "UNKNOWN_FIELD"))
    date_range = payload.get("dateRange")
    if isinstance(date_range, dict):
        for end in ("start", "end"):
            value = date_range.get(end)
            if value is not None and not isinstance(value, str):
                problems.append(Problem(f"/dateRange/{end}", f"dateRange.{end} must be an ISO 8601 date or date-time "
                                        f"string such as \"2025-03-31\", not {value!r}", "INVALID_PAYLOAD"))
    source = payload.get("source")
    if isinstance(source, str) and source:
        problem = _source_problem(first.function, source)
        if problem:
            problems.append(Problem("/source", problem, "INVALID_PAYLOAD"))
    size = payload_size(payload)
    if size > INPUT_LIMIT_BYTES:
        problems.append(Problem("/", f"the payload is {size} bytes; Step Functions accepts at most {INPUT_LIMIT_BYTES} "
                                     "bytes of execution input: put the data in the source file, not the payload",
                                "PAYLOAD_TOO_LARGE"))
    if problems:
        raise InputError(problems, "payload")


def _source_problem(function: Any, source: str) -> str | None:
    """What the first stage's own ``source_format`` (if its module has one) says about ``source``."""
    module = importlib.import_module(getattr(function, "__module__", "") or "builtins")
    source_format = getattr(module, "source_format", None)
    if source_format is None:
        return None
    try:
        source_format(source)
    except Exception as exc:  # noqa: BLE001 - the stage's own words, whichever error type it raises
        return str(exc)
    return None


def check_payload(spec: WorkflowSpec, payload: dict[str, Any], payload_path: Path) -> dict[str, Any]:
    """Validate a local run's payload; resolve a relative local source against the payload file's folder."""
    source = payload.get("source")
    resolved = None
    if isinstance(source, str) and source and not source.startswith("s3://"):
        resolved = (payload_path.parent / source).resolve() if not Path(source).is_absolute() else Path(source)
        if resolved.is_dir():  # before the extension check: "a folder" is what is wrong with it
            raise InputError([Problem("/source", f"source {resolved} is a folder: name one file (.jsonl, .json or .csv)",
                                      "INVALID_PAYLOAD")], "payload")
    validate_payload(spec, payload)
    if resolved is not None:
        if not resolved.is_file():
            raise InputError([Problem("/source", f"source file not found: {resolved} (a relative source is relative "
                                                 "to the payload file's folder)", "INVALID_PAYLOAD")], "payload")
        payload = {**payload, "source": str(resolved)}
    return payload
