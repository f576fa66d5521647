"""The ExecutionJournal's rules, and the in-memory journal.

Every journal applies :func:`check_event_ids` (an execution's events are numbered 1, 2, 3 ...
with no gap and no repeat, so a crash between two appends can never leave a hole that a
resumed execution would paper over) and orders :meth:`list_executions` by
:func:`listing_order`. :class:`MemoryExecutionJournal` is the journal of tests and of a
``ceap serve`` without ``--data``; ``adapters.local.SQLiteExecutionJournal`` the durable one.

Example::

    journal = MemoryExecutionJournal()
    journal.put_execution(ExecutionRecord("arn:...:execution:m:e", "arn:...:stateMachine:m", "e",
                                          "STANDARD", "RUNNING", start_date=0.0))
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ceap_engine.ports import ExecutionRecord

__all__ = ["MemoryExecutionJournal", "check_event_ids", "listing_order"]


def check_event_ids(execution_arn: str, last_id: int, events: Sequence[Mapping[str, Any]]) -> None:
    """Raise ``ValueError`` unless ``events`` are numbered ``last_id + 1, last_id + 2, ...``.

    >>> check_event_ids("arn", 2, [{"id": 3}, {"id": 4}])
    """
    expected = last_id + 1
    for event in events:
        if event.get("id") != expected:
            raise ValueError(
                f"history of {execution_arn}: event id {event.get('id')!r} does not follow {expected - 1} "
                "(ids run 1, 2, 3 ... without gaps)"
            )
        expected += 1


def listing_order(record: ExecutionRecord) -> tuple[float, str]:
    """Sort key of ListExecutions: newest start first, then by ARN (use with ``reverse=True``)."""
    return (record.start_date, record.execution_arn)


class MemoryExecutionJournal:
    """An :class:`~ceap_engine.ports.ExecutionJournal` in a dict: fast, gone with the process."""

    def __init__(self) -> None:
        self._records: dict[str, ExecutionRecord] = {}
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._resources: dict[str, dict[str, dict[str, Any]]] = {}

    def put_execution(self, record: ExecutionRecord) -> None:
        self._records[record.execution_arn] = record

    def get_execution(self, execution_arn: str) -> ExecutionRecord | None:
        return self._records.get(execution_arn)

    def list_executions(self, state_machine_arn: str | None = None, status: str | None = None) -> list[ExecutionRecord]:
        found = [r for r in self._records.values()
                 if (state_machine_arn is None or r.state_machine_arn == state_machine_arn)
                 and (status is None or r.status == status)]
        return sorted(found, key=listing_order, reverse=True)

    def delete_execution(self, execution_arn: str) -> None:
        self._records.pop(execution_arn, None)
        self._events.pop(execution_arn, None)

    def append_events(self, execution_arn: str, events: Sequence[Mapping[str, Any]]) -> None:
        stored = self._events.setdefault(execution_arn, [])
        check_event_ids(execution_arn, len(stored), events)
        # Deep copies: a caller that keeps mutating its dicts must not rewrite history.
        stored.extend(copy.deepcopy(dict(e)) for e in events)

    def events(self, execution_arn: str, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        stored = self._events.get(execution_arn, [])
        chosen = stored[max(after_id, 0):] if limit is None else stored[max(after_id, 0):max(after_id, 0) + limit]
        return copy.deepcopy(chosen)

    def put_resource(self, kind: str, arn: str, document: Mapping[str, Any]) -> None:
        self._resources.setdefault(kind, {})[arn] = copy.deepcopy(dict(document))

    def delete_resource(self, kind: str, arn: str) -> None:
        self._resources.get(kind, {}).pop(arn, None)

    def resources(self, kind: str) -> list[dict[str, Any]]:
        return copy.deepcopy(list(self._resources.get(kind, {}).values()))

    def close(self) -> None:
        """Nothing to release (the same call as the SQLite journal's)."""
