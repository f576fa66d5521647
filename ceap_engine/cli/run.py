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

from ceap_engine.observe.report import AttemptStopwatch
from ceap_engine.pipeline import BUILTIN, WorkflowSpec, builtin
from ceap_engine.pipeline.builder import express_duration_warnings
from ceap_engine.pipeline.layout import failure_key
from ceap_engine.pipeline.local import LocalPipeline, PipelineResult, StageProgress
from ceap_engine.pipeline.names import glue_job_name
from ceap_engine.pipeline.stage_runtime import describe_errors, load_stage_function
from ceap_engine.runtime.clock import RealClock, VirtualClock

from ..errors import CeapError, InputError, Problem, ValidationFailed
from ._options import ClockKind, OutputFormat, read_payload
from ._output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    await_interruptibly,
    console,
    emit_problems,
    err_console,
    print_json,
)
from ._report import check_report_path, write_report
from .executions import record_local_run

__all__ = ["event", "run"]


class Workflow(str, Enum):
    realtime = "realtime"
    batch = "batch"


class Target(str, Enum):
    local = "local"
    aws = "aws"


def check_payload(spec: WorkflowSpec, payload: dict[str, Any], payload_path: Path) -> dict[str, Any]:
    """Validate the payload with the first stage's own input model; resolve and check a local source."""
    first = load_stage_function(spec.stages[0].function)  # type: ignore[arg-type]
    from pydantic import ValidationError

    try:
        first.input_model.model_validate(payload)
    except ValidationError as exc:
        problems = [
            Problem("/" + "/".join(str(p) for p in err.get("loc", ())), str(err.get("msg")), "INVALID_PAYLOAD")
            for err in exc.errors()
        ]
        raise InputError(problems or [Problem("/", describe_errors(exc))], "payload") from None
    source = payload.get("source")
    if isinstance(source, str) and not source.startswith("s3://"):
        resolved = (payload_path.parent / source).resolve() if not Path(source).is_absolute() else Path(source)
        if not resolved.is_file():
            raise InputError([Problem("/source", f"source file not found: {resolved} (a relative source is relative to the payload file's folder)", "INVALID_PAYLOAD")], "payload")
        payload = {**payload, "source": str(resolved)}
    return payload


class _Progress:
    """One line per stage attempt, printed as the execution goes."""

    def __init__(self, start: float, enabled: bool) -> None:
        self.start = start
        self.enabled = enabled

    def __call__(self, p: StageProgress) -> None:
        if not self.enabled:
            return
        t = f"[dim]t+{p.at - self.start:7.1f}s[/]"
        attempt = f" (attempt {p.attempt})" if p.attempt > 1 else ""
        if p.status == "started":
            err_console.print(f"{t} [cyan]>[/] {p.stage}{attempt}")
        elif p.status == "succeeded":
            counts = ", ".join(f"{k}={v}" for k, v in (p.counts or {}).items() if not isinstance(v, dict))
            err_console.print(f"{t} [green]ok[/] {p.stage}{attempt}  {escape(counts)}")
        else:
            err_console.print(f"{t} [red]failed[/] {p.stage}{attempt}: {escape((p.error or '')[:300])}")


def reconciliation(counts: dict[str, Any], chained: dict[str, Any] | None = None,
                   order: list[str] | None = None) -> list[tuple[str, bool]]:
    """The "nothing is lost" checks: the chain of the stages' manifests when given, else over the counts."""
    if chained:
        from ceap_engine.pipeline.reconcile import chain

        return [(link.text, link.ok) for link in chain(chained, order or list(chained))]
    checks = []
    etl, flt, store = counts.get("ETL"), counts.get("Filter"), counts.get("Store")
    if etl:
        checks.append((f"ETL read = transformed + errors: {etl.get('processedCount')} = {etl.get('transformedCount')} + {etl.get('errorCount')}",
                       etl.get("processedCount") == (etl.get("transformedCount") or 0) + (etl.get("errorCount") or 0)))
    if flt:
        checks.append((f"Filter input = passed + rejected: {flt.get('inputCount')} = {flt.get('passedCount')} + {flt.get('rejectedCount')}",
                       flt.get("inputCount") == (flt.get("passedCount") or 0) + (flt.get("rejectedCount") or 0)))
    score = counts.get("Score")
    if store and score:
        checks.append((f"stored + failed = scored: {store.get('storedCount')} + {store.get('failedCount')} = {score.get('scoredCount')}",
                       (store.get("storedCount") or 0) + (store.get("failedCount") or 0) == score.get("scoredCount")))
    return checks


def _format_counts(counts: dict[str, Any]) -> str:
    parts = []
    for k, v in counts.items():
        if isinstance(v, dict):
            inner = ", ".join(f"{ik}={iv}" for ik, iv in v.items())
            parts.append(f"{k}=({inner})" if inner else f"{k}=()")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


def _print_text(result: PipelineResult, store: Path, wall_seconds: float) -> None:
    ex = result.execution
    colour = {"SUCCEEDED": "green", "FAILED": "red", "TIMED_OUT": "red", "ABORTED": "yellow"}.get(ex.status, "white")
    console.print(f"[bold {colour}]{ex.status}[/]  workflow {result.workflow}, execution {result.execution_id}")
    earlier = result.name_claim.describe() if result.name_claim is not None else None
    if earlier:
        console.print(f"note: {escape(earlier)}")
    if ex.stop_time is not None:
        # Under the virtual clock only waits (retries, Wait states) move the workflow clock.
        console.print(f"took {wall_seconds:.2f} s; workflow clock {ex.stop_time - ex.start_time:.1f} s")
    width = max((len(s) for s in result.outputs), default=0)
    for stage in result.outputs:
        console.print(f"  {stage:<{width}}  {escape(_format_counts(result.counts.get(stage) or {}))}")
    checks = reconciliation(result.counts, result.reconciliation, list(result.outputs))
    if checks:
        console.print("nothing lost:")
        for text, ok in checks:
            console.print(f"  {'[green]ok[/]' if ok else '[red]MISMATCH[/]'}  {escape(text)}")
    root = (store / "buckets" / result.bucket).resolve()
    console.print(escape(f"outputs:    {root}/executions/{result.execution_id}/<stage>/output.json"))
    console.print(f"candidates: {(store / 'candidates.sqlite3').resolve()}")
    if ex.status != "SUCCEEDED":
        console.print(f"[red]error:[/] {escape(str(ex.error))}")
        console.print(f"[red]cause:[/] {escape(str(ex.cause))}")
        if result.failure is not None:
            console.print(f"failure:    {root}/{failure_key(result.execution_id)} (stage {result.failure.get('stage')})")


def _json_document(result: PipelineResult, store: Path) -> dict[str, Any]:
    doc = result.execution.to_json()
    doc.update({
        "workflow": result.workflow,
        "executionId": result.execution_id,
        "store": str(store.resolve()),
        "bucket": result.bucket,
        "outputs": result.outputs,
        "counts": result.counts,
        "reconciliation": [{"check": text, "ok": ok}
                           for text, ok in reconciliation(result.counts, result.reconciliation, list(result.outputs))],
        "failure": result.failure,
        "executionName": _name_claim_json(result),
    })
    return doc


def _name_claim_json(result: PipelineResult) -> dict[str, Any] | None:
    """What the execution-name rule found, for ``--format json``."""
    claim = result.name_claim
    if claim is None or claim.earlier is None:
        return None
    outcome = "resumed" if claim.resumed else "rerun" if claim.rerun else "replaced"
    return {"outcome": outcome, "earlier": claim.earlier, "message": claim.describe()}


def run(
    payload: Annotated[Path, typer.Argument(help="The execution input: {programId, marketplace, dateRange{start,end}, source}.")],
    local: Annotated[bool, typer.Option("--local", help="Run on this machine (the default target).")] = False,
    target: Annotated[Target, typer.Option("--target", help="local, or aws (a deployed workflow; needs -n)")] = Target.local,
    name: Annotated[str | None, typer.Option("-n", "--name", help="With --target aws: the deployed workflow's name")] = None,
    region: Annotated[str | None, typer.Option("--region", help="With --target aws: the AWS region (default: the usual chain)")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="With --target aws: the AWS profile")] = None,
    endpoint_url: Annotated[str | None, typer.Option("--endpoint-url", help="With --target aws: another endpoint (LocalStack, moto); or AWS_ENDPOINT_URL")] = None,
    workflow: Annotated[Workflow, typer.Option("--workflow", help="realtime (EXPRESS) or batch (STANDARD, with the Glue HeavyETL job)")] = Workflow.realtime,
    store: Annotated[Path, typer.Option("--store", help="Where the embedded storage lives (objects and candidates)")] = Path(".ceap"),
    clock: Annotated[ClockKind, typer.Option("--clock", help="virtual: retry waits cost no wall time")] = ClockKind.virtual,
    execution_name: Annotated[str | None, typer.Option("--execution-name", help="Execution name (default: a UUID). A name already used with another input is refused (exit 2); one whose run never finished is resumed; the same input again re-runs idempotently")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="With --execution-name: reuse a name that holds a run of another input, deleting that run's outputs")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Makes generated names and jitter repeatable")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Stage calls at once; parts of 2,000+ records run in that many worker processes (default: one per core; 1: all in this process)")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="text or json")] = OutputFormat.text,
    report: Annotated[Path | None, typer.Option("--report", help="Also write the execution's report page (FILE.html: graph, timeline, counts, history)")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="With --target aws: seconds to follow a Standard execution before leaving it running")] = 1800,
) -> None:
    """Run the CEAP pipeline: locally on the ASL interpreter (default), or on a deployed AWS workflow.

    Exit codes: 0 SUCCEEDED, 1 FAILED/TIMED_OUT/ABORTED, 2 bad payload or arguments (nothing written).
    """
    if target is Target.aws and not local:
        if report is not None:
            emit_problems(ValidationFailed([Problem("/report", "--report draws a local run; for a deployed workflow "
                                                               "use the Step Functions console", "INVALID_ARGUMENT")],
                                           "arguments"), format.value)
            raise typer.Exit(EXIT_BAD_INPUT)
        from . import aws as aws_cli  # the AWS side lives with the deploy commands

        remote = aws_cli.needs_aws_sdk(aws_cli.run_remote)
        raise typer.Exit(remote(payload, name=name, format=format.value, region=region, profile=profile,
                                endpoint_url=endpoint_url, execution_name=execution_name, timeout=timeout))
    try:
        if replace and execution_name is None:
            raise InputError([Problem("/replace", "--replace reuses a name: give it with --execution-name NAME",
                                      "INVALID_ARGUMENT")], "arguments")
        spec = builtin(workflow.value)
        body = check_payload(spec, read_payload(payload), payload)
        check_report_path(report)
        needs_glue = any(s.kind == "glue" for s in spec.stages)
        if needs_glue:
            _require_glue(spec)  # before anything is written: no half run
        for warning in express_duration_warnings(spec):
            if format is OutputFormat.text:
                err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except CeapError as exc:
        emit_problems(ValidationFailed([Problem("/", str(exc), "ERROR")], "run"), format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None

    from adapters.local import FileObjectStore, LocalStores, SQLiteCandidateStore

    run_clock = VirtualClock() if clock is ClockKind.virtual else RealClock()
    objects = FileObjectStore(store)
    candidates = SQLiteCandidateStore(LocalStores(store).candidates_path, clock=run_clock)
    progress = _Progress(run_clock.time(), enabled=format is OutputFormat.text)
    from ceap_engine.observe.report import AttemptStopwatch  # here: keeps the CLI's start-up light

    stopwatch = AttemptStopwatch()
    runners = _glue_runners(spec, objects) if needs_glue else {}
    try:
        pipeline = LocalPipeline(spec, objects=objects, candidates=candidates, clock=run_clock, runners=runners,
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
                     checks=reconciliation(result.counts), wall_times=stopwatch.seconds, wall_seconds=wall_seconds)
    if format is OutputFormat.json:
        print_json(_json_document(result, store))
    else:
        _print_text(result, store, wall_seconds)
        if report is not None:
            console.print(escape(f"report:     {report.resolve()}"))
    raise typer.Exit(EXIT_OK if result.status == "SUCCEEDED" else EXIT_FAILED)


def _require_glue(spec: WorkflowSpec) -> None:
    """Refuse a workflow with a Glue stage when pyspark or Java is missing, saying what to install."""
    from adapters.local import glue

    glue.require_glue(spec.name)


def _glue_runners(spec: WorkflowSpec, objects: Any) -> dict[str, Any]:
    """The local Glue runner, serving each Glue stage's job name with its script."""
    from adapters.local.glue import LocalGlueRunner

    scripts = {glue_job_name(spec, s): s.script for s in spec.stages if s.kind == "glue"}
    return {"glue:startJobRun": LocalGlueRunner(objects, scripts)}


async def _run_interruptible(pipeline: LocalPipeline, payload: dict[str, Any], name: str | None,
                             replace: bool = False) -> PipelineResult:
    execution = await pipeline.start_checked(payload, name=name, replace=replace)
    return await pipeline.collect(await await_interruptibly(execution))


def event(
    event_file: Annotated[Path, typer.Argument(help="One customer event (JSON): eventId, eventType, customerId, programId, marketplace, subject ...")],
    local: Annotated[bool, typer.Option("--local", help="Handle it on this machine (the only target so far).")] = True,
    store: Annotated[Path, typer.Option("--store", help="Where the embedded storage lives")] = Path(".ceap"),
    bucket: Annotated[str, typer.Option("--bucket", help="Bucket of the dedup markers")] = BUILTIN["realtime"].workflow_bucket,
    format: Annotated[OutputFormat, typer.Option("--format", help="text or json")] = OutputFormat.text,
) -> None:
    """Handle a single customer event: create or update one candidate (5-minute dedup window).

    Exit codes: 0 handled (created, updated or deduplicated), 2 bad event.
    """
    from ceap_engine.pipeline.stage import PermanentError, StageContext

    try:
        handler = load_stage_function("stages.reactive:handle_event")
        document = read_payload(event_file)
        parsed = handler.parse_input(document, f"the event in {event_file}")
    except PermanentError as exc:
        emit_problems(ValidationFailed([Problem("/", str(exc))], "event"), format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    from adapters.local import FileObjectStore, SQLiteCandidateStore

    clock = RealClock()
    candidates = SQLiteCandidateStore(store / "candidates.sqlite3", clock=clock)
    try:
        context = StageContext(execution_id=f"event-{document.get('eventId', 'unknown')}", stage="ReactiveEvent",
                               bucket=bucket, objects=FileObjectStore(store), candidates=candidates, clock=clock)
        result = asyncio.run(handler.function(parsed, context))
    finally:
        candidates.close()
    doc = result.model_dump(mode="json", by_alias=True)
    if format is OutputFormat.json:
        print_json(doc)
    else:
        console.print(f"[bold]{doc['status']}[/] {doc.get('reason') or ''} candidate {doc['pk']} / {doc['sk']}")
    raise typer.Exit(EXIT_OK)
