"""``ceap deploy | destroy | status | synth``, and the AWS side of ``ceap run --target aws`` and ``ceap send -n``.

Every command takes ``--region``, ``--profile`` and ``--endpoint-url`` (or
``AWS_ENDPOINT_URL``, for LocalStack or moto); credentials come from the usual
chain. Exit codes: 0 done, 1 AWS said no or the execution failed, 2 a bad
argument or payload (nothing was created).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from ceap_engine.pipeline import express_duration_warnings

from ..errors import CeapError, InputError, Problem, ValidationFailed
from ._options import OutputFormat, read_payload
from ._output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    console,
    emit_error,
    emit_problems,
    ensure_writable_folder,
    envelope,
    err_console,
    error_envelope,
    print_json,
    tolerate_broken_pipe,
    write_output_file,
)

T = TypeVar("T")


class Target(str, Enum):
    aws = "aws"


class WorkflowType(str, Enum):
    express = "express"
    standard = "standard"


class Arch(str, Enum):
    x86_64 = "x86_64"
    arm64 = "arm64"


class Runtime(str, Enum):
    python312 = "python3.12"
    python313 = "python3.13"
    python311 = "python3.11"


RuntimeOption = Annotated[
    Runtime, typer.Option("--runtime", help="Lambda runtime of the stages (python3.11 is deprecated on 2027-06-30)")
]
AlarmEmailOption = Annotated[
    str | None, typer.Option("--alarm-email", help="Mail the workflow's CloudWatch alarms here (an SNS topic; AWS asks to confirm)")
]


NameOption = Annotated[str, typer.Option("-n", "--name", help="Workflow name: a lowercase letter, then up to 29 lowercase letters, digits or '-' (^\\[a-z]\\[a-z0-9-]{0,29}$)")]
TypeOption = Annotated[WorkflowType, typer.Option("-t", "--type", help="express (realtime) or standard (batch, with Glue)")]
RegionOption = Annotated[str | None, typer.Option("--region", help="AWS region (default: AWS_REGION or the profile's)")]
ProfileOption = Annotated[str | None, typer.Option("--profile", help="AWS profile from ~/.aws/config")]
EndpointOption = Annotated[
    str | None, typer.Option("--endpoint-url", help="Send AWS calls here (LocalStack, moto); default AWS_ENDPOINT_URL")
]
LogDataOption = Annotated[
    bool,
    typer.Option("--log-execution-data/--no-log-execution-data",
                 help="Put execution input/output in the state machine's CloudWatch logs (needed to see Express data)"),
]


FormatOption = Annotated[OutputFormat, typer.Option("--format", help="text or json (one JSON document on stdout)")]


def _settings(region: str | None, profile: str | None, endpoint_url: str | None) -> Any:
    from urllib.parse import urlparse

    from adapters.aws.session import AwsSettings

    if endpoint_url is not None:
        parsed = urlparse(endpoint_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InputError([Problem("/endpoint-url", f"--endpoint-url {endpoint_url!r} is not a URL: give one such as "
                                                       "http://127.0.0.1:4566", "INVALID_ENDPOINT_URL")], "argument")

    return AwsSettings(region=region, profile=profile, endpoint_url=endpoint_url)


def _run(work: Callable[[], Awaitable[T]], fmt: str = "text") -> T:
    """Run an async command body; report our errors as the user should see them and exit."""
    try:
        return asyncio.run(work())
    except ValidationFailed as exc:
        emit_problems(exc, fmt)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except CeapError as exc:
        from adapters.aws.deploy import DeployFailed

        details = [{"path": "/", "message": str(exc), "code": type(exc).__name__}]
        if isinstance(exc, DeployFailed):
            details += [{"path": f"/stack/{e['LogicalResourceId']}", "code": e["ResourceStatus"],
                         "message": f"{e.get('ResourceType', '')}: {e.get('ResourceStatusReason', '')}"}
                        for e in exc.events or []]
        if fmt == "json":
            print_json(error_envelope(str(exc), details))
        else:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
            if isinstance(exc, DeployFailed) and exc.events:
                err_console.print("the failing stack events:")
                for event in exc.events:
                    err_console.print(f"  {event['ResourceStatus']} {event.get('ResourceType', '')} "
                                      f"{event['LogicalResourceId']}: {event.get('ResourceStatusReason', '')}")
        raise typer.Exit(EXIT_FAILED) from None


def _spec(name: str, workflow_type: str, fmt: str = "text") -> Any:
    from adapters.aws.template import workflow_spec

    try:
        return workflow_spec(name, workflow_type)  # type: ignore[arg-type]
    except ValidationFailed as exc:
        emit_problems(exc, fmt)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _template_options(log_execution_data: bool, arch: str, runtime: str, alarm_email: str | None,
                      fmt: str = "text") -> Any:
    from adapters.aws.template import TemplateOptions

    try:
        return TemplateOptions(log_execution_data=log_execution_data, arch=arch, runtime=runtime,  # type: ignore[arg-type]
                               alarm_email=alarm_email)
    except ValidationFailed as exc:
        emit_problems(exc, fmt)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def synth(
    name: NameOption,
    workflow_type: TypeOption = WorkflowType.express,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the template here instead of stdout")] = None,
    log_execution_data: LogDataOption = True,
    arch: Annotated[Arch, typer.Option("--arch", help="Lambda architecture")] = Arch.x86_64,
    runtime: RuntimeOption = Runtime.python312,
    alarm_email: AlarmEmailOption = None,
    format: FormatOption = OutputFormat.text,
) -> None:
    """Print the CloudFormation template of a workflow (no AWS call).

    With --format json the template is the ``template`` field of the JSON envelope.
    """
    from adapters.aws.template import synthesize, template_body

    spec = _spec(name, workflow_type.value, format.value)
    options = _template_options(log_execution_data, arch.value, runtime.value, alarm_email, format.value)
    template = synthesize(spec, options)
    body = template_body(template)
    if output is not None:
        try:
            write_output_file(output, body + "\n")
        except ValidationFailed as exc:
            emit_problems(exc, format.value)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    if format is OutputFormat.json:
        print_json(envelope({"workflow": spec.name, "output": str(output) if output else None,
                             "template": None if output else template}))
    elif output is None:
        with tolerate_broken_pipe():
            typer.echo(body)
    else:
        err_console.print(f"wrote {output}")


def deploy(
    name: NameOption,
    workflow_type: TypeOption = WorkflowType.express,
    target: Annotated[Target, typer.Option("--target", help="Where to deploy (aws)")] = Target.aws,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and the change set; upload and create nothing")] = False,
    arch: Annotated[Arch, typer.Option("--arch", help="Lambda architecture")] = Arch.x86_64,
    wheelhouse: Annotated[Path | None, typer.Option("--wheelhouse", help="Take Lambda-platform wheels from this folder (offline)")] = None,
    artifacts_bucket: Annotated[str | None, typer.Option("--artifacts-bucket", help="Default: ceap-artifacts-{account}-{region}")] = None,
    build_dir: Annotated[Path, typer.Option("--build-dir", help="Where the code package is built (reused while its inputs stay the same)")] = Path(".ceap/build"),
    log_execution_data: LogDataOption = True,
    runtime: RuntimeOption = Runtime.python312,
    alarm_email: AlarmEmailOption = None,
    no_execute: Annotated[bool, typer.Option("--no-execute", help="Create and show the change set, keep it for review, execute nothing")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Execute the change set without asking (asked only on a terminal)")] = False,
    format: FormatOption = OutputFormat.text,
) -> None:
    """Deploy a workflow: package, upload, create a change set, show it, execute it, wait, print the outputs.

    On a terminal the change set is executed only after you say yes (asked on stderr; --yes skips the
    question). With --format json the progress goes to stderr and the result is one JSON envelope on stdout.
    """
    import sys

    from adapters.aws.deploy import DeployRequest, execute_deploy, plan_deploy
    from adapters.aws.packaging import LambdaBuild
    from adapters.aws.session import AwsClients

    spec = _spec(name, workflow_type.value, format.value)
    try:
        if wheelhouse is not None and not wheelhouse.is_dir():
            raise InputError([Problem("/wheelhouse", f"--wheelhouse {wheelhouse} is not a folder")], "argument")
        ensure_writable_folder(build_dir, "--build-dir")
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    warnings = list(express_duration_warnings(spec))
    for warning in warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    if runtime is Runtime.python311:
        warning = ("Lambda's python3.11 runtime runs on Amazon Linux 2 and is deprecated on 2027-06-30; "
                   "python3.12 (the default) runs on Amazon Linux 2023")
        warnings.append(warning)
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    out = console if format is OutputFormat.text else err_console
    doc: dict[str, Any] = {"workflow": spec.name, "dryRun": dry_run, "warnings": warnings}
    request = DeployRequest(
        build_dir=build_dir,
        build=LambdaBuild(arch=arch.value, wheelhouse=wheelhouse, python=runtime.value.removeprefix("python")),
        options=_template_options(log_execution_data, arch.value, runtime.value, alarm_email, format.value),
        artifacts_bucket=artifacts_bucket,
    )
    # Ask only a person: scripts and CI (no terminal) get the old behaviour, --yes skips the question.
    ask = not (yes or dry_run or no_execute) and sys.stdin.isatty()

    def confirm(changes: list[str]) -> bool:
        return typer.confirm(f"Execute this change set ({len(changes)} change(s))?", default=False, err=True)

    async def work() -> int:
        async with AwsClients(_settings(region, profile, endpoint_url)) as aws:
            plan = await plan_deploy(aws, spec, request, report=lambda line: err_console.print(escape(line)))
            doc["plan"] = list(plan.describe())
            doc["blockers"] = list(plan.blockers)
            for line in doc["plan"]:
                out.print(escape(line))
            if dry_run:
                return await _dry_run(aws, plan, doc, out, format)
            result = await execute_deploy(aws, plan, report=lambda line: out.print(escape(line)),
                                          execute=not no_execute, confirm=confirm if ask else None)
            doc.update(stack=result.stack, status=result.status, changed=result.changed, changeSet=result.change_set)
            if result.status == "CHANGE_SET_CREATED":
                out.print(f"[bold]{result.stack}: change set created, not executed[/] ({result.change_set})")
                if format is OutputFormat.json:
                    print_json(envelope(doc | {"outputs": {}}))
                return EXIT_OK
            if result.status == "DECLINED":
                if format is OutputFormat.json:
                    message = "not executed: the change set was declined and deleted"
                    print_json(error_envelope(message, [{"path": "/", "message": message, "code": "NOT_CONFIRMED"}],
                                              **doc))
                return EXIT_FAILED
            out.print(f"[bold green]{result.stack}: {result.status}[/]" + ("" if result.changed else " (no change)"))
            for key, value in sorted(result.outputs.items()):
                out.print(f"  {key}: {value}")
            if format is OutputFormat.json:
                print_json(envelope(doc | {"outputs": result.outputs}))
            return EXIT_OK

    raise typer.Exit(_run(work, format.value))


async def _dry_run(aws: Any, plan: Any, doc: dict[str, Any], out: Any, format: OutputFormat) -> int:
    """``ceap deploy --dry-run``: what the deploy would change (``changes``), or create (``creates``); nothing changes.

    Exit 1 (``ok: false``) when the plan has blockers: the deploy would fail.
    """
    from adapters.aws.deploy import preview_change_set, resources_to_create

    step = plan.stack
    if step.unchanged:
        doc["changes"] = []
        out.print("dry run: no change - the stack has this template and these parameters already")
    elif step.change_set_type == "CREATE":
        doc["changes"] = None
        doc["creates"] = resources_to_create(plan)
        out.print(f"dry run: the stack {step.stack} does not exist yet; a deploy would create:")
        for line in doc["creates"]:
            out.print(f"  {escape(line)}")
    else:
        doc["changes"] = changes = await preview_change_set(aws, plan)
        if not changes:
            out.print("dry run: the change set has no changes")
        else:
            out.print("dry run: the change set (deleted again) would do:")
            for line in changes:
                out.print(f"  {escape(line)}")
    if format is OutputFormat.json:
        if plan.blockers:
            message = f"the deploy of {plan.workflow} would fail: " + " ".join(plan.blockers)
            print_json(error_envelope(message, [{"path": "/", "message": b, "code": "BLOCKED"} for b in plan.blockers],
                                      **doc))
        else:
            print_json(envelope(doc))
    return EXIT_FAILED if plan.blockers else EXIT_OK


def destroy(
    name: NameOption,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    format: FormatOption = OutputFormat.text,
) -> None:
    """Remove a deployed workflow: report the DLQ, empty the bucket, delete the stack, list what went.

    Asks first (on stderr) unless --yes; exit 1 when the answer is no.
    """
    from adapters.aws.deploy import destroy_workflow
    from adapters.aws.session import AwsClients

    spec = _spec(name, "express", format.value)
    if not yes and not typer.confirm(
        f"Delete workflow {spec.name} (stack ceap-workflow-{spec.name}), its bucket's objects, queues and candidates?",
        err=True,
    ):
        emit_error("nothing deleted: the deletion was not confirmed (give --yes to skip the question)", format.value,
                   "NOT_CONFIRMED")
        raise typer.Exit(EXIT_FAILED)
    out = console if format is OutputFormat.text else err_console

    async def work() -> int:
        async with AwsClients(_settings(region, profile, endpoint_url)) as aws:
            result = await destroy_workflow(aws, spec.name, report=out.print)
        if format is OutputFormat.json:
            print_json(envelope({"workflow": spec.name, "stack": result.stack, "removed": list(result.removed)}))
            return EXIT_OK
        console.print(f"[bold]{result.stack} deleted[/]; removed:")
        for line in result.removed:
            console.print(f"  {escape(line)}")
        return EXIT_OK

    raise typer.Exit(_run(work, format.value))


def status(
    name: NameOption,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    limit: Annotated[int, typer.Option("--limit", help="How many recent executions")] = 10,
    format: Annotated[OutputFormat, typer.Option("--format", help="text or json")] = OutputFormat.text,
) -> None:
    """Stack state, outputs and recent executions (Express ones read from the state machine's log group)."""
    from adapters.aws.deploy import dlq_depth, workflow_status
    from adapters.aws.session import AwsClients

    spec = _spec(name, "express", format.value)

    async def work() -> int:
        async with AwsClients(_settings(region, profile, endpoint_url)) as aws:
            state = await workflow_status(aws, spec.name, limit=limit)
            depth = await dlq_depth(aws, state.outputs)
        if format is OutputFormat.json:
            print_json(envelope({"workflow": spec.name, "stack": state.stack, "status": state.status,
                                 "type": state.workflow_type, "outputs": state.outputs, "dlqMessages": depth,
                                 "executions": state.executions, "executionsFrom": state.executions_source}))
            return EXIT_OK
        console.print(f"[bold]{state.stack}[/]: {state.status} ({state.workflow_type})")
        for key, value in sorted(state.outputs.items()):
            console.print(f"  {key}: {value}")
        if depth:
            console.print(f"[yellow]{depth} message(s) in the dead-letter queue[/]")
        if state.workflow_type == "standard":
            console.print("[dim]the Pipe starts Standard executions FIRE_AND_FORGET: a failed one never reaches the "
                          "DLQ - it is listed below as FAILED[/]")
        console.print(f"recent executions (from {state.executions_source}):")
        if not state.executions:
            console.print("  none")
        for e in state.executions:
            error = f"  {e['error']}: {e.get('cause') or ''}" if e.get("error") else ""
            console.print(f"  {e.get('startDate') or '?'}  {e.get('status', '?'):<10} {e.get('name') or '?'}{error}")
        return EXIT_OK

    raise typer.Exit(_run(work, format.value))


def _aws_payload(path: Path) -> dict[str, Any]:
    """The payload file's JSON object, valid for the first stage, with an s3:// source (AWS cannot read local files)."""
    from ceap_engine.pipeline import REALTIME

    from .payload import validate_payload

    payload = read_payload(path)
    validate_payload(REALTIME, payload)
    source = payload.get("source")
    if not (isinstance(source, str) and source.startswith("s3://")):
        raise InputError([Problem("/source", f"on AWS the source must be an s3:// URI, got {source!r}: upload the file "
                                             "(for example to s3://<WorkflowBucket>/inputs/) and name it there",
                                  "INVALID_PAYLOAD")], "payload")
    return payload


def run_remote(
    payload: Path,
    *,
    name: str | None,
    format: str = "text",
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    execution_name: str | None = None,
    timeout: float = 1800,
) -> int:
    """``ceap run --target aws``: start an execution of a deployed workflow and report its end; returns the exit code.

    Express workflows run synchronously (StartSyncExecution); Standard ones are
    started and followed state by state until they end, or for ``timeout`` seconds
    (then the execution goes on, and the message says where to follow it).
    """
    from adapters.aws.deploy import run_workflow
    from adapters.aws.session import AwsClients

    if not name:
        emit_problems(InputError([Problem("/name", "--target aws needs -n NAME (the deployed workflow)")], "arguments"), format)
        return EXIT_BAD_INPUT

    def on_event(event: dict[str, Any]) -> None:
        if format == "text" and event["type"].endswith(("StateEntered", "StateExited")):
            details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails") or {}
            console.print(f"  {event['timestamp']:%H:%M:%S}  {event['type']:<22} {details.get('name', '')}")

    async def work() -> int:
        spec_name = _spec(name, "express", format).name
        body = _aws_payload(payload)
        async with AwsClients(_settings(region, profile, endpoint_url)) as aws:
            execution = await run_workflow(aws, spec_name, body, on_event=on_event, name=execution_name,
                                           timeout_seconds=timeout)
        if format == "json":
            print_json(envelope({"workflow": spec_name, "target": "aws", "executionArn": execution.arn,
                                 "executionId": execution.name, "status": execution.status, "output": execution.output,
                                 "error": execution.error, "cause": execution.cause},
                                ok=execution.status == "SUCCEEDED"))
        else:
            colour = "green" if execution.status == "SUCCEEDED" else "red"
            console.print(f"[bold {colour}]{execution.status}[/] {execution.arn}")
            if execution.status == "RUNNING":
                console.print(f"  still running after {timeout:.0f} s (--timeout); it goes on: follow it with "
                              f"`ceap status -n {spec_name}` or `aws stepfunctions describe-execution --execution-arn "
                              f"{execution.arn}`")
            if execution.error:
                console.print(f"  {escape(str(execution.error))}: {escape(str(execution.cause))}")
            stages = (execution.output or {}).get("stages") if isinstance(execution.output, dict) else None
            for stage, info in (stages or {}).items():
                console.print(f"  {stage}: {json.dumps(info.get('counts', {}))}")
        return EXIT_OK if execution.status == "SUCCEEDED" else EXIT_FAILED

    try:
        return _run(work, format)
    except typer.Exit as exit_:
        return exit_.exit_code


_AWS_MODULES = ("aiobotocore", "botocore", "aiohttp")


def _missing_aws_sdk(exc: ModuleNotFoundError) -> bool:
    return (exc.name or "").split(".")[0] in _AWS_MODULES


def needs_aws_sdk(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a missing AWS SDK into a message saying what to install (exit 2), not a traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ModuleNotFoundError as exc:
            if not _missing_aws_sdk(exc):
                raise
            fmt = kwargs.get("format")
            emit_problems(
                ValidationFailed([Problem("/", f"the AWS commands need the AWS SDK ({exc.name} is not installed): "
                                               "pip install 'ceap[aws]'", "MISSING_DEPENDENCY")], "environment"),
                getattr(fmt, "value", fmt) or "text",
            )
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return run


def register(app: typer.Typer) -> None:
    """Add the AWS commands to the root ``ceap`` command."""
    app.command("deploy")(needs_aws_sdk(deploy))
    app.command("destroy")(needs_aws_sdk(destroy))
    app.command("status")(needs_aws_sdk(status))
    # `ceap send` (local and AWS) is registered by .queue, which calls _aws_payload for -n NAME.
    app.command("synth")(needs_aws_sdk(synth))
