"""Tasks that reach real things over the network: a Lambda Invoke endpoint, and AWS APIs.

- :class:`LambdaRouter` serves ``lambda:invoke`` and plain function ARNs: a local handler
  (``--function``) when one has the name, else the Lambda Invoke API at
  ``--lambda-endpoint`` (MiniStack, ``sam local start-lambda``, AWS).
- :class:`AwsApiRunner` serves ``aws-sdk:<service>:<action>`` and the optimized
  integrations (``sqs:sendMessage``, ``sns:publish``, ``dynamodb:putItem``,
  ``events:putEvents``, ``glue:startJobRun`` with ``.sync`` ...) through botocore, against
  ``--aws-endpoint-url`` (moto, MiniStack, LocalStack) or AWS with the usual credential chain.

botocore calls block, so they run in a worker thread; the execution stays busy meanwhile, so
a virtual clock never skips past one. Service errors become Task errors named as Step
Functions names them (``SQS.QueueDoesNotExistException``) so Retry/Catch match.

Example::

    runners.register_lambda(LambdaRouter(functions, endpoint_url="http://127.0.0.1:3001"))
    AwsApiRunner(endpoint_url="http://127.0.0.1:5000").install(runners)
"""

from __future__ import annotations

import asyncio
import base64
import datetime as _dt
import json
import threading
from collections.abc import Mapping
from typing import Any

from ceap_engine.ports import ResourceInfo, TaskContext, TaskRunner
from ceap_engine.runtime.tasks import LambdaFunctions, TaskFailed

__all__ = ["OPTIMIZED", "AwsApiRunner", "LambdaRouter"]

#: Optimized integrations served by the same botocore call as their aws-sdk twin.
OPTIMIZED = {
    "sqs": ("sendMessage",), "sns": ("publish",), "events": ("putEvents",), "glue": ("startJobRun",),
    "dynamodb": ("getItem", "putItem", "updateItem", "deleteItem"), "states": ("startExecution",),
    "ecs": ("runTask",), "batch": ("submitJob",), "athena": ("startQueryExecution",),
}
_GLUE_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED", "TIMEOUT", "ERROR", "EXPIRED"}
_BOTOCORE_NAMES = {"sfn": "stepfunctions", "states": "stepfunctions", "eventbridge": "events"}


def _jsonable(value: Any) -> Any:
    """A botocore response as Step Functions hands it on: JSON values, no ResponseMetadata."""
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    if hasattr(value, "read"):  # a streaming body (S3 GetObject, Lambda Invoke)
        return _jsonable(value.read())
    return value


class _Clients:
    """botocore clients by service, made once (client creation costs ~50 ms)."""

    def __init__(self, endpoint_url: str | None, region: str) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, service: str) -> Any:
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                import botocore.session
                from botocore.config import Config

                session = botocore.session.get_session()
                kwargs: dict[str, Any] = {"region_name": self.region, "config": Config(retries={"max_attempts": 2})}
                if self.endpoint_url:
                    kwargs["endpoint_url"] = self.endpoint_url
                    if session.get_credentials() is None:  # local emulators take any key
                        kwargs.update(aws_access_key_id="test", aws_secret_access_key="test")
                client = self._clients[service] = session.create_client(service, **kwargs)
            return client


def _call(client: Any, operation: str, parameters: Mapping[str, Any]) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return client._make_api_call(operation, dict(parameters))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        service = client.meta.service_model.service_id.replace(" ", "")
        name = code if code.endswith("Exception") else f"{code}Exception"
        raise TaskFailed(f"{service}.{name}", str(exc)) from None
    except (BotoCoreError, ValueError, TypeError) as exc:  # bad parameters, no endpoint, no credentials
        raise TaskFailed("States.TaskFailed", f"{type(exc).__name__}: {exc}") from None


class LambdaRouter(LambdaFunctions):
    """Local handlers first, then the Lambda Invoke API at ``endpoint_url``."""

    def __init__(self, local: LambdaFunctions, *, endpoint_url: str | None, region: str = "us-east-1") -> None:
        super().__init__(region=local.region, account=local.account, functions=local.functions)
        self.endpoint_url = endpoint_url
        self._clients = _Clients(endpoint_url, region)

    async def call(self, name_or_arn: str, payload: Any, context: TaskContext, *, payload_is_json_text: bool = True) -> Any:
        if self.endpoint_url is None or name_or_arn in self:
            return await super().call(name_or_arn, payload, context, payload_is_json_text=payload_is_json_text)
        body = payload if (payload_is_json_text and isinstance(payload, str)) else json.dumps(payload)
        client = self._clients.get("lambda")
        response = await asyncio.to_thread(_call, client, "Invoke", {"FunctionName": name_or_arn, "Payload": body.encode()})
        text = response["Payload"].read().decode("utf-8") if hasattr(response.get("Payload"), "read") else ""
        if response.get("FunctionError"):
            try:
                error = json.loads(text).get("errorType", "Lambda.Unknown")
            except (json.JSONDecodeError, AttributeError):
                error = "Lambda.Unknown"
            raise TaskFailed(error, text)
        return json.loads(text) if text else None


class AwsApiRunner:
    """``aws-sdk:*`` and the optimized integrations, through botocore."""

    def __init__(self, *, endpoint_url: str | None, region: str = "us-east-1", glue_poll_seconds: float = 5.0) -> None:
        self._clients = _Clients(endpoint_url, region)
        self.glue_poll_seconds = glue_poll_seconds

    def serves(self, info: ResourceInfo) -> bool:
        if info.kind != "service":
            return False
        if info.resource_type.startswith("aws-sdk:"):
            return True
        action = info.key.split(":", 1)[1]
        return action in OPTIMIZED.get(info.resource_type, ())

    async def __call__(self, resource: ResourceInfo, parameters: Any, context: TaskContext) -> Any:
        service, action = resource.key.rsplit(":", 1)
        service = service.removeprefix("aws-sdk:")
        params = dict(parameters or {})
        if resource.resource_type == "sqs" and not isinstance(params.get("MessageBody", ""), str):
            params["MessageBody"] = json.dumps(params["MessageBody"], separators=(",", ":"))
        if resource.resource_type == "sns" and not isinstance(params.get("Message", ""), str):
            params["Message"] = json.dumps(params["Message"], separators=(",", ":"))
        client = self._clients.get(_BOTOCORE_NAMES.get(service, service))
        operation = action[0].upper() + action[1:]
        result = _jsonable(await asyncio.to_thread(_call, client, operation, params))
        if resource.resource_type == "glue" and action == "startJobRun" and resource.pattern.startswith("sync"):
            return await self._glue_sync(client, params["JobName"], result["JobRunId"], context)
        return result

    async def _glue_sync(self, client: Any, job: str, run_id: str, context: TaskContext) -> Any:
        while True:
            run = _jsonable(await asyncio.to_thread(_call, client, "GetJobRun", {"JobName": job, "RunId": run_id}))["JobRun"]
            if run.get("JobRunState") in _GLUE_TERMINAL:
                if run["JobRunState"] != "SUCCEEDED":
                    raise TaskFailed("States.TaskFailed", json.dumps(run, separators=(",", ":")))
                return run
            await context.clock.sleep(self.glue_poll_seconds)

    def runner(self) -> TaskRunner:
        return self
