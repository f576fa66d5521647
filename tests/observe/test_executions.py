"""Local history read back from the execution journal: find, describe, list, report afterwards.

The journal itself (``adapters.local.journal``) is the one ``ceap serve`` keeps; these tests use a
minimal stand-in with the journal port's methods, and the end-to-end test the real one.
"""

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from ceap_engine.errors import InputError
from ceap_engine.observe.dot import dom_id
from ceap_engine.observe.executions import (
    definition_of,
    execution_document,
    execution_rows,
    find_execution,
    record_execution,
)
from ceap_engine.observe.graph import workflow_graph
from ceap_engine.observe.report import execution_report
from ceap_engine.pipeline import builtin
from ceap_engine.pipeline.builder import build_definition

from .browser import Elements
from .conftest import json_out
from .test_trace import MACHINE


@dataclass(frozen=True)
class Record:  # the journal's ExecutionRecord fields
    execution_arn: str
    state_machine_arn: str
    name: str
    type: str
    status: str
    start_date: float
    input: str = "{}"
    stop_date: float | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    extra: dict = field(default_factory=dict)


class Journal:
    """The journal port's reading and writing calls over dicts (a test stand-in, not a journal)."""

    def __init__(self):
        self.records: dict[str, Any] = {}
        self.history: dict[str, list] = {}
        self.docs: dict[str, list] = {}

    def put_execution(self, record):
        self.records[record.execution_arn] = record

    def get_execution(self, arn):
        return self.records.get(arn)

    def list_executions(self, state_machine_arn=None, status=None):
        return sorted((r for r in self.records.values() if status in (None, r.status)),
                      key=lambda r: (-r.start_date, r.execution_arn))

    def append_events(self, arn, events):
        self.history.setdefault(arn, []).extend(events)

    def events(self, arn, after_id=0, limit=None):
        return [e for e in self.history.get(arn, []) if e["id"] > after_id][:limit]

    def resources(self, kind):
        return self.docs.get(kind, [])


@pytest.fixture
def journal():
    return Journal()


async def recorded(journal):
    from ceap_engine.asl.definition import load_definition
    from ceap_engine.asl.interpreter import Engine
    from ceap_engine.runtime.clock import VirtualClock
    from ceap_engine.runtime.tasks import LambdaFunctions, TaskRunners

    runners = TaskRunners()
    functions = runners.register_lambda(LambdaFunctions())
    functions.register("flaky", lambda e, c: {"ok": True})
    functions.register("broken", lambda e, c: (_ for _ in ()).throw(ValueError("no")))
    engine = Engine(clock=VirtualClock(start=1_000.0), runners=runners, seed=1)
    result = await engine.start(load_definition(MACHINE), {"n": 1}, name="run-1").task
    record_execution(journal, result, definition=MACHINE, execution_type="STANDARD", make_record=Record)
    return result


async def test_a_recorded_run_reads_back_as_aws_shapes(journal):
    result = await recorded(journal)
    record = find_execution(journal, "run-1")
    assert find_execution(journal, result.execution_arn) == record
    assert record.extra["recordedBy"] == "ceap run" and json.loads(record.extra["definition"]) == MACHINE
    document = execution_document(record, journal.events(record.execution_arn))
    direct = result.to_json()
    for key in ("executionArn", "name", "stateMachineArn", "status", "startDate", "stopDate", "error", "cause", "input"):
        assert document[key] == direct[key], key
    assert document["events"] == direct["events"]  # epoch in the journal, ISO again when read
    assert execution_rows([record]) == [{"executionArn": result.execution_arn, "stateMachineArn": result.state_machine_arn,
                                         "name": "run-1", "type": "STANDARD", "status": "FAILED",
                                         "startDate": direct["startDate"], "stopDate": direct["stopDate"]}]


async def test_a_report_made_afterwards_from_the_journal(journal):
    await recorded(journal)
    record = find_execution(journal, "run-1")
    page = execution_report(definition_of(journal, record), execution_document(record, journal.events(record.execution_arn)),
                            svg_of=lambda dot: f"<svg>{dot}</svg>")
    dom = Elements(page)
    assert dom.text_by_id["execution-status"] == "FAILED" and dom.text_by_id["failed-states"] == "Stop"


def test_unknown_and_ambiguous_names_say_what_to_do(journal):
    journal.put_execution(Record("arn:a", "arn:sm", "same", "STANDARD", "SUCCEEDED", 1.0))
    journal.put_execution(Record("arn:b", "arn:sm", "same", "STANDARD", "FAILED", 2.0))
    with pytest.raises(InputError, match="2 executions are named 'same'; give the ARN of one: arn:b; arn:a"):
        find_execution(journal, "same")
    with pytest.raises(InputError, match="no execution named 'other' in the journal"):
        find_execution(journal, "other")
    with pytest.raises(InputError, match="no execution arn:zzz"):
        find_execution(journal, "arn:zzz")


def test_definition_of_a_served_execution_comes_from_its_state_machine_revision(journal):
    record = Record("arn:e", "arn:sm", "e", "STANDARD", "SUCCEEDED", 1.0)
    journal.docs = {"stateMachine": [{"stateMachineArn": "arn:sm", "revisionId": "r1"}],
                    "revision": [{"revisionId": "r1", "definition": json.dumps(MACHINE)}]}
    assert definition_of(journal, record) == MACHINE
    assert definition_of(Journal(), record) is None


def test_ceap_run_is_recorded_then_listed_shown_and_reported(run_ceap, tmp_path):
    store = tmp_path / "store"
    proc = run_ceap("run", "--local", "examples/payload.json", "--store", str(store), "--execution-name", "kept-run",
                    "--format", "json")
    assert proc.returncode == 0, proc.stderr
    run_doc = json_out(proc)
    listed = json_out(run_ceap("executions", "list", "--store", str(store), "--format", "json"))["executions"]
    assert [e["name"] for e in listed] == ["kept-run"] and listed[0]["status"] == "SUCCEEDED"
    page = tmp_path / "later.html"
    shown = run_ceap("executions", "history", "kept-run", "--store", str(store), "--format", "json", "--report", str(page))
    assert shown.returncode == 0, shown.stderr
    assert json_out(shown)["events"] == run_doc["events"]
    nodes = {a["id"]: a["class"] for a in Elements(page.read_text()).with_class("state")}
    # Every state is drawn, the part calls inside each stage's Map too.
    assert set(nodes) == {dom_id(n.key) for n in workflow_graph(build_definition(builtin("realtime"))).nodes}
    assert "outcome-succeeded" in nodes[dom_id("Reactive")]


def test_executions_without_a_journal_exit_2_and_create_nothing(run_ceap, tmp_path):
    proc = run_ceap("executions", "list", "--store", str(tmp_path / "none"), "--format", "json")
    assert proc.returncode == 2
    assert "no execution journal at" in json_out(proc)["details"][0]["message"]
    assert not (tmp_path / "none").exists()
    assert run_ceap("executions", "history", "x", "--store", str(tmp_path / "none")).returncode == 2
