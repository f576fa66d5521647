"""Distributed Map runs as the API shows them: DescribeMapRun, UpdateMapRun, and their child executions.

The engines of the server report every run to one :class:`ServedMapRuns`
(:class:`~ceap_engine.asl.map_run.MapRuns`); while it runs it answers from the live run
(counts, settings UpdateMapRun may change), and when it ends its description is journaled
(resource kind ``mapRun``), so DescribeMapRun answers after a restart too. Child executions
(Standard or Express, as AWS shows both when a Map Run dispatched them) are kept in memory
for the last :data:`KEPT_RUNS` runs: DescribeExecution, ListExecutions by ``mapRunArn``, and
GetExecutionHistory for Standard children.

Example::

    map_runs = ServedMapRuns(journal)
    engine.map_runs = map_runs
    map_runs.describe("arn:aws:states:us-east-1:123456789012:mapRun:m/Fan:1b2c...")
"""

from __future__ import annotations

import json
from typing import Any

from ceap_engine.asl.map_run import ChildExecution, MapRun, MapRuns
from ceap_engine.ports import ExecutionJournal, ExecutionRecord
from ceap_engine.serve.errors import ServiceError

__all__ = ["KEPT_RUNS", "ServedMapRuns"]

KEPT_RUNS = 100
"""Ended runs whose child executions stay visible (their descriptions are journaled for good)."""


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class ServedMapRuns(MapRuns):
    """Every map run of the server's engines, by ARN, and their child executions."""

    def __init__(self, journal: ExecutionJournal) -> None:
        super().__init__()
        self.journal = journal
        self.children: dict[str, tuple[MapRun, ChildExecution]] = {}
        self.on_end.append(self._journal_ended)

    def _journal_ended(self, run: MapRun) -> None:
        self.journal.put_resource("mapRun", run.arn, self._describe(run))
        ended = [r for r in self.runs.values() if r.status != "RUNNING"]
        for old in ended[:max(0, len(ended) - KEPT_RUNS)]:
            self.runs.pop(old.arn, None)
            for child in old.children:
                self.children.pop(child.arn, None)

    # -- DescribeMapRun / UpdateMapRun ----------------------------------------------------
    @staticmethod
    def check_arn(arn: str) -> None:
        parts = arn.split(":")
        if len(parts) != 8 or parts[0] != "arn" or parts[2] != "states" or parts[5] != "mapRun" or "/" not in parts[6]:
            raise ServiceError("InvalidArn", f"Invalid Arn: '{arn}'")

    def live(self, arn: str) -> MapRun | None:
        self.check_arn(arn)
        return self.runs.get(arn)

    def describe(self, arn: str) -> dict[str, Any]:
        run = self.live(arn)
        if run is not None:
            return self._describe(run)
        for doc in self.journal.resources("mapRun"):
            if doc["mapRunArn"] == arn:
                return doc
        raise ServiceError("ResourceNotFound", f"Resource not found: '{arn}'")

    def update(self, body: dict[str, Any]) -> None:
        arn = body["mapRunArn"]
        run = self.live(arn)
        if run is None:
            self.describe(arn)  # ResourceNotFound unless it ran
            raise ServiceError("ValidationException", f"Map Run is not running: '{arn}'")
        settings = ("maxConcurrency", "toleratedFailurePercentage", "toleratedFailureCount")
        if not any(body.get(key) is not None for key in settings):
            raise ServiceError("ValidationException", "Specify at least one of maxConcurrency, "
                               "toleratedFailurePercentage or toleratedFailureCount")
        if run.status != "RUNNING":
            raise ServiceError("ValidationException", f"Map Run is not running: '{arn}' (status {run.status})")
        percentage = body.get("toleratedFailurePercentage")
        run.update(max_concurrency=body.get("maxConcurrency"), tolerated_count=body.get("toleratedFailureCount"),
                   tolerated_percentage=None if percentage is None else float(percentage))

    def _describe(self, run: MapRun) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "mapRunArn": run.arn, "executionArn": run.execution_arn, "status": run.status,
            "startDate": run.start_date, "maxConcurrency": run.max_concurrency,
            "toleratedFailurePercentage": float(run.tolerated_percentage or 0),
            "toleratedFailureCount": int(run.tolerated_count or 0),
            "itemCounts": run.counts(by_items=True), "executionCounts": run.counts(), "redriveCount": 0,
        }
        if run.stop_date is not None:
            doc["stopDate"] = run.stop_date
        return doc

    # -- child executions -------------------------------------------------------------------
    def child(self, execution_arn: str) -> tuple[MapRun, ChildExecution] | None:
        found = self.children.get(execution_arn)
        if found is None:  # index what the runs started since the last look
            for run in self.runs.values():
                for child in run.children:
                    self.children.setdefault(child.arn, (run, child))
            found = self.children.get(execution_arn)
        return found

    def record(self, execution_arn: str) -> ExecutionRecord | None:
        """A child execution as DescribeExecution shows it (``None``: no child of a kept run)."""
        found = self.child(execution_arn)
        return None if found is None else _record(*found)

    def executions(self, map_run_arn: str, status: str | None) -> list[ExecutionRecord]:
        """ListExecutions by ``mapRunArn``: the run's children, newest first."""
        run = self.live(map_run_arn)
        if run is None:
            self.describe(map_run_arn)  # ResourceNotFound unless it ran
            return []  # ended before this server started: its children are not kept
        records = [_record(run, c) for c in run.children if status is None or c.status == status]
        records.sort(key=lambda r: (r.stop_date or r.start_date), reverse=True)
        return records

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        """A Standard child's events, between its ExecutionStarted and its end."""
        found = self.child(execution_arn)
        assert found is not None
        run, child = found
        inner = child.frame.execution.history.to_aws("epoch") if child.frame is not None else []
        events = [{"timestamp": child.start_date, "type": "ExecutionStarted", "id": 1, "previousEventId": 0,
                   "executionStartedEventDetails": {"input": _json_text(child.input),
                                                    "inputDetails": {"truncated": False}}}]
        for event in inner:
            events.append(event | {"id": event["id"] + 1, "previousEventId": event["previousEventId"] + 1})
        last = events[-1]["id"]
        end = {"SUCCEEDED": ("ExecutionSucceeded", {"output": _json_text(child.output), "outputDetails": {"truncated": False}}),
               "FAILED": ("ExecutionFailed", {"error": child.error, "cause": child.cause}),
               "TIMED_OUT": ("ExecutionTimedOut", {"error": child.error, "cause": child.cause}),
               "ABORTED": ("ExecutionAborted", None)}.get(child.status)
        if end is not None:
            kind, details = end
            event = {"timestamp": child.stop_date, "type": kind, "id": last + 1, "previousEventId": last}
            if details is not None:
                event[kind[0].lower() + kind[1:] + "EventDetails"] = {k: v for k, v in details.items() if v is not None}
            events.append(event)
        return events


def _record(run: MapRun, child: ChildExecution) -> ExecutionRecord:
    return ExecutionRecord(
        execution_arn=child.arn, state_machine_arn=run.state_machine_arn, name=child.name,
        type=run.child_type, status=child.status, start_date=child.start_date, input=_json_text(child.input),
        stop_date=child.stop_date, output=_json_text(child.output) if child.status == "SUCCEEDED" else None,
        error=child.error, cause=child.cause, extra={"mapRunArn": run.arn},
    )
