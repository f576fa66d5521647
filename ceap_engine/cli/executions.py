"""``ceap executions``: the runs kept in the local execution journal (``STORE/journal.sqlite3``).

The journal is the one ``ceap serve`` keeps its executions in (``adapters.local.journal``);
``ceap run`` records each local run there too, so ``list``, ``history`` and a report made
afterwards see both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..errors import CeapError, InputError, Problem, ValidationFailed
from ._output import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    console,
    emit_problems,
    envelope,
    print_json,
)
from .asl import OutputFormat

__all__ = ["app", "record_local_run"]

app = typer.Typer(no_args_is_help=True, help="List the executions kept in the local journal and show their histories.")

JOURNAL_FILE = "journal.sqlite3"
StoreOption = Annotated[Path, typer.Option("--store", help="Where the embedded storage lives (the journal is STORE/journal.sqlite3)")]


def journal_available() -> bool:
    """Whether this build has the SQLite execution journal (``adapters.local.journal``)."""
    try:
        import adapters.local.journal  # noqa: F401
    except ImportError:
        return False
    return True


def open_journal(store: Path, *, create: bool) -> Any:
    """The journal of a store; reading one that does not exist is an InputError (nothing is created)."""
    path = store / JOURNAL_FILE
    if not create and not path.is_file():
        raise InputError([Problem("/store", f"no execution journal at {path}: run something first "
                                            f"('ceap run --local ... --store {store}') or point --store at its folder")],
                         "arguments")
    try:
        from adapters.local.journal import SQLiteExecutionJournal
    except ImportError:
        raise CeapError("this build has no execution journal (adapters/local/journal.py)") from None
    return SQLiteExecutionJournal(path)


def record_local_run(store: Path, result: Any, definition: Any, execution_type: str, workflow: str | None = None) -> None:
    """Keep a finished local run in the store's journal (a build without the journal keeps nothing)."""
    if not journal_available():
        return
    from ceap_engine.observe.executions import record_execution
    from ceap_engine.ports import ExecutionRecord  # type: ignore[attr-defined]

    journal = open_journal(store, create=True)
    try:
        record_execution(journal, result, definition=definition, execution_type=execution_type,
                         make_record=ExecutionRecord, extra={"workflow": workflow} if workflow else None)
    finally:
        journal.close()


@app.command("list")
def list_executions(
    store: StoreOption = Path(".ceap"),
    status: Annotated[str | None, typer.Option("--status", help="Only RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="text (a table) or json (ListExecutions' shape)")] = OutputFormat.text,
) -> None:
    """The executions in the journal, newest first. Exit codes: 0 listed, 2 no journal or bad arguments."""
    from ceap_engine.observe.executions import execution_rows

    try:
        if status is not None and status.upper() not in ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"):
            raise InputError([Problem("/status", f"--status {status}: use RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED")],
                             "arguments")
        journal = open_journal(store, create=False)
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except CeapError as exc:
        emit_problems(ValidationFailed([Problem("/", str(exc), "ERROR")], "executions"), format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:
        rows = execution_rows(journal.list_executions(status=status.upper() if status else None))
    finally:
        journal.close()
    if format is OutputFormat.json:
        print_json(envelope({"executions": rows}))
        raise typer.Exit(EXIT_OK)
    from rich.table import Table

    table = Table(title=f"executions in {store / JOURNAL_FILE}", title_justify="left")
    for column in ("name", "status", "type", "state machine", "started", "stopped"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(escape(r["name"]), r["status"], r["type"], escape(r["stateMachineArn"].rsplit(":", 1)[-1]),
                      r["startDate"] or "", r["stopDate"] or "")
    console.print(table)
    raise typer.Exit(EXIT_OK)


@app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="The execution's name or ARN")],
    store: StoreOption = Path(".ceap"),
    format: Annotated[OutputFormat, typer.Option("--format", help="text (a table) or json (GetExecutionHistory's events, with DescribeExecution's fields)")] = OutputFormat.text,
    report: Annotated[Path | None, typer.Option("--report", help="Also write its report page (FILE.html)")] = None,
) -> None:
    """One execution's history, as GetExecutionHistory gives it. Exit codes: 0 shown, 2 unknown execution."""
    from ceap_engine.observe.executions import (
        definition_of,
        execution_document,
        find_execution,
    )

    from ._report import check_report_path, write_report

    try:
        check_report_path(report)
        journal = open_journal(store, create=False)
        try:
            record = find_execution(journal, name)
            document = execution_document(record, journal.events(record.execution_arn))
            definition = definition_of(journal, record) if report is not None else None
        finally:
            journal.close()
        if report is not None and definition is None:
            raise InputError([Problem("/report", f"the journal keeps no definition for {record.state_machine_arn}: "
                                                 "no graph to draw")], "arguments")
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except CeapError as exc:
        emit_problems(ValidationFailed([Problem("/", str(exc), "ERROR")], "executions"), format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if report is not None:
        write_report(report, definition, document)
    if format is OutputFormat.json:
        print_json(envelope(document))
        raise typer.Exit(EXIT_OK)
    console.print(f"[bold]{escape(document['name'])}[/] {document['status']}  {escape(document['executionArn'])}")
    for e in document["events"]:
        details = next((v for k, v in e.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
        label = details.get("name") or details.get("error") or ""
        console.print(f"  {e['id']:>4} {e['timestamp']}  {e['type']:<28} {escape(str(label))}", highlight=False)
    if document["status"] not in ("SUCCEEDED", "RUNNING"):
        console.print(f"error: {escape(str(document['error']))}")
        console.print(f"cause: {escape(str(document['cause']))}")
    if report is not None:
        console.print(escape(f"report: {report.resolve()}"))
    raise typer.Exit(EXIT_OK)
