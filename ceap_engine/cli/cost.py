"""``ceap cost``: a monthly AWS estimate of a shipped workflow, from a run measured on this machine."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..errors import CeapError, InputError, Problem, ValidationFailed
from ._options import OutputFormat
from ._output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    console,
    emit_problems,
    envelope,
    err_console,
    print_json,
)
from .graph import GraphWorkflow

__all__ = ["cost"]

_DEFAULT_PAYLOAD = {"realtime": Path("examples/payload.json"), "batch": Path("examples/payload-batch.json")}


def _deployment(spec: Any) -> Any:
    """The deployment the template would create (Lambda memory, Glue workers, lifecycle, Pipe)."""
    from adapters.aws.template import synthesize
    from ceap_engine.observe.cost import deployment_from_template
    from ceap_engine.pipeline.names import lambda_function_name

    functions = {s.name: lambda_function_name(spec, s) for s in spec.stages if s.kind == "lambda"}
    return deployment_from_template(synthesize(spec), functions)


def _measure(spec: Any, payload: dict[str, Any]) -> tuple[Any, Any]:
    """Run the workflow once on a throw-away local store; returns (measurement, result)."""
    from adapters.local import FileObjectStore, SQLiteCandidateStore
    from ceap_engine.observe.measure import CountingObjectStore, measure_execution
    from ceap_engine.observe.report import AttemptStopwatch
    from ceap_engine.pipeline.local import LocalPipeline
    from ceap_engine.runtime.clock import VirtualClock

    from . import run as run_cli

    with tempfile.TemporaryDirectory(prefix="ceap-cost-") as root:
        clock = VirtualClock()
        objects = CountingObjectStore(FileObjectStore(Path(root)))
        candidates = SQLiteCandidateStore(Path(root) / "candidates.sqlite3", clock=clock)
        # Lambda stages: this process's CPU time, which a busy machine does not inflate as it does
        # wall time. Glue runs Spark in a JVM of its own: its wall time is what there is.
        cpu, wall = AttemptStopwatch(time.process_time), AttemptStopwatch()
        glue = {s.name for s in spec.stages if s.kind == "glue"}
        runners = run_cli._glue_runners(spec, objects)
        try:
            pipeline = LocalPipeline(spec, objects=objects, candidates=candidates, clock=clock, runners=runners,
                                     progress=lambda p: (cpu(p), wall(p)), seed=1)
            result = asyncio.run(pipeline.run(payload))
        finally:
            candidates.close()
        measurement = measure_execution(
            result.execution.to_json(), pipeline.definition, [(s.name, s.kind) for s in spec.stages],
            {k: (wall.seconds[k] if k[0] in glue else v) for k, v in cpu.seconds.items()}, objects, result.counts, workflow=spec.name, execution_type=pipeline.execution_type,
            calls=cpu.calls)
    return measurement, result


def cost(
    workflow: Annotated[GraphWorkflow, typer.Option("--workflow", help="The shipped workflow to price: realtime or batch")] = GraphWorkflow.realtime,
    executions_per_day: Annotated[float, typer.Option("--executions-per-day", min=0, help="How many executions a day")] = 1.0,
    records: Annotated[int | None, typer.Option("--records", min=1, help="Records (lines read) per execution; default: the measured run's")] = None,
    region: Annotated[str, typer.Option("--region", help="The AWS region whose prices apply")] = "us-east-1",
    prices: Annotated[Path | None, typer.Option("--prices", help="A price table of your own (the shape of ceap_engine/observe/prices.json)")] = None,
    payload: Annotated[Path | None, typer.Option("--payload", help="The execution input to measure (default: the shipped example of the workflow)")] = None,
    lambda_speed: Annotated[float, typer.Option("--lambda-speed", min=0.01, help="How much faster a local core is than a Lambda vCPU (the time scaling rule)")] = 1.0,
    glue_run_seconds: Annotated[float | None, typer.Option("--glue-run-seconds", min=0, help="A Glue run's duration instead of the measured local Spark time")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="text (a table) or json")] = OutputFormat.text,
) -> None:
    """Estimate the monthly AWS bill of a workflow from one execution measured here.

    Step Functions (Standard per transition; Express per request and GB-second), Lambda requests
    and GB-seconds (local time scaled by Lambda's memory-bound CPU share), Glue DPU-hours (the
    job's workers, 1-minute minimum), S3 requests and storage under the 7-day lifecycle,
    DynamoDB writes, SQS and Pipe requests. The free tier is shown separately.
    Exit codes: 0 estimated, 1 the measured run failed, 2 bad arguments or price table.
    """
    from ceap_engine.observe.cost import LambdaTimeRule, PriceTable, estimate_cost
    from ceap_engine.pipeline import builtin

    from ._options import read_payload
    from .payload import check_payload
    from .run import _require_glue

    try:
        table = PriceTable.load(prices, region=region)
        spec = builtin(workflow.value)
        source = payload or _DEFAULT_PAYLOAD[workflow.value]
        if payload is None and not source.is_file():
            raise InputError([Problem("/payload", f"the shipped example {source} is not here (run from the ceap checkout) - "
                                                  "give the input to measure with --payload FILE")], "arguments")
        body = check_payload(spec, read_payload(source), source)
        if any(s.kind == "glue" for s in spec.stages):
            _require_glue(spec)
        deployment = _deployment(spec)
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except CeapError as exc:
        emit_problems(ValidationFailed([Problem("/", str(exc), "ERROR")], "cost"), format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if format is OutputFormat.text:
        err_console.print(f"measuring one {workflow.value} execution of {source} locally ...")
    measurement, result = _measure(spec, body)
    if result.status != "SUCCEEDED":
        emit_problems(ValidationFailed([Problem("/", f"the measured execution ended {result.status}: {result.execution.error}: "
                                                     f"{str(result.execution.cause)[:300]}", "MEASURED_RUN_FAILED")], "measured run"),
                      format.value)
        raise typer.Exit(EXIT_FAILED)
    estimate = estimate_cost(measurement, deployment, table, executions_per_day=executions_per_day, records=records,
                             rule=LambdaTimeRule(speed=lambda_speed), glue_run_seconds=glue_run_seconds)
    if format is OutputFormat.json:
        doc = estimate.to_json()
        doc["measured"] = {"executionId": result.execution_id, "transitions": measurement.transitions + measurement.map_transitions,
                           "stages": [{"name": s.name, "kind": s.kind, "attempts": s.attempts, "localSeconds": round(s.local_seconds, 4)}
                                      for s in measurement.stages],
                           "s3Puts": measurement.s3_puts, "s3Gets": measurement.s3_gets, "s3BytesWritten": measurement.s3_bytes_written}
        print_json(envelope(doc))
        raise typer.Exit(EXIT_OK)
    _print_table(estimate)
    raise typer.Exit(EXIT_OK)


def _money(value: float) -> str:
    if 0 < value < 0.0001:
        return "< $0.0001"
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:,.4f}"


def _unit_price(price: float, unit: str) -> str:
    if price < 0.001:
        return f"${price * 1e6:,.4g} per M {unit}"
    return f"${price:,.4g} per {unit.rstrip('s')}"


def _print_table(estimate: Any) -> None:
    from rich.table import Table

    table = Table(title=f"ceap cost: workflow {estimate.workflow} in {estimate.region}, "
                        f"{estimate.executions_per_month:,.0f} executions a month of {estimate.records_per_execution:,} records",
                  title_justify="left")
    for column, justify in (("item", "left"), ("per month", "right"), ("unit price", "right"), ("cost", "right"),
                            ("free tier", "right"), ("billed", "right")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for line in estimate.lines:
        quantity = f"{line.quantity:,.0f}" if line.quantity >= 100 else f"{line.quantity:,.3g}"
        table.add_row(escape(f"{line.service} {line.item}"), f"{quantity} {line.unit}", _unit_price(line.unit_price, line.unit),
                      _money(line.cost), f"{line.free:,.0f}" if line.free else "-", _money(line.cost_after_free_tier))
    table.add_row("[bold]total a month[/]", "", "", f"[bold]{_money(estimate.total)}[/]", "",
                  f"[bold]{_money(estimate.total_after_free_tier)}[/]")
    console.print(table)
    console.print("how it was counted:")
    for note in estimate.assumptions:
        console.print(f"  - {escape(note)}")
