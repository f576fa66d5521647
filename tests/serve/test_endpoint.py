"""The ASGI endpoint on its own: bodies as uvicorn hands them over, JSON as json reads it, request ids."""

from __future__ import annotations

import json
import uuid

from ceap_engine.serve.endpoint import Endpoint


async def _post(endpoint: Endpoint, chunks: list[bytes], target: bytes = b"Echo.Say") -> tuple[int, dict, dict]:
    """One request whose body arrives in ``chunks`` (``more_body`` on all but the last), as uvicorn sends a large one."""
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": [(b"x-amz-target", target),
                                                           (b"content-type", b"application/x-amz-json-1.0")]}
    await endpoint(scope, receive, send)
    start, body = sent
    return start["status"], dict(start["headers"]), json.loads(body["body"])


def _echo() -> Endpoint:
    endpoint = Endpoint()

    async def say(action: str, document: dict) -> tuple[int, dict]:
        return 200, {"action": action, "got": document}

    async def read(action: str, document: dict) -> tuple[int, dict]:  # what the document holds, answerable as JSON
        return 200, {k: [type(v).__name__, repr(v)] for k, v in document.items()}

    endpoint.mount("Echo", say)
    endpoint.mount("Read", read)
    return endpoint


async def test_a_body_in_several_messages_is_read_whole():
    text = json.dumps({"input": "x" * 70_000, "n": [1, 2.5]}).encode()
    status, _, doc = await _post(_echo(), [text[:10], text[10:40_000], text[40_000:]])
    assert status == 200 and doc["got"] == json.loads(text) and doc["action"] == "Say"


async def test_json_reads_as_the_json_module_reads_it_and_refuses_what_it_refuses():
    # msgspec parses first; what it refuses and json accepts (NaN) still reads as json reads it.
    status, _, doc = await _post(_echo(), [b'{"a": NaN, "b": 1e400, "c": "\\ud800", "d": 12345678901234567890123}'], b"Read.It")
    assert status == 200
    assert doc == {"a": ["float", "nan"], "b": ["float", "inf"], "c": ["str", "'\\ud800'"],
                   "d": ["int", "12345678901234567890123"]}
    status, headers, doc = await _post(_echo(), [b'{"a": 1,}'])
    assert status == 400 and doc["__type"] == "SerializationException" and headers[b"x-amzn-errortype"] == b"SerializationException"
    assert doc["message"].startswith("The request body is not JSON: Expecting property name")


async def test_every_answer_has_its_own_request_id_in_uuid_form():
    endpoint = _echo()
    ids = [(await _post(endpoint, [b"{}"]))[1][b"x-amzn-requestid"].decode() for _ in range(3)]
    assert len(set(ids)) == 3 and all(uuid.UUID(i).version == 4 for i in ids)
