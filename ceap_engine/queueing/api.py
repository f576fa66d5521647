"""The SQS API over any :class:`~ceap_engine.ports.Queues`, in the AWS JSON protocol, without a server.

:class:`SqsApi` answers one request - the action of the ``X-Amz-Target:
AmazonSQS.<Action>`` header and the JSON body - with an HTTP status and a JSON
document shaped as botocore's SQS model (``2012-11-05``) says; an HTTP server
(``ceap serve``, or the test suite's) only moves bytes, and adds the headers of
:func:`response_headers`. So ``aws sqs send-message --endpoint-url ...`` and
``boto3.client("sqs", endpoint_url=...)`` work against local queues.

Errors have AWS's shape: ``{"__type": "com.amazonaws.sqs#QueueDoesNotExist",
"message": ...}`` with status 400, and the ``x-amzn-query-error`` header
(``AWS.SimpleQueueService.NonExistentQueue;Sender``) from which the SDKs take the
error code they report.

Only the JSON protocol is served. botocore and boto3 speak it for SQS from 1.34.90 on
(AWS CLI v1 from 1.32.90, which needs botocore 1.34.90). It came twice before and was
rolled back twice: botocore 1.29.127 (reverted in 1.29.128) and 1.31.81-1.32.5 (reverted in
1.32.6), so 1.32.6-1.34.89 send the query protocol again (boto3's changelog, 1.34.90:
"enables customers to call SQS using AWS JSON-1.0 protocol"; botocore pull requests #2931,
#3071 and #3165, "Move SQS protocol to JSON, again"). Other SDKs: AWS's "Amazon SQS AWS
JSON protocol FAQs" (AWS CLI v2 2.13.38, Go v2 ``service/sqs`` 1.28.0, C++ 1.11.198 ...). An SDK
that sends the query protocol (``Action=SendMessage`` form posts) gets
:func:`query_protocol_refusal` back: an XML error, which it parses, naming these versions.

Example::

    api = SqsApi(queues, endpoint="http://127.0.0.1:4566")
    status, document = await api.handle("SendMessage", {"QueueUrl": url, "MessageBody": "{}"})
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from ceap_engine.errors import QueueError
from ceap_engine.ports import MessageAttribute, OutgoingMessage, Queues, QueueSettings, ReceivedMessage
from ceap_engine.storage import queue as rules

__all__ = ["ACTIONS", "CONTENT_TYPE", "JSON_PROTOCOL_SDKS", "SqsApi", "TARGET_PREFIX", "query_protocol_refusal",
           "response_headers"]

TARGET_PREFIX = "AmazonSQS."
CONTENT_TYPE = "application/x-amz-json-1.0"
ACTIONS = (
    "CreateQueue", "GetQueueUrl", "ListQueues", "GetQueueAttributes", "SendMessage", "SendMessageBatch",
    "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch", "PurgeQueue", "ListDeadLetterSourceQueues", "StartMessageMoveTask",
)
JSON_PROTOCOL_SDKS = "botocore/boto3 >= 1.34.90, AWS CLI v1 >= 1.32.90, AWS CLI v2 >= 2.13.38"
"""The SDK releases from which on SQS requests are JSON (see the module's docstring for the sources)."""
_COUNT_ATTRIBUTES = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                     "ApproximateNumberOfMessagesDelayed")
_QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MaximumMessageSize", "MessageRetentionPeriod", "DelaySeconds",
                     "ReceiveMessageWaitTimeSeconds", "RedrivePolicy", "QueueArn", "SqsManagedSseEnabled",
                     *_COUNT_ATTRIBUTES)


def response_headers(status: int, document: Mapping[str, Any]) -> dict[str, str]:
    """The headers of a response: content type, request id and, for an error, ``x-amzn-query-error``."""
    headers = {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": str(uuid.uuid4())}
    if status >= 400:
        code = str(document.get("__type", "")).rpartition("#")[2]
        fault = "Sender" if status < 500 else "Receiver"
        headers["x-amzn-query-error"] = f"{rules.QUERY_ERROR_CODES.get(code, code)};{fault}"
    return headers


def query_protocol_refusal(parameters: Mapping[str, str]) -> tuple[int, str]:
    """The answer to a query-protocol request (``Action=...`` form post): 400 and an XML error naming the SDKs to use.

    >>> status, xml = query_protocol_refusal({"Action": "SendMessage"})
    >>> status, "<Code>InvalidAction</Code>" in xml, "1.34.90" in xml
    (400, True, True)
    """
    action = parameters.get("Action") or "?"
    message = (f"{action} came in SQS's query protocol (a form post); this endpoint serves the AWS JSON protocol only "
               f"(X-Amz-Target: {TARGET_PREFIX}{action}). Upgrade the SDK: {JSON_PROTOCOL_SDKS}.")
    request_id = uuid.uuid4()
    return 400, (f'<?xml version="1.0"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><Error>'
                 f"<Type>Sender</Type><Code>InvalidAction</Code><Message>{xml_escape(message)}</Message><Detail/>"
                 f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>")


def _error(code: str, message: str, status: int = 400) -> tuple[int, dict[str, Any]]:
    return status, {"__type": f"com.amazonaws.sqs#{code}", "message": message}


def _required(body: Mapping[str, Any], name: str, kind: type = str) -> Any:
    value = body.get(name)
    if value is None:
        raise QueueError("MissingParameter", f"The request must contain the parameter {name}.")
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise QueueError("InvalidParameterValue", f"Value for parameter {name} is invalid: expected {kind.__name__}.")
    return value


def _optional_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise QueueError("InvalidParameterValue", f"Value {value!r} for parameter {name} is invalid: expected an integer.")
    return value


def _attributes_in(raw: Any) -> dict[str, MessageAttribute]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise QueueError("InvalidParameterValue", "MessageAttributes must be a map of name to value.")
    out = {}
    for name, value in raw.items():
        if not isinstance(value, Mapping):
            raise QueueError("InvalidParameterValue", f"The message attribute {name!r} must be an object with DataType.")
        binary = value.get("BinaryValue")
        if binary is not None:
            try:
                binary = base64.b64decode(binary, validate=True)
            except (binascii.Error, TypeError):
                raise QueueError("InvalidParameterValue", f"The message attribute {name!r} has a BinaryValue that is "
                                 "not base64.") from None
        out[name] = MessageAttribute(str(value.get("DataType", "")), value.get("StringValue"), binary)
    return out


def _attributes_out(attributes: Mapping[str, MessageAttribute]) -> dict[str, Any]:
    out = {}
    for name, a in attributes.items():
        entry: dict[str, Any] = {"DataType": a.data_type}
        if a.binary_value is not None:
            entry["BinaryValue"] = base64.b64encode(bytes(a.binary_value)).decode("ascii")
        else:
            entry["StringValue"] = a.string_value
        out[name] = entry
    return out


def _wanted(names: Any, name: str) -> bool:
    """Whether ReceiveMessage's ``MessageAttributeNames`` asks for ``name`` (``All``, ``.*``, ``prefix.*``)."""
    for want in names or ():
        if want in ("All", ".*") or want == name or (want.endswith(".*") and name.startswith(want[:-1])):
            return True
    return False


def _message(entry: Mapping[str, Any], entry_id: str = "0") -> OutgoingMessage:
    body = entry.get("MessageBody")
    if body is None:
        raise QueueError("MissingParameter", "The request must contain the parameter MessageBody.")
    return OutgoingMessage(body, id=entry_id, delay_seconds=_optional_int(entry, "DelaySeconds"),
                           attributes=_attributes_in(entry.get("MessageAttributes")))


class SqsApi:
    """The SQS API of one account and region over ``queues``; queue URLs are ``{endpoint}/{account}/{name}``."""

    def __init__(self, queues: Queues, *, endpoint: str = "http://localhost:4566", region: str = "us-east-1",
                 account: str = "123456789012") -> None:
        self.queues = queues
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self.account = account
        self._move_tasks = 0
        self._actions: dict[str, Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]] = {
            name: getattr(self, "_" + "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_"))
            for name in ACTIONS
        }

    def url(self, name: str) -> str:
        return f"{self.endpoint}/{self.account}/{name}"

    async def handle(self, action: str, body: Any) -> tuple[int, dict[str, Any]]:
        """Answer one request: ``(HTTP status, JSON document)``; never raises for a bad request."""
        if action.startswith(TARGET_PREFIX):
            action = action[len(TARGET_PREFIX):]
        handler = self._actions.get(action)
        if handler is None:
            return _error("UnknownOperation", f"The action {action!r} is not valid for this endpoint; served: "
                          f"{', '.join(ACTIONS)} (AWS JSON protocol only: {JSON_PROTOCOL_SDKS})")
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            return _error("InvalidParameterValue", "The request body must be a JSON object.")
        try:
            return 200, await handler(body)
        except QueueError as exc:
            return _error(exc.code, exc.message, 400 if exc.sender_fault else 500)

    # -- queues ----------------------------------------------------------------
    def _name(self, body: Mapping[str, Any]) -> str:
        url = _required(body, "QueueUrl")
        name = url.rstrip("/").rpartition("/")[2]
        return rules.check_queue_name(name)

    async def _create_queue(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = rules.check_queue_name(_required(body, "QueueName"))
        attributes = body.get("Attributes") or {}
        settings = rules.settings_from_attributes(attributes, QueueSettings())
        await self.queues.create_queue(name, settings)
        return {"QueueUrl": self.url(name)}

    async def _get_queue_url(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = rules.check_queue_name(_required(body, "QueueName"))
        await self.queues.settings(name)
        return {"QueueUrl": self.url(name)}

    async def _list_queues(self, body: Mapping[str, Any]) -> dict[str, Any]:
        names = await self.queues.list_queues(body.get("QueueNamePrefix") or "")
        limit = _optional_int(body, "MaxResults")
        start = int(body.get("NextToken") or 0)
        if limit is None:
            return {"QueueUrls": [self.url(n) for n in names[:1000]]}
        page = names[start:start + limit]
        out: dict[str, Any] = {"QueueUrls": [self.url(n) for n in page]}
        if start + limit < len(names):
            out["NextToken"] = str(start + limit)
        return out

    async def _get_queue_attributes(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = self._name(body)
        wanted = body.get("AttributeNames") or []
        unknown = [a for a in wanted if a != "All" and a not in _QUEUE_ATTRIBUTES]
        if unknown:
            raise QueueError("InvalidAttributeName", f"Unknown Attribute {unknown[0]}.")
        settings = await self.queues.settings(name)
        counts = await self.queues.counts(name)
        every = {
            **rules.settings_to_attributes(settings, self.region, self.account),
            "QueueArn": rules.queue_arn(name, self.region, self.account),
            "SqsManagedSseEnabled": "false",
            "ApproximateNumberOfMessages": str(counts.visible),
            "ApproximateNumberOfMessagesNotVisible": str(counts.in_flight),
            "ApproximateNumberOfMessagesDelayed": str(counts.delayed),
        }
        if "All" in wanted:
            return {"Attributes": every}
        return {"Attributes": {a: every[a] for a in wanted if a in every}}

    async def _purge_queue(self, body: Mapping[str, Any]) -> dict[str, Any]:
        await self.queues.purge(self._name(body))
        return {}

    async def _list_dead_letter_source_queues(self, body: Mapping[str, Any]) -> dict[str, Any]:
        names = await self.queues.dead_letter_sources(self._name(body))
        return {"queueUrls": [self.url(n) for n in names]}

    async def _start_message_move_task(self, body: Mapping[str, Any]) -> dict[str, Any]:
        source = rules.queue_name_of_arn(_required(body, "SourceArn"))
        destination_arn = body.get("DestinationArn")
        destination = rules.queue_name_of_arn(destination_arn) if destination_arn else None
        try:
            await self.queues.settings(source)
        except QueueError:
            raise QueueError("ResourceNotFoundException", f"The resource that you specified for the SourceArn "
                             f"parameter doesn't exist: {body['SourceArn']}") from None
        # Local queues move the messages at once; the task handle names the finished task.
        await self.queues.move_messages(source, destination)
        self._move_tasks += 1
        handle = base64.b64encode(f"{source}:{self._move_tasks}".encode()).decode("ascii")
        return {"TaskHandle": handle}

    # -- messages --------------------------------------------------------------
    async def _send_message(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = self._name(body)
        sent = await self.queues.send(name, _message(body))
        out = {"MD5OfMessageBody": sent.md5_of_body, "MessageId": sent.message_id}
        if sent.md5_of_attributes:
            out["MD5OfMessageAttributes"] = sent.md5_of_attributes
        return out

    def _entries(self, body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        entries = body.get("Entries")
        if entries is None:
            entries = []
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            raise QueueError("InvalidParameterValue", "Entries must be a list of objects.")
        rules.check_batch(entries, [e.get("Id") for e in entries])
        return entries

    async def _send_message_batch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = self._name(body)
        entries = self._entries(body)
        messages, failed = [], []
        for entry in entries:
            try:
                messages.append(_message(entry, entry["Id"]))
            except QueueError as exc:
                failed.append({"Id": entry["Id"], "SenderFault": True, "Code": exc.code, "Message": exc.message})
        result = await self.queues.send_batch(name, messages) if messages else None
        successful = []
        for s in result.successful if result else ():
            item = {"Id": s.id, "MessageId": s.message_id, "MD5OfMessageBody": s.md5_of_body}
            if s.md5_of_attributes:
                item["MD5OfMessageAttributes"] = s.md5_of_attributes
            successful.append(item)
        failed += [{"Id": f.id, "SenderFault": f.sender_fault, "Code": f.code, "Message": f.message}
                   for f in (result.failed if result else ())]
        return {"Successful": successful, "Failed": failed}

    def _received(self, m: ReceivedMessage, body: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"MessageId": m.message_id, "ReceiptHandle": m.receipt_handle, "MD5OfBody": m.md5_of_body,
                               "Body": m.body}
        system_names = [*(body.get("AttributeNames") or ()), *(body.get("MessageSystemAttributeNames") or ())]
        if system_names:
            every = {"SenderId": self.account, "SentTimestamp": str(int(m.sent_at * 1000)),
                     "ApproximateReceiveCount": str(m.receive_count),
                     "ApproximateFirstReceiveTimestamp": str(int((m.first_received_at or m.sent_at) * 1000))}
            if m.dead_letter_source:
                every["DeadLetterQueueSourceArn"] = rules.queue_arn(m.dead_letter_source, self.region, self.account)
            out["Attributes"] = {k: v for k, v in every.items() if "All" in system_names or k in system_names}
        chosen = {k: v for k, v in m.attributes.items() if _wanted(body.get("MessageAttributeNames"), k)}
        if chosen:
            out["MessageAttributes"] = _attributes_out(chosen)
            out["MD5OfMessageAttributes"] = rules.md5_of_attributes(chosen)
        return out

    async def _receive_message(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = self._name(body)
        count = _optional_int(body, "MaxNumberOfMessages")
        messages = await self.queues.receive(name, 1 if count is None else count,
                                             visibility_timeout=_optional_int(body, "VisibilityTimeout"),
                                             wait_seconds=_optional_int(body, "WaitTimeSeconds"))
        return {"Messages": [self._received(m, body) for m in messages]} if messages else {}

    async def _delete_message(self, body: Mapping[str, Any]) -> dict[str, Any]:
        await self.queues.delete(self._name(body), _required(body, "ReceiptHandle"))
        return {}

    async def _delete_message_batch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = self._name(body)
        return await self._each(self._entries(body), lambda e: self.queues.delete(name, _required(e, "ReceiptHandle")))

    async def _change_message_visibility(self, body: Mapping[str, Any]) -> dict[str, Any]:
        await self.queues.change_visibility(self._name(body), _required(body, "ReceiptHandle"),
                                            _required(body, "VisibilityTimeout", int))
        return {}

    async def _change_message_visibility_batch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = self._name(body)
        return await self._each(self._entries(body), lambda e: self.queues.change_visibility(
            name, _required(e, "ReceiptHandle"), _required(e, "VisibilityTimeout", int)))

    @staticmethod
    async def _each(entries: list[Mapping[str, Any]],
                    call: Callable[[Mapping[str, Any]], Awaitable[None]]) -> dict[str, Any]:
        successful, failed = [], []
        for entry in entries:
            try:
                await call(entry)
                successful.append({"Id": entry["Id"]})
            except QueueError as exc:
                failed.append({"Id": entry["Id"], "SenderFault": exc.sender_fault, "Code": exc.code,
                               "Message": exc.message})
        return {"Successful": successful, "Failed": failed}
