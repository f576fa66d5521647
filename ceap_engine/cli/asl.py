"""``ceap asl``: validate and run any ASL definition locally."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ceap_engine.asl.interpreter import EXPRESS, STANDARD, Engine, ExecutionResult
from ceap_engine.runtime.clock import RealClock, VirtualClock
from ceap_engine.runtime.mocks import MockConfig
from ceap_engine.runtime.tasks import LambdaFunctions, TaskRunners

from ..asl.definition import load_definition, validate_definition
from ..errors import CeapError, InputError, Problem, ValidationFailed
from ._options import ClockKind, OutputFormat
from ._output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    await_interruptibly,
    console,
    emit_problems,
    envelope,
    err_console,
    parse_json_text,
    print_json,
    read_json_file,
)
from ._report import check_report_path, write_report
from .run_report import stopped_reason

app = typer.Typer(no_args_is_help=True, help="Validate and run Amazon States Language definitions locally.")


class WorkflowType(str, Enum):
    standard = "standard"
    express = "express"


def read_definition(path: Path) -> dict[str, Any]:
    return read_json_file(path, "definition", "INVALID_JSON_DESCRIPTION")


def read_input(value: str | None, option: str = "--input") -> tuple[Any, str | None]:
    """A JSON option's value: a file path or JSON text; returns (value, the JSON text as given).

    Errors name the option, and for a file the file and the position.

    >>> read_input('{"a": 1}')
    ({'a': 1}, '{"a": 1}')
    """
    where = "/" + option.lstrip("-")
    if value is None:
        return {}, "{}"
    candidate = Path(value)
    if not value.lstrip().startswith(("{", "[", '"')) and candidate.is_file():
        try:
            text = candidate.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError([Problem(where, f"{option} {candidate}: cannot read it ({exc})", "UNREADABLE")]) from None
        return parse_json_text(text, where, f"{option} file {candidate}"), text
    hint = "" if candidate.exists() else " (and no file of that name exists)"
    return parse_json_text(value, where, f"{option}{hint}"), value


def parse_start_time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError([Problem("/start-time", f"--start-time {value!r} is not ISO 8601 (e.g. 2026-01-01T00:00:00Z)")]) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def load_function(spec: str) -> tuple[str, Any]:
    """``NAME=module.path:function`` -> (name, handler)."""
    name, sep, target = spec.partition("=")
    module_name, colon, attr = target.partition(":")
    if not sep or not colon or not name or not module_name or not attr:
        raise InputError([Problem("/function", f"--function {spec!r} must look like NAME=package.module:handler")])
    # As `python -m` does: a module in the current folder imports without PYTHONPATH.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
        return name, getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise InputError([Problem("/function", f"cannot load handler {target!r}: {exc}")]) from None


def print_result(result: ExecutionResult, fmt: OutputFormat, show_events: bool = True) -> None:
    """An execution's end: the JSON envelope of its DescribeExecution fields and events, or text."""
    if fmt is OutputFormat.json:
        print_json(envelope(result.to_json(), ok=result.status == "SUCCEEDED"))
        return
    colour = {"SUCCEEDED": "green", "FAILED": "red", "TIMED_OUT": "red", "ABORTED": "yellow"}.get(result.status, "white")
    console.print(f"[bold {colour}]{result.status}[/]  {result.execution_arn}")
    if result.history is not None and show_events:
        for e in result.history.events:
            details = e.details or {}
            label = details.get("name") or details.get("error") or ""
            console.print(f"  {e.id:>4} {e.type:<28} {escape(str(label))}", highlight=False)
    if result.status == "SUCCEEDED":
        console.print("output:", highlight=False)
        console.print_json(json.dumps(result.output))
    else:
        error, cause = stopped_reason(result.error, result.cause, result.status)
        console.print(f"error: {escape(error)}", highlight=False)
        console.print(f"cause: {escape(cause)}", highlight=False)
    if result.stop_time is not None:
        console.print(f"duration (execution clock): {result.stop_time - result.start_time:.3f} s", highlight=False)


@app.command("validate")
def validate(
    definition: Annotated[Path, typer.Argument(help="The ASL definition (JSON file).")],
    format: Annotated[OutputFormat, typer.Option("--format", help="text or json")] = OutputFormat.text,
) -> None:
    """Check a definition as CreateStateMachine would: every problem, with its JSON path."""
    try:
        document = read_definition(definition)
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:
        problems = validate_definition(document)
    except RecursionError:
        problems = [Problem("/", "the definition is nested too deeply to check", "NESTED_TOO_DEEPLY")]
    if problems:
        emit_problems(ValidationFailed(problems, "state machine definition"), format.value,
                      valid=False, problems=[p.as_dict() for p in problems])
        raise typer.Exit(EXIT_BAD_INPUT)
    if format is OutputFormat.json:
        print_json(envelope({"valid": True, "problems": []}))
    else:
        console.print(f"[green]valid[/]: {definition}")


@app.command("run")
def run(
    definition: Annotated[Path, typer.Argument(help="The ASL definition (JSON file).")],
    input: Annotated[str | None, typer.Option("--input", help="Execution input: a JSON file or JSON text. Default {}.")] = None,
    mock_config: Annotated[Path | None, typer.Option("--mock-config", help="Step Functions Local MockConfigFile.json")] = None,
    test_case: Annotated[str | None, typer.Option("--test-case", help="Test case of the mock config to use")] = None,
    state_machine_name: Annotated[str | None, typer.Option("--state-machine-name", help="State machine name (default: the definition file's name)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Execution name (default: a UUID)")] = None,
    clock: Annotated[ClockKind, typer.Option("--clock", help="virtual: waits and retries cost no wall time")] = ClockKind.virtual,
    seed: Annotated[int | None, typer.Option("--seed", help="Makes jitter, random and UUID values repeatable")] = None,
    start_time: Annotated[str | None, typer.Option("--start-time", help="ISO 8601 start of the virtual clock (default: now)")] = None,
    type: Annotated[WorkflowType, typer.Option("--type", help="standard or express (applies that type's limits)")] = WorkflowType.standard,
    function: Annotated[list[str] | None, typer.Option("--function", help="Register a Lambda function: NAME=module:handler (repeatable)")] = None,
    objects: Annotated[Path | None, typer.Option("--objects", help="Folder of the local object store (the S3 of Distributed Map ItemReader/ResultWriter): objects are DIR/buckets/<bucket>/<key>")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="text or json")] = OutputFormat.text,
    report: Annotated[Path | None, typer.Option("--report", help="Also write the execution's report page (FILE.html: graph, timeline, history)")] = None,
) -> None:
    """Run a definition on the local interpreter and print its result and history.

    Ctrl-C or SIGTERM stops the run as ABORTED. Exit codes: 0 SUCCEEDED, 1 FAILED/TIMED_OUT/ABORTED,
    2 bad definition, input or arguments.
    """
    try:
        document = read_definition(definition)
        machine = load_definition(document)
        value, text = read_input(input)
        if (mock_config is None) != (test_case is None):
            raise InputError([Problem("/mock-config", "--mock-config and --test-case go together")], "arguments")
        sm_name = state_machine_name or definition.stem
        check_report_path(report)
        mocks = MockConfig.load(mock_config).test_case(sm_name, test_case) if mock_config else None  # type: ignore[arg-type]
        start = parse_start_time(start_time)
        if clock is ClockKind.real and start is not None:
            raise InputError([Problem("/start-time", "--start-time only applies to the virtual clock")], "arguments")
        runners = TaskRunners()
        functions = runners.register_lambda(LambdaFunctions())
        for spec in function or []:
            fn_name, handler = load_function(spec)
            functions.register(fn_name, handler)
        object_store = None
        if objects is not None:
            from adapters.local.objects import FileObjectStore

            object_store = FileObjectStore(objects)
        engine = Engine(
            clock=VirtualClock(start) if clock is ClockKind.virtual else RealClock(),
            runners=runners,
            seed=seed,
            object_store=object_store,
        )
        execution_type = EXPRESS if type is WorkflowType.express else STANDARD

        async def main() -> ExecutionResult:
            execution = engine.start(
                machine, value, name=name, state_machine_name=sm_name, execution_type=execution_type,
                input_text=text, mocks=mocks,
            )

            def ready() -> None:
                if clock is ClockKind.real:
                    # Real time may be long: say it runs (on stderr, so --format json stays one document).
                    err_console.print(f"execution {escape(execution.name)} started; Ctrl-C stops it", highlight=False)

            return await await_interruptibly(execution, ready)

        began = time.perf_counter()
        result = asyncio.run(main())
        wall_seconds = time.perf_counter() - began
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except CeapError as exc:
        emit_problems(ValidationFailed([Problem("/", str(exc), "ERROR")], "run"), format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if report is not None:
        write_report(report, document, result.to_json(), wall_seconds=wall_seconds)
    print_result(result, format)
    raise typer.Exit(EXIT_OK if result.status == "SUCCEEDED" else EXIT_FAILED)


@app.command("conformance")
def conformance(
    corpus: Annotated[Path, typer.Argument(help="Corpus root: cases/<category>/*.json and test_state/*.json")],
    format: Annotated[OutputFormat, typer.Option("--format", help="text or json")] = OutputFormat.text,
) -> None:
    """Replay executions and TestState calls recorded on AWS and compare at three levels.

    Levels, counted independently: outcome (status + output or error/cause),
    event types (the history's type sequence), event details (ids, previous
    ids, every details object). Exit code 0 whenever a report was produced,
    2 when DIR holds no corpus.
    """
    from ceap_engine.conformance.replay import run_conformance
    from ceap_engine.conformance.teststate import ServiceModels

    if not (corpus / "cases").is_dir() and not (corpus / "test_state").is_dir():
        emit_problems(ValidationFailed([Problem(
            "/", f"{corpus} is not a conformance corpus: expected cases/<category>/*.json and/or test_state/*.json "
                 "(for example tests/conformance/data)", "NOT_A_CORPUS")], "corpus"), format.value)
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        report = asyncio.run(run_conformance(corpus, models=ServiceModels.from_botocore()))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        # A file that is not a recorded case: the corpus is bad input, not a crash.
        detail = f"a case file lacks the field {exc}" if isinstance(exc, KeyError) else str(exc)
        emit_problems(ValidationFailed([Problem("/", f"{corpus} holds a file that is not a recorded case ({detail}); "
                                                     "a case has id, definition, input and expected",
                                                "NOT_A_CORPUS")], "corpus"), format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if format is OutputFormat.json:
        print_json(envelope(report.to_json()))
    else:
        console.print(report.to_text(), highlight=False, markup=False)
    raise typer.Exit(EXIT_OK)


def _json_option(value: str | None, option: str) -> Any:
    """A JSON option: a file path or JSON text; None when not given."""
    if value is None:
        return None
    parsed, _ = read_input(value, option)
    return parsed


@app.command("test-state")
def test_state(
    definition: Annotated[Path | None, typer.Argument(help="A state or state machine definition (JSON file); or use --request")] = None,
    request: Annotated[Path | None, typer.Option("--request", help="A TestState API request (JSON file), as sent to AWS")] = None,
    state: Annotated[str | None, typer.Option("--state", help="The state to test when DEFINITION is a whole state machine")] = None,
    input: Annotated[str | None, typer.Option("--input", help="State input: a JSON file or JSON text. Default {}.")] = None,
    inspection_level: Annotated[str, typer.Option("--inspection-level", help="INFO, DEBUG or TRACE")] = "DEBUG",
    mock_result: Annotated[str | None, typer.Option("--mock-result", help="Mocked Task/Map/Parallel result (JSON)")] = None,
    mock_error: Annotated[str | None, typer.Option("--mock-error", help="Mocked error name (with --mock-cause)")] = None,
    mock_cause: Annotated[str | None, typer.Option("--mock-cause", help="Mocked error cause")] = None,
    field_validation: Annotated[str | None, typer.Option("--field-validation", help="STRICT, PRESENT or NONE")] = None,
    variables: Annotated[str | None, typer.Option("--variables", help="Variables in scope (JSON object)")] = None,
    context: Annotated[str | None, typer.Option("--context", help="Context object to use (JSON object)")] = None,
    retry_count: Annotated[int | None, typer.Option("--retrier-retry-count", help="Retries already made")] = None,
    role_arn: Annotated[str | None, typer.Option("--role-arn", help="Role ARN (needed for an unmocked Task)")] = None,
    function: Annotated[list[str] | None, typer.Option("--function", help="Register a Lambda function: NAME=module:handler (repeatable)")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="json (the API's answer) or text")] = OutputFormat.json,
) -> None:
    """Test one state as the AWS TestState API does, locally.

    Exit codes: 0 SUCCEEDED, 1 FAILED, RETRIABLE or CAUGHT_ERROR, 2 a request
    AWS would refuse (ValidationException/InvalidDefinition) or bad arguments.
    """
    from ceap_engine.conformance.teststate import (
        ServiceModels,
        TestStateRejected,
        TestStateRequest,
        run_test_state,
    )

    try:
        if request is not None:
            if definition is not None or state is not None or mock_result is not None or mock_error is not None:
                raise InputError([Problem("/request", "--request holds the whole request: give no DEFINITION, "
                                                      "--state or --mock-* with it")], "arguments")
            api_request = read_json_file(request, "TestState request")
        else:
            if definition is None:
                raise InputError([Problem("/definition", "give a DEFINITION file or --request REQUEST.json")], "arguments")
            api_request = {"definition": read_definition(definition), "inspectionLevel": inspection_level.upper()}
            if state is not None:
                api_request["stateName"] = state
            if input is not None:
                api_request["input"], _ = read_input(input)
            mock: dict[str, Any] = {}
            if mock_result is not None:
                mock["result"] = json.dumps(_json_option(mock_result, "--mock-result"))
            if mock_error is not None or mock_cause is not None:
                mock["errorOutput"] = {"error": mock_error or "States.TaskFailed", "cause": mock_cause or ""}
            if field_validation is not None:
                mock["fieldValidationMode"] = field_validation.upper()
            if mock:
                api_request["mock"] = mock
            if variables is not None:
                api_request["variables"] = _json_option(variables, "--variables")
            if context is not None:
                api_request["context"] = _json_option(context, "--context")
            if retry_count is not None:
                api_request["stateConfiguration"] = {"retrierRetryCount": retry_count}
            if role_arn is not None:
                api_request["roleArn"] = role_arn
        runners = TaskRunners()
        functions = runners.register_lambda(LambdaFunctions())
        for spec in function or []:
            fn_name, handler = load_function(spec)
            functions.register(fn_name, handler)
        parsed = TestStateRequest.from_api(api_request)
        answer = asyncio.run(run_test_state(parsed, runners=runners, models=ServiceModels.from_botocore()))
    except TestStateRejected as rejected:
        if format is OutputFormat.json:
            print_json(envelope(rejected.to_json() | {
                "error": f"{rejected.code}: {rejected.message}",
                "details": [{"path": "/", "message": rejected.message, "code": rejected.code}]}, ok=False))
        else:
            err_console.print(f"[bold red]{rejected.code}:[/] {escape(rejected.message)}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if format is OutputFormat.json:
        print_json(envelope(answer, ok=answer["status"] == "SUCCEEDED"))
    else:
        colour = {"SUCCEEDED": "green", "CAUGHT_ERROR": "yellow", "RETRIABLE": "yellow"}.get(answer["status"], "red")
        console.print(f"[bold {colour}]{answer['status']}[/]" + (f"  next: {answer['nextState']}" if "nextState" in answer else ""))
        for key in ("error", "cause"):
            if key in answer:
                console.print(f"{key}: {answer[key]}", highlight=False, markup=False)
        if "output" in answer:
            console.print("output:")
            console.print_json(answer["output"])
        for key, value in (answer.get("inspectionData") or {}).items():
            console.print(f"{key}: {value}", highlight=False, markup=False)
    raise typer.Exit(EXIT_OK if answer["status"] == "SUCCEEDED" else EXIT_FAILED)
