"""``ceap serve``: the Step Functions and SQS APIs on this machine (the composition root of the endpoint).

Wires the embedded backends (:mod:`adapters.local`: the SQLite execution journal, files and
SQLite for ceap's own workflows, the SQLite queues) to :mod:`ceap_engine.serve` and
:mod:`ceap_engine.queueing`, runs each workflow's Pipe, and serves both APIs on uvicorn.
While it runs, ``DATA/serve.json`` says where (``ceap send --local`` finds it there).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import os
import signal
import socket
import urllib.request
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import CeapError, InputError, Problem, ValidationFailed
from ._output import EXIT_BAD_INPUT, emit_problems, err_console

READY = "ceap serve: listening on"
DEFAULT_DATA = Path(".ceap/serve")
SERVE_FILE = "serve.json"
QUEUES_FILE = "queues.sqlite3"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""HTTP to a local ``ceap serve``, never through a proxy from the environment."""


class ServeClock(str, Enum):
    real = "real"
    virtual = "virtual"


def _handler(spec: str) -> tuple[str, Any]:
    name, sep, target = spec.partition("=")
    module, colon, attr = target.partition(":")
    if not sep or not colon or not name or not module or not attr:
        raise InputError([Problem("/--function", f"--function {spec!r}: use NAME=module:attr (e.g. Hello=app.handlers:hello)")],
                         "arguments")
    try:
        handler = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise InputError([Problem("/--function", f"--function {spec!r}: cannot load {target}: {exc}")], "arguments") from None
    if not callable(handler):
        raise InputError([Problem("/--function", f"--function {spec!r}: {target} is not callable")], "arguments")
    return name, handler


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default; 0.0.0.0 exposes it)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port, printed in the readiness line)")] = 8083,
    data: Annotated[Path | None, typer.Option("--data", help="Where state machines, executions and their history live "
                                                         "(SQLite) and ceap's workflows keep their data; default .ceap/serve")] = None,
    function: Annotated[list[str] | None, typer.Option("--function", help="A local Lambda handler: NAME=module:attr (repeatable)")] = None,
    lambda_endpoint: Annotated[str | None, typer.Option("--lambda-endpoint", help="Lambda Invoke API for functions without a "
                                                        "local handler (MiniStack, sam local start-lambda, AWS)")] = None,
    aws_endpoint_url: Annotated[str | None, typer.Option("--aws-endpoint-url", help="Where aws-sdk:* and optimized integrations "
                                                         "(sqs, sns, dynamodb, events, glue .sync) and Distributed Map ItemReader/ResultWriter go: an emulator URL, or 'aws' "
                                                         "for AWS itself (usual credential chain); default: not served")] = None,
    mock_config: Annotated[Path | None, typer.Option("--mock-config", envvar="SFN_MOCK_CONFIG",
                                                     help="Step Functions Local MockConfigFile: start '<arn>#<TestCase>' to use a test case")] = None,
    clock: Annotated[ServeClock, typer.Option("--clock", help="real, or virtual: skip time while every execution waits on a timer")] = ServeClock.real,
    wait_time_scale: Annotated[float, typer.Option("--wait-time-scale", help="Scale Wait, retry and timeout timers (0.01: 100x faster)")] = 1.0,
    keep_express_history: Annotated[bool, typer.Option("--keep-express-history", help="Keep Express executions visible to "
                                                       "DescribeExecution/ListExecutions/GetExecutionHistory (AWS does not)")] = False,
    workflows: Annotated[bool, typer.Option("--workflows/--no-workflows", help="Register ceap's realtime and batch workflows")] = True,
    pipe: Annotated[bool, typer.Option("--pipe/--no-pipe", help="Run each workflow's Pipe: its queue (DATA/queues.sqlite3) "
                                                            "starts its executions, as the deployed EventBridge Pipe does")] = True,
    region: Annotated[str, typer.Option("--region", help="Region in the ARNs")] = "us-east-1",
    account: Annotated[str, typer.Option("--account", help="Account id in the ARNs")] = "123456789012",
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level")] = "warning",
) -> None:
    """Serve the AWS Step Functions and SQS APIs (AWS JSON) for boto3, the AWS CLI and SDK tests.

    Point a client at it with --endpoint-url http://127.0.0.1:8083. StartSyncExecution needs the
    client's 'sync-' host prefix off (docs/serve.md). Each workflow's queue starts its executions
    (ceap send --local, aws sqs send-message; docs/queue.md). Exit codes: 0 stopped, 2 bad arguments.
    """
    try:
        import botocore  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        err_console.print(f"[bold red]error:[/] ceap serve needs uvicorn and botocore: pip install 'ceap[serve]' ({exc})")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:
        handlers = [_handler(spec) for spec in function or []]
        mocks = None
        if mock_config is not None:
            from ..runtime.mocks import MockConfig

            mocks = MockConfig.load(mock_config)
        if not wait_time_scale >= 0:
            raise InputError([Problem("/--wait-time-scale", f"must be >= 0, got {wait_time_scale}")], "arguments")
        if not 0 <= port <= 65535:
            raise InputError([Problem("/--port", f"must be 0-65535, got {port}")], "arguments")
        for option, url in (("--lambda-endpoint", lambda_endpoint), ("--aws-endpoint-url", aws_endpoint_url)):
            if url is not None and url != "aws" and not url.startswith(("http://", "https://")):
                raise InputError([Problem(f"/{option}", f"{option} {url!r}: give an http(s):// URL"
                                          + (" or 'aws'" if option == "--aws-endpoint-url" else ""))], "arguments")
    except ValidationFailed as exc:
        emit_problems(exc, "text")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    remote = {"lambda_endpoint": lambda_endpoint, "aws_endpoint_url": aws_endpoint_url}
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(host, port, data or DEFAULT_DATA, handlers, mocks, clock, wait_time_scale,
                              keep_express_history, workflows, pipe, region, account, log_level, remote))
    except CeapError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _loop_factory() -> Any:
    """uvloop when it is installed (the serve extra has it): the event loop is most of a request's cost."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(host: str, port: int, data: Path, handlers: list[tuple[str, Any]], mocks: Any, clock_kind: ServeClock,
                 scale: float, keep_express: bool, workflows: bool, pipe: bool, region: str, account: str, log_level: str,
                 remote: dict[str, str | None]) -> None:
    import uvicorn

    from adapters.local import SQLiteExecutionJournal
    from adapters.local.queue import SQLiteQueues

    from ..asl.interpreter import Engine
    from ..queueing.api import SqsApi, query_protocol_refusal, response_headers
    from ..runtime.clock import RealClock, VirtualClock
    from ..runtime.tasks import LambdaFunctions
    from ..serve.callbacks import CallbackRunners, TaskTokens
    from ..serve.clocks import ScaledClock
    from ..serve.endpoint import Endpoint
    from ..serve.integrations import AwsApiRunner, LambdaRouter
    from ..serve.pipes import ServedPipes
    from ..serve.service import StepFunctionsService
    from ._http import one_write_protocol

    base = VirtualClock() if clock_kind is ServeClock.virtual else RealClock()
    clock = ScaledClock(base, scale) if scale != 1.0 else base
    journal = SQLiteExecutionJournal(data / "journal.sqlite3")
    tokens = TaskTokens()
    aws_url = remote["aws_endpoint_url"]
    fallback = AwsApiRunner(endpoint_url=None if aws_url == "aws" else aws_url, region=region) if aws_url else None
    runners = CallbackRunners(tokens, fallback)
    functions = LambdaFunctions(region=region, account=account)
    for name, handler in handlers:
        functions.register(name, handler)
    if remote["lambda_endpoint"]:
        functions = LambdaRouter(functions, endpoint_url=remote["lambda_endpoint"], region=region)
    runners.register_lambda(functions)
    aws_clients = contextlib.AsyncExitStack()
    objects = await _s3_objects(aws_clients, aws_url, region) if aws_url else None
    engine = Engine(clock=clock, runners=runners, region=region, account=account, object_store=objects)
    service = StepFunctionsService(journal, engine, mock_config=mocks, keep_express_history=keep_express,
                                   region=region, account=account, wait_scale=scale, tokens=tokens)
    # The queues live on the unscaled clock: --wait-time-scale scales the engine's timers, not SQS's.
    queues = SQLiteQueues(data / QUEUES_FILE, clock=base)
    closers: list[Any] = [journal, queues]
    pipes = ServedPipes(queues, service, clock=base, region=region, account=account)
    if workflows:
        closers += await _register_workflows(service, pipes, data, clock, region, account)
    resumed = service.resume()
    service.runs.start_flusher()
    sqs = SqsApi(queues, region=region, account=account)
    endpoint = Endpoint()
    endpoint.mount("AWSStepFunctions", service.handle)
    endpoint.mount("AmazonSQS", sqs.handle, headers=response_headers)
    endpoint.refuse_query(query_protocol_refusal)
    # No proxy-header rewriting (nothing sits in front of a local endpoint) and no "server: uvicorn"
    # header (AWS sends none): both cost time on every request.
    config = uvicorn.Config(endpoint, host=host, port=port, log_level=log_level, lifespan="off", access_log=False,
                            http=one_write_protocol(), proxy_headers=False, server_header=False,
                            timeout_graceful_shutdown=5)  # a 60 s GetActivityTask poll must not hold a Ctrl-C
    server = uvicorn.Server(config)
    # uvicorn's own handlers would re-raise Ctrl-C after shutdown; ours just stop the server.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    # Bind here, so a port in use is a clear error (exit 2), not uvicorn's exit from inside the loop.
    try:
        listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        # Accepted connections inherit TCP_NODELAY from the listener. asyncio sets it only on sockets
        # whose proto is IPPROTO_TCP, which create_server's is not: without it every response waited
        # ~40 ms for the client's delayed ACK (Nagle), capping a sequential client at ~23 calls a second.
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        await service.runs.close()
        for closer in closers:
            closer.close()
        await aws_clients.aclose()
        raise CeapError(f"ceap serve cannot listen on {host}:{port}: {exc.strerror or exc}; "
                        "pick another --port (0: any free one)") from None
    serving = asyncio.ensure_future(server.serve(sockets=[listener]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if serving.done():
        serving.result()
        raise CeapError(f"ceap serve could not start on {host}:{port}")
    bound = listener.getsockname()
    url = f"http://{bound[0]}:{bound[1]}" if ":" not in bound[0] else f"http://[{bound[0]}]:{bound[1]}"
    # Queue URLs name a host clients can reach: loopback when the server listens on every address.
    sqs.endpoint = url.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]")
    advertised = _advertise(data, sqs.endpoint, region, account)
    if pipe:
        pipes.start()
    running = ", ".join(p.queue for p in pipes.pipes) if pipe else "off"
    # What startup loaded (the API model botocore ships, the compiled workflows) lives as long as the
    # server: out of the collector's sight, so its full collections stop walking it on every request burst.
    gc.collect()
    gc.freeze()
    print(f"{READY} {url} (data: {data}; resumed {len(resumed)} execution(s); pipes: {running or 'none'})", flush=True)
    try:
        await serving
    finally:
        await pipes.stop()
        await service.runs.close()
        for closer in closers:
            closer.close()
        await aws_clients.aclose()
        _withdraw(advertised)


async def _s3_objects(stack: contextlib.AsyncExitStack, aws_url: str, region: str) -> Any:
    """S3 at ``--aws-endpoint-url`` (or AWS) as the object store of Distributed Map ItemReader/ResultWriter."""
    from adapters.aws.objects import S3ObjectStore
    from adapters.aws.session import AwsClients, AwsSettings

    clients = await stack.enter_async_context(
        AwsClients(AwsSettings(region=region, endpoint_url=None if aws_url == "aws" else aws_url)))
    return S3ObjectStore(await clients.client("s3"))


async def _register_workflows(service: Any, pipes: Any, data: Path, clock: Any, region: str, account: str) -> list[Any]:
    """ceap's realtime and batch workflows, on the embedded stores under ``data`` (batch only with Glue), with their queues."""
    from adapters.local import FileObjectStore, SQLiteCandidateStore

    from ..pipeline.builder import substitute
    from ..pipeline.builtin import BUILTIN
    from ..pipeline.local import LocalPipeline
    from ..pipeline.names import glue_job_name, state_machine_name

    objects = FileObjectStore(data / "store")
    candidates = SQLiteCandidateStore(data / "store" / "candidates.sqlite3", clock=clock)
    for spec in BUILTIN.values():
        runners = {}
        if any(s.kind == "glue" for s in spec.stages):
            try:
                from adapters.local.glue import LocalGlueRunner, require_glue

                require_glue(spec.name)
            except CeapError as exc:
                err_console.print(f"[yellow]warning:[/] {state_machine_name(spec)} not registered: {exc}")
                continue
            runners = {"glue:startJobRun": LocalGlueRunner(objects, {glue_job_name(spec, s): s.script
                                                                     for s in spec.stages if s.kind == "glue"})}
        pipeline = LocalPipeline(spec, objects=objects, candidates=candidates, clock=clock, runners=runners,
                                 region=region, account=account)
        definition = json.dumps(substitute(pipeline.definition, pipeline.substitutions), indent=2)
        arn = service.register(state_machine_name(spec), definition, pipeline.execution_type, pipeline.engine,
                               f"arn:aws:iam::{account}:role/ceap-{spec.name}-local")
        await pipes.add(spec, arn)
    return [candidates]


def _advertise(data: Path, url: str, region: str, account: str) -> Path:
    """Write ``DATA/serve.json`` (where this server listens) for ``ceap send --local`` to find."""
    path = data / SERVE_FILE
    path.write_text(json.dumps({"url": url, "pid": os.getpid(), "region": region, "account": account}))
    return path


def _withdraw(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():  # not a newer server's
            path.unlink()


def running_serve(data: Path) -> dict[str, Any] | None:
    """What ``DATA/serve.json`` says of the ``ceap serve`` running on ``data`` (url, account...), if one answers there."""
    try:
        found = json.loads((data / SERVE_FILE).read_text())
        with DIRECT.open(found["url"], timeout=2) as response:  # the endpoint's GET health check
            apis = json.loads(response.read()).get("apis", [])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no file, or a server killed without removing it
    return found if "AmazonSQS" in apis else None
