"""Local history: executions kept in the execution journal, read back in AWS's shapes.

One journal serves ``ceap serve`` and local runs (no second copy of any history).
This module needs only the reading half of it - :class:`ExecutionReader`, which the
journal port (``ExecutionJournal``: ``list_executions``, ``get_execution``,
``events``, ``resources``) satisfies as it is - and writes through
:func:`record_execution`. Records are the journal's ``ExecutionRecord``s (or anything
with the same attributes); events are GetExecutionHistory-shaped dicts with epoch
timestamps, as the journal keeps them.

Example::

    record = find_execution(journal, "nightly-2026-12-01")
    document = execution_document(record, journal.events(record.execution_arn))
    document["status"], len(document["events"])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ..asl.history import iso_timestamp
from ..errors import InputError, Problem

__all__ = ["ExecutionReader", "definition_of", "execution_document", "execution_rows", "find_execution",
           "record_execution"]


class ExecutionReader(Protocol):
    """What reading local history needs of the execution journal (a subset of its port)."""

    def list_executions(self, state_machine_arn: str | None = None, status: str | None = None) -> list[Any]: ...

    def get_execution(self, execution_arn: str) -> Any | None: ...

    def events(self, execution_arn: str, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]: ...

    def resources(self, kind: str) -> list[dict[str, Any]]: ...


def find_execution(reader: ExecutionReader, name_or_arn: str) -> Any:
    """The execution with this ARN, or the only one with this name; otherwise an InputError saying why.

    Example::

        find_execution(journal, "run-1").name   # 'run-1'
    """
    if name_or_arn.startswith("arn:"):
        record = reader.get_execution(name_or_arn)
        if record is None:
            raise InputError([Problem("/name", f"no execution {name_or_arn} in the journal")], "arguments")
        return record
    matches = [r for r in reader.list_executions() if r.name == name_or_arn]
    if not matches:
        known = ", ".join(r.name for r in reader.list_executions()[:5]) or "none yet"
        raise InputError([Problem("/name", f"no execution named {name_or_arn!r} in the journal (latest: {known}); "
                                           "'ceap executions list' shows them all")], "arguments")
    if len(matches) > 1:
        arns = "; ".join(r.execution_arn for r in matches)
        raise InputError([Problem("/name", f"{len(matches)} executions are named {name_or_arn!r}; give the ARN of one: {arns}")],
                         "arguments")
    return matches[0]


def _iso(value: float | None) -> str | None:
    return None if value is None else iso_timestamp(float(value))


def _json_or_none(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def execution_document(record: Any, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """DescribeExecution's fields and the history, shaped as ``ceap asl run --format json`` prints them."""
    shown = []
    for event in events:
        copy = dict(event)
        if isinstance(copy.get("timestamp"), int | float):
            copy["timestamp"] = iso_timestamp(float(copy["timestamp"]))
        shown.append(copy)
    return {
        "schemaVersion": 1,
        "executionArn": record.execution_arn,
        "name": record.name,
        "stateMachineArn": record.state_machine_arn,
        "type": record.type,
        "status": record.status,
        "startDate": _iso(record.start_date),
        "stopDate": _iso(record.stop_date),
        "input": _json_or_none(record.input),
        "output": _json_or_none(record.output) if record.status == "SUCCEEDED" else None,
        "error": record.error,
        "cause": record.cause,
        "events": shown,
    }


def execution_rows(records: Sequence[Any]) -> list[dict[str, Any]]:
    """ListExecutions' items for these records (newest first, as the journal gives them)."""
    return [{"executionArn": r.execution_arn, "stateMachineArn": r.state_machine_arn, "name": r.name, "type": r.type,
             "status": r.status, "startDate": _iso(r.start_date), "stopDate": _iso(r.stop_date)} for r in records]


def definition_of(reader: ExecutionReader, record: Any) -> dict[str, Any] | None:
    """The definition the execution ran: kept with a local run, or its state machine's revision (``ceap serve``)."""
    text = (record.extra or {}).get("definition")
    if text is None:
        machine = next((d for d in reader.resources("stateMachine") if d.get("stateMachineArn") == record.state_machine_arn), None)
        revision = (machine or {}).get("revisionId")
        text = next((d.get("definition") for d in reader.resources("revision") if d.get("revisionId") == revision), None)
        if text is None and machine is not None:
            text = machine.get("definition")
    if text is None:
        return None
    return json.loads(text) if isinstance(text, str) else dict(text)


def record_execution(journal: Any, result: Any, *, definition: Mapping[str, Any], execution_type: str,
                     make_record: Callable[..., Any], extra: Mapping[str, Any] | None = None) -> Any:
    """Keep a finished local execution (an ``ExecutionResult``) in the journal, history included.

    ``make_record`` builds the journal's record (``ExecutionRecord``); the definition is kept with it,
    so a report can be drawn later from the journal alone.
    """
    record = make_record(
        execution_arn=result.execution_arn, state_machine_arn=result.state_machine_arn, name=result.name,
        type=execution_type, status=result.status, start_date=result.start_time, stop_date=result.stop_time,
        input=json.dumps(result.input), output=json.dumps(result.output) if result.status == "SUCCEEDED" else None,
        error=result.error, cause=result.cause,
        extra={"definition": json.dumps(definition), "recordedBy": "ceap run", **(extra or {})},
    )
    # A name run again (ceap's execution-name rule re-runs or resumes it) is one execution with the
    # latest run's history: the earlier record and its events are replaced, never appended to.
    if journal.get_execution(result.execution_arn) is not None:
        journal.delete_execution(result.execution_arn)
    journal.put_execution(record)
    if result.history is not None:
        journal.append_events(result.execution_arn, result.history.to_aws("epoch"))
    return record
