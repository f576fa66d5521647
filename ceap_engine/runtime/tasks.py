"""Task runners: what runs when a Task state's ``Resource`` is invoked.

A :class:`TaskRunners` registry maps a resource to an async runner::

    runners = TaskRunners()
    functions = LambdaFunctions()
    functions.register("score", handler)              # handler(event, context)
    runners.register_lambda(functions)                # lambda:invoke and plain function ARNs

    async def glue(resource, parameters, context): ...
    runners.register("glue:startJobRun", glue)        # any runner for a service action

Runners raise :class:`TaskFailed` (an error name and a cause) when the work
fails; the interpreter applies Retry and Catch. A runner that does work in a
thread or a subprocess keeps its execution busy, so virtual time never skips
past it.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import re
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ceap_engine.errors import StatesError
from ceap_engine.ports import Clock, ResourceInfo, TaskContext, TaskRunner
from ceap_engine.runtime.threads import run_in_thread

__all__ = [
    "FakeLambdaContext",
    "LambdaFunctions",
    "ResourceInfo",
    "TaskContext",
    "TaskFailed",
    "TaskRunner",
    "TaskRunners",
    "UnknownResource",
    "parse_resource",
]


class TaskFailed(StatesError):
    """A task ended in failure: ``error`` is matched by Retry/Catch ``ErrorEquals``."""


class UnknownResource(LookupError):
    """No runner is registered for a Task resource."""


_SERVICE_RE = re.compile(r"^arn:[a-z-]+:states:[^:]*:[^:]*:([a-z0-9-]+(?::[a-z0-9-]+)?):([A-Za-z0-9_]+)(?:\.(sync(?::2)?|waitForTaskToken))?$")
_LAMBDA_RE = re.compile(r"^arn:([a-z-]+):lambda:([^:]*):([^:]*):function:([^:]+)(?::([^:]+))?$")
_ACTIVITY_RE = re.compile(r"^arn:[a-z-]+:states:[^:]*:[^:]*:activity:.+$")


def parse_resource(arn: str) -> ResourceInfo | None:
    """Parse a Task ``Resource``; ``None`` if it is not an ARN Step Functions knows.

    >>> parse_resource("arn:aws:states:::lambda:invoke").key
    'lambda:invoke'
    >>> parse_resource("arn:aws:states:::glue:startJobRun.sync").pattern
    'sync'
    """
    if _ACTIVITY_RE.match(arn):  # first: an activity named like an action ("work") matches _SERVICE_RE too
        return ResourceInfo(arn, "activity", "activity", "activity", arn)
    m = _SERVICE_RE.match(arn)
    if m:
        service, action, pattern = m.group(1), m.group(2), m.group(3) or ""
        resource = action + (f".{pattern}" if pattern else "")
        return ResourceInfo(arn, "service", f"{service}:{action}", service, resource, pattern)
    m = _LAMBDA_RE.match(arn)
    if m:
        return ResourceInfo(arn, "lambda", "lambda:function", "lambda", arn, "", m.group(4))
    return None


class TaskRunners:
    """Resource -> runner. Unknown resources are found before a run starts."""

    def __init__(self) -> None:
        self._runners: dict[str, TaskRunner] = {}
        #: Grows with every registration (engines re-check resources when it changes).
        self.version = 0

    def register(self, key: str, runner: TaskRunner | Callable[..., Awaitable[Any]]) -> None:
        """Register a runner for ``service:action`` (``glue:startJobRun``),
        ``lambda:function`` (plain Lambda ARNs) or ``activity``."""
        self._runners[key] = runner  # type: ignore[assignment]
        self.version += 1

    def register_lambda(self, functions: LambdaFunctions) -> LambdaFunctions:
        """Serve ``lambda:invoke`` and plain function ARNs from ``functions``."""
        self.register("lambda:invoke", functions.invoke_integration)
        self.register("lambda:function", functions.invoke_function)
        return functions

    def runner_for(self, info: ResourceInfo) -> TaskRunner:
        try:
            return self._runners[info.key]
        except KeyError:
            raise UnknownResource(info.arn) from None

    def runner_for_key(self, key: str) -> TaskRunner:
        """The runner registered under ``key`` (``lambda:invoke``, ``glue:startJobRun``...)."""
        try:
            return self._runners[key]
        except KeyError:
            raise UnknownResource(key) from None

    def supports(self, info: ResourceInfo) -> bool:
        return info.key in self._runners

    @property
    def keys(self) -> list[str]:
        return sorted(self._runners)


# -- Lambda -------------------------------------------------------------------


class FakeLambdaContext:
    """The context object a Lambda handler receives, for local invocations."""

    def __init__(
        self,
        function_name: str,
        *,
        region: str = "us-east-1",
        account: str = "123456789012",
        memory_limit_in_mb: int = 128,
        timeout_seconds: float = 3.0,
        clock: Clock | None = None,
        request_id: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None
        self._clock = clock
        self._deadline = (clock.time() if clock else 0.0) + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        if self._clock is None:
            return 0
        return max(0, int((self._deadline - self._clock.time()) * 1000))


Handler = Callable[[Any, Any], Any]


@dataclass
class LambdaFunction:
    name: str
    handler: Handler
    timeout_seconds: float = 3.0
    memory_mb: int = 128
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_async = inspect.iscoroutinefunction(self.handler)


def _function_name(name_or_arn: str) -> str:
    """``f``, ``f:alias``, ``arn:...:function:f[:q]``, ``123:function:f`` -> ``f``."""
    if name_or_arn.startswith("arn:"):
        parts = name_or_arn.split(":")
        return parts[6] if len(parts) > 6 else name_or_arn
    if ":function:" in name_or_arn:
        return name_or_arn.split(":function:", 1)[1].split(":", 1)[0]
    return name_or_arn.split(":", 1)[0]


#: ``_function_name`` of the names and ARNs seen, for the call on every invocation.
_FUNCTION_NAMES: dict[str, str] = {}


def random_uuid(rng: Any) -> str:
    """A version-4 UUID from ``rng``, the same text as ``str(uuid.UUID(int=rng.getrandbits(128), version=4))``
    at a third of the cost (every Lambda call draws one).

    >>> import random
    >>> random_uuid(random.Random(3)) == str(uuid.UUID(int=random.Random(3).getrandbits(128), version=4))
    True
    """
    bits = (rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
    h = "%032x" % bits
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)


def _json_copy(value: Any) -> Any:
    """``json.loads(json.dumps(value))`` for plain JSON data, without the text in between."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                return json.loads(json.dumps(value))  # JSON's own key conversion
            out[key] = _json_copy(item)
        return out
    if kind is list:
        return [_json_copy(item) for item in value]
    return json.loads(json.dumps(value))  # tuples, subclasses, the unserialisable: as json does


def _event_from_payload(payload: Any) -> Any:
    """What Lambda hands the handler: a string Payload is the JSON text itself, none is ``{}``."""
    if payload is None:
        return {}
    if isinstance(payload, str):
        try:
            return json.loads(payload)
        except json.JSONDecodeError:
            raise TaskFailed("Lambda.InvalidRequestContentException",
                             "Could not parse request body into json: the Payload string is not JSON text") from None
    try:
        return _json_copy(payload)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TaskFailed("Lambda.InvalidRequestContentException", f"Could not serialise the Payload: {exc}") from None


def _result_from_return(value: Any) -> Any:
    """What Step Functions reads back: the handler's return value as JSON (bytes are sent as they are)."""
    try:
        if isinstance(value, (bytes, bytearray)):
            text = bytes(value).decode("utf-8")
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return text  # Lambda passes a non-JSON body on as it is
        return _json_copy(value)
    except (TypeError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TaskFailed("Runtime.MarshalError", f"Unable to marshal response: {exc}") from None


def _handler_frames(tb: Any) -> list[str]:
    """The handler's own stack frames, as the Lambda runtime reports them (not ours)."""
    import os

    engine_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # all of ceap_engine
    stdlib_dir = os.path.dirname(os.__file__)
    frames = [
        f for f in traceback.extract_tb(tb)
        if not f.filename.startswith(engine_dir) and not f.filename.startswith(stdlib_dir)
    ]
    return traceback.format_list(frames)


@dataclass
class LambdaFunctions:
    """Lambda functions that run in this process: name -> ``handler(event, context)``.

    Sync handlers run in a worker thread (their execution stays busy, so the
    virtual clock waits for them); async handlers are awaited. Payloads are
    copied through JSON both ways, as Lambda does.
    """

    region: str = "us-east-1"
    account: str = "123456789012"
    functions: dict[str, LambdaFunction] = field(default_factory=dict)

    def register(self, name: str, handler: Handler, *, timeout_seconds: float = 3.0, memory_mb: int = 128) -> None:
        self.functions[_function_name(name)] = LambdaFunction(_function_name(name), handler, timeout_seconds, memory_mb)

    def __contains__(self, name: str) -> bool:
        return _function_name(name) in self.functions

    def arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"

    async def call(self, name_or_arn: str, payload: Any, context: TaskContext, *, payload_is_json_text: bool = True) -> Any:
        """Invoke a function; its exceptions become :class:`TaskFailed` as Lambda reports them.

        ``payload_is_json_text``: a string payload is the request body itself
        (``lambda:invoke``'s ``Payload``); otherwise it is a JSON string value.
        """
        name = _FUNCTION_NAMES.get(name_or_arn)
        if name is None:
            name = _function_name(name_or_arn)
            if len(_FUNCTION_NAMES) < 4096:  # names and ARNs come from definitions (and inputs): bounded
                _FUNCTION_NAMES[name_or_arn] = name
        function = self.functions.get(name)
        request_id = random_uuid(context.rng)
        if function is None:
            raise TaskFailed(
                "Lambda.ResourceNotFoundException",
                f"Function not found: arn:aws:lambda:{self.region}:{self.account}:function:{name}:$LATEST "
                f"(Service: AWSLambda; Status Code: 404; Error Code: ResourceNotFoundException; "
                f"Request ID: {request_id}; Proxy: null)",
            )
        if payload_is_json_text:
            event = _event_from_payload(payload)
        elif payload is None or isinstance(payload, str):
            event = payload  # a JSON string or null arrives as itself
        else:
            event = _event_from_payload(payload)
        lambda_context = FakeLambdaContext(
            name,
            region=self.region,
            account=self.account,
            memory_limit_in_mb=function.memory_mb,
            timeout_seconds=function.timeout_seconds,
            clock=context.clock,
            request_id=request_id,
        )
        try:
            if function.is_async:
                result = await function.handler(event, lambda_context)
            else:
                result = await run_in_thread(function.handler, event, lambda_context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every handler error is reported as Lambda does
            error_type = type(exc).__name__
            stack = _handler_frames(exc.__traceback__)
            cause = json.dumps(
                {"errorMessage": str(exc), "errorType": error_type, "requestId": request_id, "stackTrace": stack}
            )
            raise TaskFailed(error_type, cause) from exc
        return _result_from_return(result)

    async def invoke_integration(self, resource: ResourceInfo, parameters: Any, context: TaskContext) -> Any:
        """``arn:aws:states:::lambda:invoke``: result shaped like AWS's Invoke response."""
        if not isinstance(parameters, Mapping) or not isinstance(parameters.get("FunctionName"), str):
            raise TaskFailed(
                "States.Runtime",
                "The lambda:invoke integration needs Parameters with a string 'FunctionName' (and an optional 'Payload')",
            )
        try:
            payload = await self.call(parameters["FunctionName"], parameters.get("Payload"), context)
        except TaskFailed as failure:
            # The integration re-serialises the function's error document compactly.
            raise TaskFailed(failure.error, _compact(failure.cause)) from failure
        body = json.dumps(payload)  # the Python runtime's own serialisation sets Content-Length
        request_id = random_uuid(context.rng)
        date = context.clock.now().strftime("%a, %d %b %Y %H:%M:%S GMT")
        trace = f"root=1-{int(context.clock.time()):08x}-{context.rng.getrandbits(96):024x};sampled=0"
        response: dict[str, Any] = {"ExecutedVersion": "$LATEST"}
        log_headers: dict[str, str] = {}
        if parameters.get("LogType") == "Tail":
            log = f"START RequestId: {request_id} Version: $LATEST\nEND RequestId: {request_id}\n"
            response["LogResult"] = log_headers["X-Amz-Log-Result"] = base64.b64encode(log.encode()).decode()
        result = response | {
            "Payload": payload,
            "SdkHttpMetadata": {
                "AllHttpHeaders": {
                    "X-Amz-Executed-Version": ["$LATEST"],
                    "x-amzn-Remapped-Content-Length": ["0"],
                    "Connection": ["keep-alive"],
                    "x-amzn-RequestId": [request_id],
                    "Content-Length": [str(len(body.encode()))],
                    "Date": [date],
                    "X-Amzn-Trace-Id": [trace],
                    "Content-Type": ["application/json"],
                },
                "HttpHeaders": {
                    "Connection": "keep-alive",
                    "Content-Length": str(len(body.encode())),
                    "Content-Type": "application/json",
                    "X-Amz-Executed-Version": "$LATEST",
                    "x-amzn-Remapped-Content-Length": "0",
                    "x-amzn-RequestId": request_id,
                    "Date": date,
                    "X-Amzn-Trace-Id": trace,
                },
                "HttpStatusCode": 200,
            },
            "SdkResponseMetadata": {"RequestId": request_id},
            "StatusCode": 200,
        }
        for header, value in log_headers.items():
            result["SdkHttpMetadata"]["AllHttpHeaders"][header] = [value]
            result["SdkHttpMetadata"]["HttpHeaders"][header] = value
        return result

    async def invoke_function(self, resource: ResourceInfo, parameters: Any, context: TaskContext) -> Any:
        """A plain function ARN as Resource: the handler's return value is the result."""
        return await self.call(resource.function_name or resource.arn, parameters, context, payload_is_json_text=False)


def _compact(text: str | None) -> str | None:
    if not text:
        return text
    try:
        return json.dumps(json.loads(text), separators=(",", ":"))
    except (json.JSONDecodeError, ValueError):
        return text
