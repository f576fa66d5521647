"""The HTTP endpoint: one ASGI app, AWS JSON 1.0, APIs mounted by ``X-Amz-Target`` prefix.

A request is ``POST /`` with ``X-Amz-Target: <Prefix>.<Action>`` and a JSON body; the
app finds the API mounted under ``<Prefix>`` (``AWSStepFunctions``; a later one,
``AmazonSQS``, mounts beside it) and awaits its handler with ``(action, body)``. A handler
returns ``(status, document)`` or raises :class:`~ceap_engine.serve.errors.ServiceError`.
The server (uvicorn) parses HTTP; this module never does.

Example::

    endpoint = Endpoint()
    endpoint.mount("AWSStepFunctions", service.handle)
    uvicorn.run(endpoint, host="127.0.0.1", port=8083)
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ceap_engine.serve.errors import ServiceError

__all__ = ["ApiHandler", "Endpoint"]

ApiHandler = Callable[[str, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]
"""``async handler(action, body) -> (status, document)``."""

_log = logging.getLogger("ceap.serve")
_CONTENT_TYPE = b"application/x-amz-json-1.0"


class Endpoint:
    """The ASGI application: routes by ``X-Amz-Target`` prefix to mounted APIs."""

    def __init__(self) -> None:
        self._apis: dict[str, ApiHandler] = {}

    def mount(self, prefix: str, handler: ApiHandler) -> None:
        """Serve ``X-Amz-Target: <prefix>.<Action>`` with ``handler``."""
        if prefix in self._apis:
            raise ValueError(f"an API is already mounted under {prefix!r}")
        self._apis[prefix] = handler

    @property
    def prefixes(self) -> list[str]:
        return sorted(self._apis)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        target = b""
        for name, value in scope["headers"]:
            if name == b"x-amz-target":
                target = value
                break
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        status, document = await self.dispatch(target.decode("latin-1"), body, scope.get("method", "POST"))
        payload = json.dumps(document, separators=(",", ":")).encode()
        headers = [
            (b"content-type", _CONTENT_TYPE),
            (b"content-length", str(len(payload)).encode()),
            (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
        ]
        if status >= 400 and "__type" in document:
            headers.append((b"x-amzn-errortype", document["__type"].encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def dispatch(self, target: str, body: bytes, method: str = "POST") -> tuple[int, dict[str, Any]]:
        """Answer one request; every failure becomes an AWS-shaped error document."""
        if not target:
            if method == "GET":  # a health check: what is served here
                return 200, {"status": "ok", "apis": self.prefixes}
            return 400, ServiceError("MissingAction", "The request has no X-Amz-Target header "
                                     "(expected <Prefix>.<Action>, e.g. AWSStepFunctions.ListStateMachines)").body()
        prefix, _, action = target.partition(".")
        handler = self._apis.get(prefix)
        if handler is None or not action:
            return 400, ServiceError("UnknownOperationException",
                                     f"Unknown operation {target!r}: this endpoint serves {', '.join(self.prefixes)}").body()
        try:
            document = json.loads(body) if body.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return 400, ServiceError("SerializationException", f"The request body is not JSON: {exc}").body()
        if not isinstance(document, dict):
            return 400, ServiceError("SerializationException", "The request body must be a JSON object").body()
        try:
            return await handler(action, document)
        except ServiceError as exc:
            return exc.status, exc.body()
        except Exception as exc:  # noqa: BLE001 - a bug here must answer 500, not drop the connection
            _log.exception("internal error in %s", target)
            return 500, ServiceError("InternalFailure", f"{type(exc).__name__}: {exc}", 500).body()

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        # Nothing to set up here: the composition root starts and stops the services around the server.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
