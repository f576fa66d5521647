"""The HTTP endpoint: one ASGI app, AWS JSON 1.0, APIs mounted by ``X-Amz-Target`` prefix.

A request is ``POST`` (any path: SQS clients may post to a queue URL) with ``X-Amz-Target:
<Prefix>.<Action>`` and a JSON body; the app finds the API mounted under ``<Prefix>``
(``AWSStepFunctions``, ``AmazonSQS``) and awaits its handler with ``(action, body)``. A
handler returns ``(status, document)`` - the document as a dict, or as :class:`Encoded` JSON
text a hot path wrote itself - or raises
:class:`~ceap_engine.serve.errors.ServiceError`; a mount may add response headers of its
own (SQS's ``x-amzn-query-error``). A form post without the header (``Action=...``, the
AWS query protocol of older SDKs) goes to the handler given to :meth:`Endpoint.refuse_query`,
which answers in XML, the format such a client parses. The server (uvicorn) parses HTTP;
this module never does.

Example::

    endpoint = Endpoint()
    endpoint.mount("AWSStepFunctions", service.handle)
    endpoint.mount("AmazonSQS", sqs.handle, headers=response_headers)
    uvicorn.run(endpoint, host="127.0.0.1", port=8083)
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from ceap_engine._json import compact_json, loads
from ceap_engine.runtime.tasks import random_uuid
from ceap_engine.serve.errors import ServiceError

__all__ = ["ApiHandler", "Encoded", "Endpoint", "HeaderMaker", "QueryHandler"]


class Encoded(str):
    """A response document already encoded as compact JSON text (sent as it is)."""

    __slots__ = ()


ApiHandler = Callable[[str, dict[str, Any]], Awaitable[tuple[int, "dict[str, Any] | Encoded"]]]
"""``async handler(action, body) -> (status, document)``."""
HeaderMaker = Callable[[int, Mapping[str, Any]], Mapping[str, str]]
"""``headers(status, document) -> {name: value}``: a mount's own response headers."""
QueryHandler = Callable[[dict[str, str]], tuple[int, str]]
"""``handler(form parameters) -> (status, XML text)`` for a query-protocol request."""

_log = logging.getLogger("ceap.serve")
_CONTENT_TYPE = b"application/x-amz-json-1.0"


#: Request ids need to be unique, not secret: a random version-4 UUID drawn once per server process
#: whose last 12 hex digits count the requests (as AWS's, 8-4-4-4-12 hex digits; no draw per request).
_REQUEST_ID_PREFIX = random_uuid(random.Random())[:24]
_REQUEST_COUNT = itertools.count(int(random_uuid(random.Random())[24:], 16))


def _request_id() -> bytes:
    """A request id in the shape of AWS's (a UUID), unique within this process and across its restarts.

    >>> a, b = _request_id(), _request_id()
    >>> len(a), a[:24] == b[:24], a != b
    (36, True, True)
    """
    return f"{_REQUEST_ID_PREFIX}{next(_REQUEST_COUNT) & 0xFFFFFFFFFFFF:012x}".encode()


class Endpoint:
    """The ASGI application: routes by ``X-Amz-Target`` prefix to mounted APIs."""

    def __init__(self) -> None:
        self._apis: dict[str, ApiHandler] = {}
        self._headers: dict[str, HeaderMaker] = {}
        self._query: QueryHandler | None = None

    def mount(self, prefix: str, handler: ApiHandler, *, headers: HeaderMaker | None = None) -> None:
        """Serve ``X-Amz-Target: <prefix>.<Action>`` with ``handler`` (and its own response ``headers``)."""
        if prefix in self._apis:
            raise ValueError(f"an API is already mounted under {prefix!r}")
        self._apis[prefix] = handler
        if headers is not None:
            self._headers[prefix] = headers

    def refuse_query(self, handler: QueryHandler) -> None:
        """Answer form posts of the AWS query protocol (no ``X-Amz-Target``) with ``handler``'s XML."""
        self._query = handler

    @property
    def prefixes(self) -> list[str]:
        return sorted(self._apis)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        target = content_type = b""
        for name, value in scope["headers"]:
            if name == b"x-amz-target":
                target = value
            elif name == b"content-type":
                content_type = value
        message = await receive()
        body = message.get("body", b"")
        if message.get("more_body", False):  # a body in several messages (a large one): gather them
            chunks = [body]
            while message.get("more_body", False):
                message = await receive()
                chunks.append(message.get("body", b""))
            body = b"".join(chunks)
        if not target and self._query is not None and content_type.startswith(b"application/x-www-form-urlencoded"):
            status, xml = self._query(dict(parse_qsl(body.decode("utf-8", "replace"))))
            await self._respond(send, status, xml.encode(), b"text/xml", {})
            return
        text = target.decode("latin-1")
        status, document = await self.dispatch(text, body, scope.get("method", "POST"))
        if isinstance(document, Encoded):
            payload = document.encode()
            document = {}
        else:
            payload = compact_json(document).encode()
        extra: Mapping[str, str] = {}
        maker = self._headers.get(text.partition(".")[0])
        if maker is not None:
            extra = maker(status, document)
        elif status >= 400 and "__type" in document:
            extra = {"x-amzn-errortype": document["__type"]}
        await self._respond(send, status, payload, _CONTENT_TYPE, extra)

    @staticmethod
    async def _respond(send: Callable, status: int, payload: bytes, content_type: bytes,
                       extra: Mapping[str, str]) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(payload)).encode())]
        if not extra:  # the common answer: no header of the mount's own
            headers.append((b"x-amzn-requestid", _request_id()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        names = {name.lower() for name in extra}
        if "x-amzn-requestid" not in names:
            headers.append((b"x-amzn-requestid", _request_id()))
        headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()
                    if name.lower() not in ("content-type", "content-length")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def dispatch(self, target: str, body: bytes, method: str = "POST") -> tuple[int, dict[str, Any] | Encoded]:
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
            document = loads(body) if body.strip() else {}
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
