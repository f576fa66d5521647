"""The ExecutionJournal contract, on every backend (memory and SQLite).

The fixture lives here rather than in conftest.py: one port, one file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.local import SQLiteExecutionJournal
from ceap_engine.ports import ExecutionJournal, ExecutionRecord
from ceap_engine.storage.journal import MemoryExecutionJournal

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:m"
OTHER = "arn:aws:states:us-east-1:123456789012:stateMachine:other"


@pytest.fixture(params=["memory", "sqlite"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ExecutionJournal]:
    store = MemoryExecutionJournal() if request.param == "memory" else SQLiteExecutionJournal(tmp_path / "j.sqlite3")
    yield store
    store.close()


def record(name: str, start: float, status: str = "RUNNING", machine: str = MACHINE, **kw) -> ExecutionRecord:
    return ExecutionRecord(f"{machine.replace('stateMachine', 'execution')}:{name}", machine, name, "STANDARD",
                           status, start, **kw)


def event(i: int, type_: str = "PassStateEntered") -> dict:
    return {"id": i, "previousEventId": i - 1, "timestamp": 1000.0 + i, "type": type_,
            "stateEnteredEventDetails": {"name": f"S{i}", "input": "{}"}}


def test_every_backend_is_an_execution_journal(journal: ExecutionJournal) -> None:
    assert isinstance(journal, ExecutionJournal)


def test_put_then_get_returns_the_record_and_put_replaces(journal: ExecutionJournal) -> None:
    r = record("a", 10.0, input='{"x":1}', extra={"redriveCount": 0})
    journal.put_execution(r)
    assert journal.get_execution(r.execution_arn) == r
    done = record("a", 10.0, "SUCCEEDED", input='{"x":1}', stop_date=12.5, output='{"y":2}')
    journal.put_execution(done)
    assert journal.get_execution(r.execution_arn) == done
    assert journal.get_execution(r.execution_arn + "-none") is None


def test_list_is_newest_first_and_filters_by_machine_and_status(journal: ExecutionJournal) -> None:
    journal.put_execution(record("old", 1.0, "SUCCEEDED"))
    journal.put_execution(record("new", 3.0))
    journal.put_execution(record("mid", 2.0, "FAILED"))
    journal.put_execution(record("elsewhere", 4.0, machine=OTHER))
    assert [r.name for r in journal.list_executions(MACHINE)] == ["new", "mid", "old"]
    assert [r.name for r in journal.list_executions(MACHINE, "FAILED")] == ["mid"]
    assert [r.name for r in journal.list_executions(status="RUNNING")] == ["elsewhere", "new"]
    assert len(journal.list_executions()) == 4


def test_events_are_appended_in_order_and_paged_by_id(journal: ExecutionJournal) -> None:
    arn = record("a", 1.0).execution_arn
    journal.append_events(arn, [event(1, "ExecutionStarted"), event(2)])
    journal.append_events(arn, [event(3), event(4)])
    assert [e["id"] for e in journal.events(arn)] == [1, 2, 3, 4]
    assert journal.events(arn, after_id=1, limit=2) == [event(2), event(3)]
    assert journal.events(arn, after_id=4) == []
    assert journal.events("arn:none") == []


def test_a_gap_or_a_repeated_id_is_refused_and_nothing_of_it_is_stored(journal: ExecutionJournal) -> None:
    arn = record("a", 1.0).execution_arn
    journal.append_events(arn, [event(1)])
    with pytest.raises(ValueError, match="event id 4 does not follow 2"):
        journal.append_events(arn, [event(2), event(4)])
    with pytest.raises(ValueError):
        journal.append_events(arn, [event(1)])
    assert [e["id"] for e in journal.events(arn)] == [1]


def test_stored_events_do_not_change_when_the_caller_mutates_its_dicts(journal: ExecutionJournal) -> None:
    arn = record("a", 1.0).execution_arn
    mine = event(1)
    journal.append_events(arn, [mine])
    mine["stateEnteredEventDetails"]["name"] = "changed"
    journal.events(arn)[0]["type"] = "changed too"
    assert journal.events(arn) == [event(1)]


def test_delete_execution_forgets_record_and_events(journal: ExecutionJournal) -> None:
    r = record("a", 1.0)
    journal.put_execution(r)
    journal.append_events(r.execution_arn, [event(1)])
    journal.delete_execution(r.execution_arn)
    journal.delete_execution(r.execution_arn)  # absent: fine
    assert journal.get_execution(r.execution_arn) is None
    assert journal.events(r.execution_arn) == []
    journal.append_events(r.execution_arn, [event(1)])  # numbering starts over


def test_resources_keep_their_first_position_when_replaced(journal: ExecutionJournal) -> None:
    journal.put_resource("stateMachine", "arn:1", {"name": "one"})
    journal.put_resource("stateMachine", "arn:2", {"name": "two"})
    journal.put_resource("activity", "arn:3", {"name": "three"})
    journal.put_resource("stateMachine", "arn:1", {"name": "one v2"})
    assert journal.resources("stateMachine") == [{"name": "one v2"}, {"name": "two"}]
    journal.delete_resource("stateMachine", "arn:1")
    journal.delete_resource("stateMachine", "arn:1")
    assert journal.resources("stateMachine") == [{"name": "two"}]
    assert journal.resources("activity") == [{"name": "three"}]
    assert journal.resources("none") == []


def test_sqlite_journal_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    first = SQLiteExecutionJournal(path)
    r = record("a", 1.0, extra={"testCase": "T"})
    first.put_execution(r)
    first.append_events(r.execution_arn, [event(1), event(2)])
    first.put_resource("stateMachine", "arn:1", {"name": "one"})
    first.close()
    again = SQLiteExecutionJournal(path)
    assert again.get_execution(r.execution_arn) == r
    assert [e["id"] for e in again.events(r.execution_arn)] == [1, 2]
    assert again.resources("stateMachine") == [{"name": "one"}]
    again.close()
