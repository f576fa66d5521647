"""``ceap run`` and ``ceap event``: the CEAP pipeline on this machine.

The composition root of a local run: the embedded backends of
:mod:`adapters.local` (files under ``--store``, SQLite) wired to the engine's
:class:`~ceap_engine.pipeline.LocalPipeline`.
"""

from __future__ import annotations

import asyncio
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ceap_engine.asl.interpreter import validate_execution_name
from ceap_engine.pipeline import BUILTIN, WorkflowSpec, builtin
from ceap_engine.pipeline.builder import express_duration_warnings
from ceap_engine.pipeline.layout import execution_key
from ceap_engine.pipeline.local import LocalPipeline, PipelineResult
from ceap_engine.pipeline.names import glue_job_name
from ceap_engine.pipeline.stage_runtime import load_stage_function
from ceap_engine.runtime.clock import RealClock, VirtualClock
from ceap_engine.storage.objects import validate_key

from ..errors import (
    CeapError,
    InputError,
    InvalidKey,
    Problem,
    StorageError,
    ValidationFailed,
)
from ._options import ClockKind, OutputFormat, conflicting_options
from ._output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    await_interruptibly,
    console,
    emit_problems,
    ensure_writable_folder,
    envelope,
    err_console,
    print_json,
)
from ._report import check_report_path, write_report
from .executions import record_local_run
from .payload import check_payload, read_payload
from .run_report import RunProgress, json_document, print_summary, reconciliation

__all__ = ["event", "run"]


class Workflow(str, Enum):
    realtime = "realtime"
    batch = "batch"


class Target(str, Enum):
    local = "local"
    aws = "aws"


def _refuse(problems: list[Problem]) -> None:
    if problems:
        raise InputError(problems, "arguments")


def check_target_options(target: Target, local: bool, given: dict[str, bool]) -> None:
    """Options of one target given with the other are refused, not ignored (exit 2).

    ``given`` says which options the user set (True) among -n/--region/--profile/
    --endpoint-url/--timeout (AWS only) and --workflow/--store/--clock/--seed/--replace/--report (local only).
    """
    problems = []
    if local and target is Target.aws:
        problems.append(Problem("/target", "--local and --target aws contradict each other: give one", "CONFLICTING_OPTIONS"))
    elif target is Target.aws:
        problems += conflicting_options(given, ("--workflow", "--store", "--clock", "--seed", "--replace"),
                                        "applies to local runs only; with --target aws the deployed workflow "
                                        "decides (drop the option)")
        if given.get("--report"):
            problems.append(Problem("/report", "--report draws a local run; for a deployed workflow use the Step "
                                               "Functions console", "CONFLICTING_OPTIONS"))
    else:
        problems += conflicting_options(given, ("--name", "--region", "--profile", "--endpoint-url", "--timeout"),
                                        "applies to --target aws only; a local run takes --workflow, --store and "
                                        "--clock")
    _refuse(problems)


def check_execution_name(name: str | None) -> None:
    """An execution name Step Functions accepts that also makes valid object keys (``..`` does not)."""
    if name is None:
        return
    validate_execution_name(name)
    try:
        validate_key(execution_key(name, "ETL"))
    except InvalidKey:
        raise InputError([Problem("/execution-name", f"--execution-name {name!r} cannot name the execution's folder of "
                                  "stage outputs (executions/<name>/...): use letters, digits, '-' or '_'",
                                  "INVALID_EXECUTION_NAME")], "arguments") from None


def open_store(store: Path, clock: Any) -> tuple[Any, Any]:
    """The file object store and SQLite candidate store under ``store``; an unusable folder or file is exit 2.

    Called only after every other check passed: creating the folder is the first write of a run.
    """
    from adapters.local import FileObjectStore, LocalStores, SQLiteCandidateStore

    ensure_writable_folder(store, "--store")
    database = LocalStores(store).candidates_path
    if database.is_file():
        _check_not_locked(database)
    try:
        candidates = SQLiteCandidateStore(database, clock=clock)
    except StorageError as exc:
        raise InputError([Problem("/store", f"{exc} (the candidates database of --store {store})",
                                  "CANDIDATES_UNUSABLE")], "arguments") from None
    return FileObjectStore(store), candidates


def _check_not_locked(database: Path) -> None:
    """Refuse a candidates database another process holds a write lock on (a run would fail mid-way)."""
    import sqlite3

    try:
        connection = sqlite3.connect(database, timeout=2.0)
    except sqlite3.Error:
        return  # the store itself reports what is wrong with the file
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.rollback()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise InputError([Problem("/store", f"{database} is locked by another process (a run or a tool writing "
                                                "to it): wait for it to finish, or choose another --store",
                                      "CANDIDATES_LOCKED")], "arguments") from None
    except sqlite3.DatabaseError:
        pass  # not a database: SQLiteCandidateStore says so, with what to do
    finally:
        connection.close()


def run(
    payload: Annotated[Path, typer.Argument(help="The execution input: {programId, marketplace, dateRange{start,end}, source}.")],
    local: Annotated[bool, typer.Option("--local", help="Run on this machine (the default target).")] = False,
    target: Annotated[Target, typer.Option("--target", help="local, or aws (a deployed workflow; needs -n)")] = Target.local,
    name: Annotated[str | None, typer.Option("-n", "--name", help="With --target aws: the deployed workflow's name")] = None,
    region: Annotated[str | None, typer.Option("--region", help="With --target aws: the AWS region (default: the usual chain)")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="With --target aws: the AWS profile")] = None,
    endpoint_url: Annotated[str | None, typer.Option("--endpoint-url", help="With --target aws: another endpoint (LocalStack, moto); or AWS_ENDPOINT_URL")] = None,
    workflow: Annotated[Workflow | None, typer.Option("--workflow", help="Local: realtime (EXPRESS, the default) or batch (STANDARD, with the Glue HeavyETL job)")] = None,
    store: Annotated[Path | None, typer.Option("--store", help="Local: the folder of the embedded storage (objects and candidates; default .ceap)")] = None,
    clock: Annotated[ClockKind | None, typer.Option("--clock", help="Local: virtual (the default: retry waits cost no wall time) or real")] = None,
    execution_name: Annotated[str | None, typer.Option("--execution-name", help="Execution name (default: a UUID). Locally a name already used with another input is refused (exit 2); one whose run never finished is resumed; the same input again re-runs idempotently")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Local, with --execution-name: reuse a name that holds a run of another input, deleting that run's outputs")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Local: makes generated names and jitter repeatable")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Stage calls at once; parts of 2,000+ records run in that many worker processes (default: one per core; 1: all in this process)")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="text or json")] = OutputFormat.text,
    report: Annotated[Path | None, typer.Option("--report", help="Also write the execution's report page (FILE.html: graph, timeline, counts, history)")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=1, help="With --target aws: seconds to follow a Standard execution before leaving it running (default 1800)")] = None,
) -> None:
    """Run the CEAP pipeline: locally on the ASL interpreter (default), or on a deployed AWS workflow.

    Options of the other target are refused, not ignored. Exit codes: 0 SUCCEEDED,
    1 FAILED/TIMED_OUT/ABORTED, 2 bad payload or arguments (nothing written; see docs/cli.md).
    """
    try:
        check_target_options(target, local, {
            "--name": name is not None, "--region": region is not None, "--profile": profile is not None,
            "--endpoint-url": endpoint_url is not None, "--timeout": timeout is not None,
            "--workflow": workflow is not None, "--store": store is not None, "--clock": clock is not None,
            "--seed": seed is not None, "--replace": replace, "--report": report is not None,
        })
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if target is Target.aws:
        from . import aws as aws_cli  # the AWS side lives with the deploy commands

        remote = aws_cli.needs_aws_sdk(aws_cli.run_remote)
        raise typer.Exit(remote(payload, name=name, format=format.value, region=region, profile=profile,
                                endpoint_url=endpoint_url, execution_name=execution_name,
                                timeout=timeout if timeout is not None else 1800))
    store = store if store is not None else Path(".ceap")
    try:
        if replace and execution_name is None:
            raise InputError([Problem("/replace", "--replace reuses a name: give it with --execution-name NAME",
                                      "INVALID_ARGUMENT")], "arguments")
        spec = builtin((workflow or Workflow.realtime).value)
        body = check_payload(spec, read_payload(payload), payload)
        check_execution_name(execution_name)
        check_report_path(report)
        needs_glue = any(s.kind == "glue" for s in spec.stages)
        if needs_glue:
            _require_glue(spec)  # before anything is written: no half run
        warnings = express_duration_warnings(spec)
        run_clock = VirtualClock() if clock in (None, ClockKind.virtual) else RealClock()
        objects, candidates = open_store(store, run_clock)
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except CeapError as exc:
        emit_problems(ValidationFailed([Problem("/", str(exc), "ERROR")], "run"), format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if format is OutputFormat.text:
        for warning in warnings:
            err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    # Imported here: keeps the CLI's start-up light.
    from ceap_engine.observe.report import AttemptStopwatch

    from adapters.local import LocalStores

    stopwatch = AttemptStopwatch()
    glue_runner = _glue_runner(spec, objects) if needs_glue else None
    progress = RunProgress(run_clock.time(), enabled=format is OutputFormat.text,
                           counts_of=(lambda stage: _last_job_metrics(glue_runner)) if glue_runner else None)
    try:
        pipeline = LocalPipeline(spec, objects=objects, candidates=candidates, clock=run_clock,
                                 runners={"glue:startJobRun": glue_runner} if glue_runner else {},
                                 seed=seed, progress=lambda p: (progress(p), stopwatch(p)), workers=workers,
                                 worker_stores=LocalStores(store))
        began = time.perf_counter()
        with pipeline:
            result = asyncio.run(_run_interruptible(pipeline, body, execution_name, replace))
        wall_seconds = time.perf_counter() - began
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    finally:
        candidates.close()
    record_local_run(store, result.execution, pipeline.definition, pipeline.execution_type, spec.name)
    if report is not None:
        write_report(report, pipeline.definition, result.execution.to_json(), counts=result.counts,
                     checks=reconciliation(result.counts, result.reconciliation, list(result.outputs)), wall_times=stopwatch.seconds, wall_seconds=wall_seconds)
    code = EXIT_OK if result.status == "SUCCEEDED" else EXIT_FAILED
    if format is OutputFormat.json:
        print_json(json_document(result, store, wall_seconds))
    else:
        print_summary(result, store, wall_seconds)
        if report is not None:
            console.print(escape(f"report:     {report.resolve()}"))
    raise typer.Exit(code)


def _require_glue(spec: WorkflowSpec) -> None:
    """Refuse a workflow with a Glue stage when pyspark or Java is missing, saying what to install."""
    from adapters.local import glue

    glue.require_glue(spec.name)


def _glue_runner(spec: WorkflowSpec, objects: Any) -> Any:
    """The local Glue runner, serving each Glue stage's job name with its script."""
    from adapters.local.glue import LocalGlueRunner

    return LocalGlueRunner(objects, {glue_job_name(spec, s): s.script for s in spec.stages if s.kind == "glue"})


def _glue_runners(spec: WorkflowSpec, objects: Any) -> dict[str, Any]:
    """The task runners a spec's Glue stages need (``{}`` without any): the local Glue runner."""
    if not any(s.kind == "glue" for s in spec.stages):
        return {}
    return {"glue:startJobRun": _glue_runner(spec, objects)}


def _last_job_metrics(runner: Any) -> dict[str, Any] | None:
    """The metrics of the Glue runner's latest successful run (a job run result carries no counts)."""
    if not runner.runs:
        return None
    summary = runner.summaries.get(runner.runs[-1].get("Id"))
    metrics = summary.get("metrics") if isinstance(summary, dict) else None
    return metrics if isinstance(metrics, dict) else None


async def _run_interruptible(pipeline: LocalPipeline, payload: dict[str, Any], name: str | None,
                             replace: bool = False) -> PipelineResult:
    execution = await pipeline.start_checked(payload, name=name, replace=replace)
    return await pipeline.collect(await await_interruptibly(execution))


_EVENT_SHAPE = "one customer event: a JSON object with eventId, eventType, customerId, programId, marketplace and subject"


def event(
    event_file: Annotated[Path, typer.Argument(help="One customer event (JSON): eventId, eventType, customerId, programId, marketplace, subject ... (see examples/event.json)")],
    local: Annotated[bool, typer.Option("--local", help="Handle it on this machine (the only target so far).")] = True,
    store: Annotated[Path, typer.Option("--store", help="Where the embedded storage lives")] = Path(".ceap"),
    bucket: Annotated[str, typer.Option("--bucket", help="Bucket of the dedup markers")] = BUILTIN["realtime"].workflow_bucket,
    format: Annotated[OutputFormat, typer.Option("--format", help="text or json")] = OutputFormat.text,
) -> None:
    """Handle a single customer event: create or update one candidate (5-minute dedup window).

    Exit codes: 0 handled (created, updated or deduplicated), 2 bad event or arguments (nothing written).
    """
    from pydantic import ValidationError

    from ceap_engine.pipeline.stage import PermanentError, StageContext

    clock = RealClock()
    try:
        handler = load_stage_function("stages.reactive:handle_event")
        document = read_payload(event_file, "event", _EVENT_SHAPE)
        try:
            parsed = handler.input_model.model_validate(document)
        except ValidationError as exc:
            raise InputError([
                Problem("/" + "/".join(str(p) for p in err.get("loc", ())), str(err.get("msg")), "INVALID_EVENT")
                for err in exc.errors()
            ], "event") from None
        objects, candidates = open_store(store, clock)
    except PermanentError as exc:
        emit_problems(ValidationFailed([Problem("/", str(exc), "INVALID_EVENT")], "event"), format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:
        context = StageContext(execution_id=f"event-{document.get('eventId', 'unknown')}", stage="ReactiveEvent",
                               bucket=bucket, objects=objects, candidates=candidates, clock=clock)
        result = asyncio.run(handler.function(parsed, context))
    finally:
        candidates.close()
    doc = result.model_dump(mode="json", by_alias=True)
    if format is OutputFormat.json:
        print_json(envelope(doc))
    else:
        console.print(f"[bold]{doc['status']}[/] {doc.get('reason') or ''} candidate {doc['pk']} / {doc['sk']}")
    raise typer.Exit(EXIT_OK)
