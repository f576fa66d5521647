"""The rules and limits of SQS, in one place, applied by every :class:`~ceap_engine.ports.Queues`.

The in-memory queues, the SQLite queues, the SQS adapter and the SQS API endpoint
call these checks before doing anything, so a message AWS would refuse is refused
everywhere, with SQS's error code (:class:`~ceap_engine.errors.QueueError`):

* a body is 1 byte to 256 KiB (body and attributes together), of the characters XML 1.0
  allows (``InvalidMessageContents`` otherwise);
* at most 10 message attributes, named like SQS names them, typed ``String``,
  ``Number`` or ``Binary`` (optionally ``.label``);
* delay 0-900 s, visibility timeout 0-43,200 s (12 h), long-poll wait 0-20 s,
  1-10 messages per receive, 1-10 entries per batch with distinct ids, a batch
  at most 256 KiB in all;
* queue names 1-80 letters, digits, ``-`` and ``_``.

It also holds what SQS computes: the MD5 digests of a body and of its attributes
(the SDKs that verify them - Java, .NET - accept ours), the queue attribute map
(``GetQueueAttributes``/``CreateQueue``) and the delivery decision of one stored
message (:func:`delivery`), shared by the embedded backends.

>>> md5_of_body("hello")
'5d41402abc4b2a76b9719d911017c592'
>>> check_wait_seconds(21)
Traceback (most recent call last):
...
ceap_engine.errors.QueueError: Value 21 for parameter WaitTimeSeconds is invalid. Reason: must be between 0 and 20, if provided.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import struct
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from ceap_engine.errors import QueueError
from ceap_engine.ports import (
    Clock,
    MessageAttribute,
    OutgoingMessage,
    QueueSettings,
    ReceivedMessage,
    RedrivePolicy,
)

__all__ = [
    "QUERY_ERROR_CODES",
    "MAX_BATCH",
    "MAX_DELAY",
    "MAX_MESSAGE_BYTES",
    "MAX_VISIBILITY",
    "MAX_WAIT",
    "check_batch",
    "check_send_batch",
    "long_poll",
    "new_receipt_handle",
    "parse_receipt_handle",
    "check_max_messages",
    "check_message",
    "check_queue_name",
    "check_settings",
    "check_visibility",
    "check_wait_seconds",
    "delivery",
    "md5_of_attributes",
    "md5_of_body",
    "queue_arn",
    "queue_name_of_arn",
    "settings_from_attributes",
    "settings_to_attributes",
]

MAX_MESSAGE_BYTES = 262_144
MAX_BATCH = 10
MAX_DELAY = 900
MAX_VISIBILITY = 43_200
MAX_WAIT = 20
MAX_ATTRIBUTES = 10
MIN_RETENTION = 60
MAX_RETENTION = 1_209_600

#: SQS's JSON error codes and the codes of its older query protocol (the ``x-amzn-query-error``
#: header of a JSON error, which botocore and the AWS CLI report as the error's code).
QUERY_ERROR_CODES = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "QueueDeletedRecently": "AWS.SimpleQueueService.QueueDeletedRecently",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
    "PurgeQueueInProgress": "AWS.SimpleQueueService.PurgeQueueInProgress",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
}

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_ENTRY_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
_DATA_TYPE = re.compile(r"^(String|Number|Binary)(\.[A-Za-z0-9_.-]{1,200})?$")
# XML 1.0 characters, as SQS allows them in bodies and string attribute values.
_BAD_CHARS = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _invalid(parameter: str, value: Any, reason: str) -> QueueError:
    return QueueError("InvalidParameterValue", f"Value {value} for parameter {parameter} is invalid. Reason: {reason}.")


def _in_range(parameter: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(parameter, value, f"must be between {low} and {high}, if provided")
    return value


def check_queue_name(name: Any) -> str:
    """``name`` if SQS accepts it as a (standard) queue name.

    >>> check_queue_name("ceap-workflow-demo-queue")
    'ceap-workflow-demo-queue'
    """
    if not isinstance(name, str) or not _QUEUE_NAME.match(name):
        raise QueueError("InvalidParameterValue", f"queue name {name!r} is invalid: 1-80 letters, digits, '-' or '_' "
                         "(FIFO queues, names ending in .fifo, are not supported)")
    return name


def check_visibility(value: Any, parameter: str = "VisibilityTimeout") -> int:
    return _in_range(parameter, value, 0, MAX_VISIBILITY)


def check_wait_seconds(value: Any) -> int:
    return _in_range("WaitTimeSeconds", value, 0, MAX_WAIT)


def check_max_messages(value: Any) -> int:
    return _in_range("MaxNumberOfMessages", value, 1, MAX_BATCH)


def check_settings(settings: QueueSettings) -> QueueSettings:
    """``settings`` if every attribute is in SQS's range (``InvalidAttributeValue`` otherwise)."""
    checks = (
        ("VisibilityTimeout", settings.visibility_timeout, 0, MAX_VISIBILITY),
        ("MessageRetentionPeriod", settings.retention_seconds, MIN_RETENTION, MAX_RETENTION),
        ("DelaySeconds", settings.delay_seconds, 0, MAX_DELAY),
        ("ReceiveMessageWaitTimeSeconds", settings.receive_wait_seconds, 0, MAX_WAIT),
        ("MaximumMessageSize", settings.maximum_message_size, 1024, MAX_MESSAGE_BYTES),
    )
    for name, value, low, high in checks:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise QueueError("InvalidAttributeValue", f"Invalid value for the parameter {name}: {value!r} "
                             f"(must be an integer from {low} to {high})")
    if settings.redrive is not None:
        check_queue_name(settings.redrive.dead_letter_queue)
        count = settings.redrive.max_receive_count
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
            raise QueueError("InvalidAttributeValue", f"Value {count!r} for parameter RedrivePolicy is invalid. "
                             "Reason: Invalid value for maxReceiveCount: must be an integer from 1 to 1000.")
    return settings


def _check_text(text: str, what: str) -> None:
    bad = _BAD_CHARS.search(text)
    if bad is not None:
        raise QueueError("InvalidMessageContents", f"Invalid characters found in {what}: U+{ord(bad.group()):04X} at "
                         f"position {bad.start()} (SQS allows #x9, #xA, #xD, #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF)")


def _check_attributes(attributes: Mapping[str, MessageAttribute]) -> int:
    """Check message attributes; returns the bytes they count towards the message size."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise _invalid("MessageAttributes", len(attributes), f"a message can have at most {MAX_ATTRIBUTES} attributes")
    size = 0
    for name, value in attributes.items():
        if (not isinstance(name, str) or not _ATTRIBUTE_NAME.match(name) or name.startswith(".")
                or name.endswith(".") or ".." in name or name.lower().startswith(("aws.", "amazon."))):
            raise _invalid("MessageAttributes", repr(name), "an attribute name is 1-256 letters, digits, '_', '-' or "
                           "'.', neither starting nor ending with '.', without '..' and not starting with AWS. or Amazon.")
        if not isinstance(value, MessageAttribute) or not _DATA_TYPE.match(value.data_type or ""):
            kind = getattr(value, "data_type", None)
            raise _invalid(f"MessageAttributes.{name}.DataType", repr(kind), "must be String, Number or Binary, "
                           "optionally followed by .label")
        base = value.data_type.split(".", 1)[0]
        if base == "Binary":
            if not isinstance(value.binary_value, bytes | bytearray) or value.string_value is not None:
                raise _invalid(f"MessageAttributes.{name}", "BinaryValue", "a Binary attribute needs a BinaryValue "
                               "and no StringValue")
            data = len(value.binary_value)
        else:
            text = value.string_value
            if not isinstance(text, str) or not text or value.binary_value is not None:
                raise _invalid(f"MessageAttributes.{name}", "StringValue", f"a {base} attribute needs a non-empty "
                               "StringValue and no BinaryValue")
            _check_text(text, f"message attribute {name}")
            if base == "Number":
                try:
                    number = Decimal(text)
                except InvalidOperation:
                    number = None
                if number is None or not number.is_finite() or len(text.lstrip("+-").replace(".", "").lstrip("0")) > 38:
                    raise _invalid(f"MessageAttributes.{name}", repr(text), "a Number attribute is a number of up "
                                   "to 38 digits")
            data = len(text.encode("utf-8"))
        size += len(name.encode("utf-8")) + len(value.data_type.encode("utf-8")) + data
    return size


def check_message(message: OutgoingMessage, maximum_size: int = MAX_MESSAGE_BYTES) -> int:
    """Check one message to send; returns its size in bytes (body plus attributes, as SQS counts).

    >>> check_message(OutgoingMessage('{"programId": "p1"}'))
    19
    """
    body = message.body
    if not isinstance(body, str) or not body:
        raise QueueError("MissingParameter", "The request must contain the parameter MessageBody (a non-empty string).")
    _check_text(body, "the message body")
    if message.delay_seconds is not None:
        _in_range("DelaySeconds", message.delay_seconds, 0, MAX_DELAY)
    size = len(body.encode("utf-8")) + _check_attributes(message.attributes or {})
    if size > maximum_size:
        raise _invalid("MessageBody", f"of {size} bytes", f"Message must be shorter than {maximum_size} bytes "
                       "(body and attributes together)")
    return size


def check_batch(messages: Sequence[Any], ids: Sequence[Any]) -> None:
    """The rules of a whole batch request (send, delete or change visibility): 1-10 entries, distinct valid ids."""
    if not messages:
        raise QueueError("EmptyBatchRequest", "There should be at least one entry in the request.")
    if len(messages) > MAX_BATCH:
        raise QueueError("TooManyEntriesInBatchRequest", f"Maximum number of entries per request are {MAX_BATCH}. "
                         f"You have sent {len(messages)}.")
    for entry_id in ids:
        if not isinstance(entry_id, str) or not _ENTRY_ID.match(entry_id):
            raise QueueError("InvalidBatchEntryId", f"A batch entry id can only contain alphanumeric characters, "
                             f"hyphens and underscores; it can be at most 80 letters long: {entry_id!r}")
    if len(set(ids)) != len(ids):
        raise QueueError("BatchEntryIdsNotDistinct", "Two or more batch entries in the request have the same Id.")


def check_send_batch(messages: Sequence[OutgoingMessage]) -> None:
    """:func:`check_batch` plus the 256 KiB limit of all bodies and attributes together."""
    check_batch(messages, [m.id for m in messages])
    total = 0
    for message in messages:
        try:
            total += check_message(message)
        except QueueError:
            continue  # that entry fails alone; the batch as a whole is still judged by the others
    if total > MAX_MESSAGE_BYTES:
        raise QueueError("BatchRequestTooLong", f"Batch requests cannot be longer than {MAX_MESSAGE_BYTES} bytes. "
                         f"You have sent {total} bytes.")


# -- what SQS computes ---------------------------------------------------------


def md5_of_body(body: str) -> str:
    return hashlib.md5(body.encode("utf-8"), usedforsecurity=False).hexdigest()


def md5_of_attributes(attributes: Mapping[str, MessageAttribute]) -> str | None:
    """SQS's MD5OfMessageAttributes: length-prefixed name, type, transport byte and value, by name."""
    if not attributes:
        return None
    digest = hashlib.md5(usedforsecurity=False)

    def chunk(data: bytes) -> None:
        digest.update(struct.pack("!I", len(data)))
        digest.update(data)

    for name in sorted(attributes):
        value = attributes[name]
        chunk(name.encode("utf-8"))
        chunk(value.data_type.encode("utf-8"))
        if value.binary_value is not None:
            digest.update(b"\x02")
            chunk(bytes(value.binary_value))
        else:
            digest.update(b"\x01")
            chunk((value.string_value or "").encode("utf-8"))
    return digest.hexdigest()


def queue_arn(name: str, region: str = "us-east-1", account: str = "123456789012") -> str:
    return f"arn:aws:sqs:{region}:{account}:{name}"


def queue_name_of_arn(arn: Any) -> str:
    """The queue name at the end of an SQS ARN (``arn:aws:sqs:region:account:name``)."""
    parts = arn.split(":") if isinstance(arn, str) else []
    if len(parts) != 6 or parts[:3] != ["arn", "aws", "sqs"]:
        raise QueueError("InvalidParameterValue", f"{arn!r} is not an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)")
    return check_queue_name(parts[5])


_SETTING_ATTRIBUTES = {
    "VisibilityTimeout": "visibility_timeout",
    "MessageRetentionPeriod": "retention_seconds",
    "DelaySeconds": "delay_seconds",
    "ReceiveMessageWaitTimeSeconds": "receive_wait_seconds",
    "MaximumMessageSize": "maximum_message_size",
}
# Accepted (AWS sets them on every queue) but without effect on a local queue.
_IGNORED_ATTRIBUTES = {"SqsManagedSseEnabled", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "Policy",
                       "RedriveAllowPolicy"}


def settings_from_attributes(attributes: Mapping[str, Any], base: QueueSettings | None = None) -> QueueSettings:
    """Queue settings from an SQS attribute map (``CreateQueue``'s ``Attributes``, all values strings)."""
    values: dict[str, Any] = {}
    redrive = (base or QueueSettings()).redrive
    for name, raw in attributes.items():
        if name in _SETTING_ATTRIBUTES:
            try:
                values[_SETTING_ATTRIBUTES[name]] = int(str(raw))
            except ValueError:
                raise QueueError("InvalidAttributeValue", f"Invalid value for the parameter {name}: {raw!r}") from None
        elif name == "RedrivePolicy":
            try:
                policy = json.loads(raw) if isinstance(raw, str) else raw
                target = queue_name_of_arn(policy["deadLetterTargetArn"])
                redrive = RedrivePolicy(target, int(policy["maxReceiveCount"]))
            except (ValueError, TypeError, KeyError) as exc:
                raise QueueError("InvalidAttributeValue", f"Value {raw!r} for parameter RedrivePolicy is invalid. Reason: "
                                 f"it must be JSON with deadLetterTargetArn and maxReceiveCount ({exc})") from None
        elif name in ("FifoQueue", "ContentBasedDeduplication") and str(raw).lower() == "true":
            raise QueueError("InvalidAttributeName", f"{name} is not supported: local queues are standard queues")
        elif name not in _IGNORED_ATTRIBUTES and name not in ("FifoQueue", "ContentBasedDeduplication"):
            raise QueueError("InvalidAttributeName", f"Unknown Attribute {name}.")
    base_values = {field: getattr(base or QueueSettings(), field) for field in _SETTING_ATTRIBUTES.values()}
    return check_settings(QueueSettings(**{**base_values, **values}, redrive=redrive))


def settings_to_attributes(settings: QueueSettings, region: str = "us-east-1",
                           account: str = "123456789012") -> dict[str, str]:
    """The SQS attribute map of ``settings`` (without the counts and timestamps)."""
    out = {attribute: str(getattr(settings, field)) for attribute, field in _SETTING_ATTRIBUTES.items()}
    if settings.redrive is not None:
        out["RedrivePolicy"] = json.dumps({
            "deadLetterTargetArn": queue_arn(settings.redrive.dead_letter_queue, region, account),
            "maxReceiveCount": settings.redrive.max_receive_count,
        }, separators=(",", ":"))
    return out


# -- what a stored message does at a receive -----------------------------------

EXPIRE = "expire"
DEAD_LETTER = "dead-letter"
DELIVER = "deliver"
WAIT = "wait"


def delivery(*, sent_at: float, visible_at: float, receive_count: int, settings: QueueSettings, now: float) -> str:
    """What a receive does with one stored message: ``expire``, ``dead-letter``, ``deliver`` or ``wait``.

    Retention counts from the original send (also in a DLQ); a message already
    received ``max_receive_count`` times moves to the DLQ instead of being delivered
    again, so it is delivered exactly that many times.

    >>> s = QueueSettings(redrive=RedrivePolicy("dlq", 3))
    >>> delivery(sent_at=0, visible_at=0, receive_count=3, settings=s, now=10)
    'dead-letter'
    """
    if now >= sent_at + settings.retention_seconds:
        return EXPIRE
    if visible_at > now:
        return WAIT
    if settings.redrive is not None and receive_count >= settings.redrive.max_receive_count:
        return DEAD_LETTER
    return DELIVER


def new_receipt_handle(queue: str, message_id: str) -> str:
    """A fresh receipt handle naming the queue and message of one receive (opaque to callers)."""
    raw = f"{queue}/{message_id}/{uuid.uuid4().hex}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def parse_receipt_handle(queue: str, handle: Any) -> str:
    """The message id in a receipt handle of ``queue`` (``ReceiptHandleIsInvalid`` if it is none)."""
    try:
        name, message_id, _ = base64.urlsafe_b64decode(handle.encode("ascii")).decode().split("/")
    except (AttributeError, ValueError, UnicodeError):
        name = message_id = ""
    if name != queue or not message_id:
        raise QueueError("ReceiptHandleIsInvalid", f'The input receipt handle "{handle}" is not a valid receipt handle.')
    return message_id


async def long_poll(
    clock: Clock,
    take: Callable[[], Awaitable[list[ReceivedMessage]]],
    wait_seconds: int,
    *,
    next_due: Callable[[], Awaitable[float | None]],
    wake: asyncio.Event | None = None,
    poll_interval: float | None = None,
) -> list[ReceivedMessage]:
    """Receive with long polling: ``take`` now, else wait (on ``clock``) for a send, a due message or the end.

    ``next_due`` gives the earliest time a waiting message (delayed, in flight)
    becomes visible; ``wake`` is set by sends in this process; ``poll_interval``
    bounds each wait for backends other processes write to (SQLite). Under a
    :class:`~ceap_engine.runtime.clock.VirtualClock` the waits are virtual.
    """
    deadline = clock.time() + wait_seconds
    while True:
        if wake is not None:
            wake.clear()  # before taking, so a send while we look is not missed
        got = await take()
        now = clock.time()
        if got or now >= deadline:
            return got
        pause = deadline - now
        due = await next_due()
        if due is not None:
            pause = min(pause, max(due - now, 0.001))
        if poll_interval is not None:
            pause = min(pause, poll_interval)
        if wake is None:
            await clock.sleep(pause)
            continue
        sleeper = asyncio.ensure_future(clock.sleep(pause))
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, woken):
                task.cancel()
