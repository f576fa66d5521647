"""``ceap send``, ``ceap dlq list|show|redrive`` and ``ceap pipe``: a workflow's queue, locally or on AWS.

Locally (``--local``) every workflow's queue and DLQ live in one SQLite file,
``{--store}/queues.sqlite3``, made on first use with the settings of the workflow
spec (the numbers the stack deploys: 600 s visibility, the DLQ after 3 receives,
kept 14 days). The file is safe for several processes. ``ceap send --local`` sends
through the SQS API of a running ``ceap serve`` whose ``--data`` is ``--store`` or
``--store``/serve (the defaults: ``.ceap/serve``), so the message is on that server's
queue and clock; with none running it writes into ``{--store}/queues.sqlite3``.
With ``-n NAME`` the same commands act on a deployed workflow's SQS queues.

Exit codes: 0 done, 1 nothing to act on (an unknown message id) or an AWS/queue
call failed, 2 a bad argument or payload (nothing was sent).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ceap_engine.pipeline import BUILTIN, WorkflowSpec
from ceap_engine.pipeline.names import dlq_name, queue_name
from ceap_engine.pipeline.spec import WORKFLOW_NAME
from ceap_engine.ports import OutgoingMessage, Queues, ReceivedMessage

from ..errors import CeapError, InputError, Problem, ValidationFailed
from ._options import ClockKind, OutputFormat, conflicting_options, read_payload
from ._output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    console,
    emit_error,
    emit_problems,
    ensure_writable_folder,
    envelope,
    error_envelope,
    print_json,
)

__all__ = ["dlq", "pipe", "register", "send"]


class Workflow(str, Enum):
    realtime = "realtime"
    batch = "batch"


LocalOption = Annotated[bool, typer.Option("--local", help="The queue in --store on this machine (default without -n)")]
NameOption = Annotated[str | None, typer.Option("-n", "--name", help="A deployed workflow (its SQS queues on AWS)")]
WorkflowOption = Annotated[Workflow | None, typer.Option("--workflow", help="With --local: realtime (EXPRESS, the default) or batch (STANDARD)")]
StoreOption = Annotated[Path | None, typer.Option("--store", help="With --local: where the embedded storage lives (default .ceap)")]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="text or json")]
RegionOption = Annotated[str | None, typer.Option("--region", help="With -n: the AWS region")]
ProfileOption = Annotated[str | None, typer.Option("--profile", help="With -n: the AWS profile")]
EndpointOption = Annotated[str | None, typer.Option("--endpoint-url", help="With -n: another endpoint (LocalStack, moto)")]


def _fail(problem: Problem, fmt: str) -> typer.Exit:
    emit_problems(InputError([problem], "argument"), fmt)
    return typer.Exit(EXIT_BAD_INPUT)


def _check_target(name: str | None, local: bool, given: dict[str, bool], fmt: str) -> None:
    """Options of the other target are refused, not ignored (exit 2): -n with --local, --workflow/--store
    with -n, --region/--profile/--endpoint-url without it."""
    if local and name:
        problems = [Problem("/name", "--local and -n NAME exclude each other: -n names a deployed workflow",
                            "CONFLICTING_OPTIONS")]
    elif name:
        problems = conflicting_options(given, ("--workflow", "--store"), "applies to the local queue only; -n NAME "
                                                                         "acts on the deployed workflow's queues (drop the option)")
    else:
        problems = conflicting_options(given, ("--region", "--profile", "--endpoint-url"),
                                       "applies to -n NAME only (a deployed workflow's queues); the local queue "
                                       "is in --store")
    if problems:
        emit_problems(InputError(problems, "arguments"), fmt)
        raise typer.Exit(EXIT_BAD_INPUT)


def _target(name: str | None, local: bool, workflow: Workflow | None, store: Path | None, region: str | None,
            profile: str | None, endpoint_url: str | None, fmt: str) -> tuple[WorkflowSpec, Path]:
    """The checked target of a queue command: the workflow's spec and the local store folder."""
    _check_target(name, local, {"--workflow": workflow is not None, "--store": store is not None,
                                "--region": region is not None, "--profile": profile is not None,
                                "--endpoint-url": endpoint_url is not None}, fmt)
    return _spec_of(name, workflow or Workflow.realtime, fmt), store if store is not None else Path(".ceap")


def _spec_of(name: str | None, workflow: Workflow, fmt: str) -> WorkflowSpec:
    if name is None:
        return BUILTIN[workflow.value]
    if not WORKFLOW_NAME.match(name):
        raise _fail(Problem("/name", f"workflow name {name!r} must be 1-30 characters: a lowercase letter, then "
                                     "lowercase letters, digits or '-'"), fmt)
    return BUILTIN["realtime"].model_copy(update={"name": name})


async def _open(stack: AsyncExitStack, spec: WorkflowSpec, *, aws: bool, store: Path, clock: Any = None,
                settings: Any = None) -> Queues:
    """The queues a command acts on: SQS of a deployed workflow, or the local SQLite file (queues made if needed)."""
    if aws:
        from adapters.aws.queue import SqsQueues
        from adapters.aws.session import AwsClients

        clients = await stack.enter_async_context(AwsClients(settings))
        return SqsQueues(await clients.client("sqs"))
    from adapters.local.queue import SQLiteQueues
    from ceap_engine.queueing.pipe import create_workflow_queues

    ensure_writable_folder(store, "--store")  # a file or an unwritable folder is exit 2, as for ceap run
    queues = stack.enter_context(SQLiteQueues(store / "queues.sqlite3", clock=clock))
    await create_workflow_queues(queues, spec)
    return queues


def _run(work: Callable[[], Awaitable[int]], fmt: str) -> int:
    try:
        return asyncio.run(work())
    except ValidationFailed as exc:
        emit_problems(exc, fmt)
        return EXIT_BAD_INPUT
    except CeapError as exc:
        emit_error(str(exc), fmt, getattr(exc, "code", type(exc).__name__))
        return EXIT_FAILED


def _aws_settings(region: str | None, profile: str | None, endpoint_url: str | None) -> Any:
    from .aws import _settings  # one check of --endpoint-url for every AWS command

    return _settings(region, profile, endpoint_url)


def _where(name: str | None, store: Path) -> str:
    return "AWS" if name else str((store / "queues.sqlite3").resolve())


# -- ceap send ------------------------------------------------------------------------------


def send(
    payload: Annotated[Path, typer.Argument(help="The execution input (JSON) to put on the workflow's queue")],
    name: NameOption = None,
    local: LocalOption = False,
    workflow: WorkflowOption = None,
    store: StoreOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    format: FormatOption = OutputFormat.text,
) -> None:
    """Put a payload on the workflow's queue; the Pipe (ceap serve locally, EventBridge on AWS) starts its execution.

    With --local it goes through the SQS API of a ceap serve running on --store or --store/serve
    (the defaults find `ceap serve`'s .ceap/serve), else into STORE/queues.sqlite3.
    """
    fmt = format.value
    spec, store = _target(name, local, workflow, store, region, profile, endpoint_url, fmt)

    async def work() -> int:
        if name:
            from .aws import _aws_payload

            body = _aws_payload(payload)
        else:
            from .payload import check_payload

            body = check_payload(spec, read_payload(payload), payload)
        server = None if name else _running_serve(store)
        if server is not None:
            message_id = await asyncio.to_thread(_send_to_serve, server, queue_name(spec), json.dumps(body))
            where = f"ceap serve at {server['url']}"
        else:
            async with AsyncExitStack() as stack:
                queues = await _open(stack, spec, aws=bool(name), store=store,
                                     settings=_aws_settings(region, profile, endpoint_url) if name else None)
                message_id = (await queues.send(queue_name(spec), OutgoingMessage(json.dumps(body)))).message_id
            where = _where(name, store)
        if fmt == "json":
            print_json(envelope({"workflow": spec.name, "queue": queue_name(spec), "messageId": message_id,
                                 "where": where}))
        else:
            console.print(f"sent to {queue_name(spec)} ({escape(where)}): message {message_id}")
            if server is not None:
                console.print("[dim]its Pipe starts the execution (`ceap serve --no-pipe` leaves it on the queue)[/]")
            elif not name:
                console.print("[dim]its execution starts when `ceap serve` or `ceap pipe --local` polls the queue[/]")
        return EXIT_OK

    raise typer.Exit(_run(work, fmt))


def _running_serve(store: Path) -> dict[str, Any] | None:
    """The ``ceap serve`` running on ``store`` (its ``--data``) or on ``store/serve`` (the default layout)."""
    from .serve import running_serve

    return running_serve(store) or running_serve(store / "serve")


def _send_to_serve(server: dict[str, Any], queue: str, body: str) -> str:
    """SendMessage through a running ``ceap serve``'s SQS API; returns the message id."""
    import urllib.error
    import urllib.request

    from .serve import DIRECT

    url = server["url"]
    request = urllib.request.Request(url, method="POST", data=json.dumps({
        "QueueUrl": f"{url}/{server.get('account', '123456789012')}/{queue}", "MessageBody": body}).encode(),
        headers={"X-Amz-Target": "AmazonSQS.SendMessage", "Content-Type": "application/x-amz-json-1.0"})
    try:
        with DIRECT.open(request, timeout=30) as response:
            return str(json.loads(response.read())["MessageId"])
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("message", exc.reason)
        raise CeapError(f"ceap serve at {url} refused the message for {queue}: {detail}") from None
    except OSError as exc:
        raise CeapError(f"ceap serve at {url} did not take the message for {queue}: {exc}") from None


# -- ceap dlq -------------------------------------------------------------------------------

dlq = typer.Typer(no_args_is_help=True, help="The dead-letter queue: messages whose executions failed 3 times.")


def _message_json(m: ReceivedMessage) -> dict[str, Any]:
    try:
        body: Any = json.loads(m.body)
    except ValueError:
        body = m.body
    return {"messageId": m.message_id, "receiveCount": m.receive_count, "sentAt": m.sent_at,
            "source": m.dead_letter_source, "body": body,
            "attributes": {k: a.string_value if a.binary_value is None else "(binary)" for k, a in m.attributes.items()}}


def _standard_note(spec: WorkflowSpec) -> str | None:
    if spec.type == "standard":
        return ("a Standard workflow's Pipe is FIRE_AND_FORGET: a failed execution never reaches the DLQ - "
                "look for FAILED executions in `ceap status` instead")
    return None


@dlq.command("list")
def dlq_list(
    name: NameOption = None,
    local: LocalOption = False,
    workflow: WorkflowOption = None,
    store: StoreOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many messages")] = 100,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    format: FormatOption = OutputFormat.text,
) -> None:
    """The messages in the workflow's DLQ, oldest first (on AWS each look counts as a receive of the DLQ)."""
    fmt = format.value
    spec, store = _target(name, local, workflow, store, region, profile, endpoint_url, fmt)

    async def work() -> int:
        async with AsyncExitStack() as stack:
            queues = await _open(stack, spec, aws=bool(name), store=store,
                                 settings=_aws_settings(region, profile, endpoint_url) if name else None)
            messages = await queues.peek(dlq_name(spec), limit)
        note = _standard_note(spec)
        if fmt == "json":
            print_json(envelope({"workflow": spec.name, "dlq": dlq_name(spec), "count": len(messages),
                                 "messages": [_message_json(m) for m in messages], "note": note}))
            return EXIT_OK
        console.print(f"{dlq_name(spec)}: {len(messages)} message(s)")
        for m in messages:
            preview = m.body if len(m.body) <= 80 else m.body[:77] + "..."
            console.print(f"  {m.message_id}  received {m.receive_count}x  {escape(preview)}")
        if note:
            console.print(f"[dim]{note}[/]")
        return EXIT_OK

    raise typer.Exit(_run(work, fmt))


@dlq.command("show")
def dlq_show(
    message_id: Annotated[str, typer.Argument(help="A message id from `ceap dlq list`")],
    name: NameOption = None,
    local: LocalOption = False,
    workflow: WorkflowOption = None,
    store: StoreOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    format: FormatOption = OutputFormat.text,
) -> None:
    """One DLQ message in full: its body, attributes, receive count and source queue."""
    fmt = format.value
    spec, store = _target(name, local, workflow, store, region, profile, endpoint_url, fmt)

    async def work() -> int:
        async with AsyncExitStack() as stack:
            queues = await _open(stack, spec, aws=bool(name), store=store,
                                 settings=_aws_settings(region, profile, endpoint_url) if name else None)
            found = [m for m in await queues.peek(dlq_name(spec), 10_000) if m.message_id == message_id]
        if not found:
            message = f"no message {message_id} in {dlq_name(spec)} (see `ceap dlq list`)"
            emit_error(message, fmt, "MessageNotFound")
            return EXIT_FAILED
        document = _message_json(found[0])
        if fmt == "json":
            print_json(envelope({"workflow": spec.name, "dlq": dlq_name(spec), **document}))
        else:
            console.print(f"message {message_id} in {dlq_name(spec)}")
            console.print(f"  received {document['receiveCount']} time(s), from {document['source'] or '?'}")
            for key, value in document["attributes"].items():
                console.print(f"  attribute {escape(key)} = {escape(str(value))}")
            console.print(escape(json.dumps(document["body"], indent=2)))
        return EXIT_OK

    raise typer.Exit(_run(work, fmt))


@dlq.command("redrive")
def dlq_redrive(
    name: NameOption = None,
    local: LocalOption = False,
    workflow: WorkflowOption = None,
    store: StoreOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    format: FormatOption = OutputFormat.text,
) -> None:
    """Send every DLQ message back to the workflow's queue (after a fix), so the Pipe runs it again."""
    fmt = format.value
    spec, store = _target(name, local, workflow, store, region, profile, endpoint_url, fmt)

    async def work() -> int:
        async with AsyncExitStack() as stack:
            queues = await _open(stack, spec, aws=bool(name), store=store,
                                 settings=_aws_settings(region, profile, endpoint_url) if name else None)
            moved = await queues.move_messages(dlq_name(spec), queue_name(spec))
        if fmt == "json":
            print_json(envelope({"workflow": spec.name, "dlq": dlq_name(spec), "queue": queue_name(spec),
                                 "moved": moved}))
        else:
            console.print(f"moved {moved} message(s) from {dlq_name(spec)} back to {queue_name(spec)}")
        return EXIT_OK

    raise typer.Exit(_run(work, fmt))


# -- ceap pipe ------------------------------------------------------------------------------


def pipe(
    local: LocalOption = True,
    workflow: Annotated[Workflow, typer.Option("--workflow", help="realtime (EXPRESS) or batch (STANDARD)")] = Workflow.realtime,
    store: Annotated[Path, typer.Option("--store", help="Where the embedded storage lives")] = Path(".ceap"),
    clock: Annotated[ClockKind, typer.Option("--clock", help="virtual: visibility timeouts and retry waits cost no "
                                                             "wall time")] = ClockKind.virtual,
    format: FormatOption = OutputFormat.text,
) -> None:
    """Run the workflow's Pipe once over its local queue: start executions until the queue is empty."""
    from ceap_engine.pipeline.local import LocalPipeline
    from ceap_engine.queueing.pipe import Delivery, LocalPipelineTarget, Pipe
    from ceap_engine.runtime.clock import RealClock, VirtualClock

    fmt = format.value
    spec = BUILTIN[workflow.value]
    deliveries: list[Delivery] = []

    def seen(delivery: Delivery) -> None:
        deliveries.append(delivery)
        if fmt == "text":
            mark = "[green]ok[/]" if delivery.status in ("SUCCEEDED", "STARTED") else "[red]failed[/]"
            console.print(f"  {mark} message {delivery.message_id} (receive {delivery.receive_count}): {delivery.status}")

    async def work() -> int:
        from .run import _glue_runners, _require_glue, open_store

        run_clock = VirtualClock() if clock is ClockKind.virtual else RealClock()
        if any(s.kind == "glue" for s in spec.stages):
            _require_glue(spec)
        async with AsyncExitStack() as stack:
            queues = await _open(stack, spec, aws=False, store=store, clock=run_clock)
            objects, candidates = open_store(store, run_clock)  # the checks of ceap run: exit 2, not a traceback
            stack.callback(candidates.close)
            runners = _glue_runners(spec, objects)
            pipeline = LocalPipeline(spec, objects=objects, candidates=candidates, clock=run_clock,
                                     runners=runners)
            target = LocalPipelineTarget(pipeline)
            the_pipe = Pipe(queues, queue_name(spec), target, clock=run_clock, spec_type=spec.type, observer=seen,
                            wait_seconds=1 if clock is ClockKind.real else 20)
            stats = await the_pipe.drain()
            waiting = (await queues.counts(dlq_name(spec))).visible
        failed = [r for r in target.results if r.status != "SUCCEEDED"]
        if fmt == "json":
            doc = {"workflow": spec.name, "queue": queue_name(spec), "received": stats.received,
                   "succeeded": stats.succeeded, "failed": stats.failed, "started": stats.started,
                   "pipeErrors": stats.internal_errors, "dlqMessages": waiting,
                   "executions": [{"executionId": r.name, "status": r.status, "error": r.error} for r in target.results]}
            if failed:
                print_json(error_envelope(
                    f"{len(failed)} of {len(target.results)} execution(s) did not succeed",
                    [{"path": f"/executions/{i}", "message": f"{r.name}: {r.error}", "code": r.status}
                     for i, r in enumerate(target.results) if r.status != "SUCCEEDED"], **doc))
            else:
                print_json(envelope(doc))
        else:
            console.print(f"{queue_name(spec)}: {stats.received} delivery(ies), {len(target.results)} execution(s), "
                          f"{len(failed)} not SUCCEEDED; {waiting} message(s) in {dlq_name(spec)}")
            note = _standard_note(spec)
            if note and failed:
                console.print(f"[dim]{note}[/]")
        return EXIT_OK if not failed else EXIT_FAILED

    raise typer.Exit(_run(work, fmt))


def register(app: typer.Typer) -> None:
    """Add ``send``, ``dlq`` and ``pipe`` to the root ``ceap`` command."""
    from .aws import needs_aws_sdk

    app.command("send")(needs_aws_sdk(send))
    app.add_typer(dlq, name="dlq")
    app.command("pipe")(pipe)
