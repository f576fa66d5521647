"""SQS as :class:`~ceap_engine.ports.Queues`, over an aiobotocore client.

Arguments are checked by :mod:`ceap_engine.storage.queue` before any call (so a
message the local queues refuse is refused here, even against a server that does
not check, such as moto), and SQS's errors become
:class:`~ceap_engine.errors.QueueError` with the same codes the local queues use.
Queue names are resolved to URLs once (GetQueueUrl) and cached.

Two operations are built from plain calls rather than from an API of their own,
so they behave the same on AWS and on moto:

* :meth:`SqsQueues.peek` receives (with a 30 s visibility timeout) and makes each
  message visible again at once; on SQS that counts as a receive, which is
  harmless on a dead-letter queue (it has no redrive policy of its own);
* :meth:`SqsQueues.move_messages` receives from the DLQ, sends each message to its
  source queue and then deletes it, 10 at a time: a crash in between can send a
  message twice (at-least-once, like StartMessageMoveTask), never lose one.

Example::

    async with AwsClients(settings) as aws:
        queues = SqsQueues(await aws.client("sqs"))
        await queues.send("ceap-workflow-demo-queue", OutgoingMessage('{"programId": "p1"}'))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ceap_engine.errors import QueueError, QueueNotFound
from ceap_engine.ports import (
    BatchEntryFailure,
    MessageAttribute,
    OutgoingMessage,
    QueueCounts,
    QueueSettings,
    ReceivedMessage,
    SendBatchResult,
    SentMessage,
)
from ceap_engine.storage import queue as rules

from .errors import describe

__all__ = ["SqsQueues"]

_JSON_CODE = {query: code for code, query in rules.QUERY_ERROR_CODES.items()}
_PEEK_VISIBILITY = 30


def _attributes_out(attributes: Mapping[str, MessageAttribute]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in attributes.items():
        entry: dict[str, Any] = {"DataType": value.data_type}
        if value.binary_value is not None:
            entry["BinaryValue"] = bytes(value.binary_value)
        else:
            entry["StringValue"] = value.string_value
        out[name] = entry
    return out


def _attributes_in(attributes: Mapping[str, Any] | None) -> dict[str, MessageAttribute]:
    return {name: MessageAttribute(v["DataType"], v.get("StringValue"), v.get("BinaryValue"))
            for name, v in (attributes or {}).items()}


class SqsQueues:
    """A :class:`~ceap_engine.ports.Queues` over an aiobotocore SQS client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._urls: dict[str, str] = {}

    @contextmanager
    def _errors(self, operation: str, queue: str = "") -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("QueryErrorCode") or _JSON_CODE.get(str(error.get("Code", "")), error.get("Code", "")))
            if code == "QueueDoesNotExist":
                self._urls.pop(queue, None)
                raise QueueNotFound(queue) from exc
            _, message = describe(exc, f"SQS {operation}", queue)
            raise QueueError(code, message, sender_fault=error.get("Type", "Sender") == "Sender") from exc
        except BotoCoreError as exc:
            code, message = describe(exc, f"SQS {operation}", queue)
            raise QueueError(code, message, sender_fault=False) from exc

    async def _url(self, name: str) -> str:
        url = self._urls.get(name)
        if url is None:
            rules.check_queue_name(name)
            with self._errors("GetQueueUrl", name):
                url = (await self.client.get_queue_url(QueueName=name))["QueueUrl"]
            self._urls[name] = url
        return url

    async def _arn(self, name: str) -> str:
        url = await self._url(name)
        with self._errors("GetQueueAttributes", name):
            response = await self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return response["Attributes"]["QueueArn"]

    async def create_queue(self, name: str, settings: QueueSettings | None = None) -> None:
        rules.check_queue_name(name)
        settings = rules.check_settings(settings or QueueSettings())
        attributes = rules.settings_to_attributes(settings)
        if settings.redrive is not None:
            policy = attributes["RedrivePolicy"]
            placeholder = rules.queue_arn(settings.redrive.dead_letter_queue)
            attributes["RedrivePolicy"] = policy.replace(placeholder, await self._arn(settings.redrive.dead_letter_queue))
        with self._errors("CreateQueue", name):
            self._urls[name] = (await self.client.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]

    async def settings(self, name: str) -> QueueSettings:
        url = await self._url(name)
        with self._errors("GetQueueAttributes", name):
            response = await self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        known = {"VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds",
                 "MaximumMessageSize", "RedrivePolicy"}
        return rules.settings_from_attributes({k: v for k, v in response["Attributes"].items() if k in known})

    async def list_queues(self, prefix: str = "") -> list[str]:
        names: list[str] = []
        with self._errors("ListQueues"):
            paginator = self.client.get_paginator("list_queues")
            async for page in paginator.paginate(QueueNamePrefix=prefix):
                names.extend(url.rsplit("/", 1)[-1] for url in page.get("QueueUrls", ()))
        return sorted(names)

    async def send(self, queue: str, message: OutgoingMessage) -> SentMessage:
        rules.check_message(message)
        url = await self._url(queue)
        kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": message.body}
        if message.delay_seconds is not None:
            kwargs["DelaySeconds"] = message.delay_seconds
        if message.attributes:
            kwargs["MessageAttributes"] = _attributes_out(message.attributes)
        with self._errors("SendMessage", queue):
            response = await self.client.send_message(**kwargs)
        return SentMessage(message.id, response["MessageId"], response["MD5OfMessageBody"],
                           response.get("MD5OfMessageAttributes"))

    async def send_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> SendBatchResult:
        rules.check_send_batch(messages)
        url = await self._url(queue)
        failed: list[BatchEntryFailure] = []
        entries = []
        for message in messages:
            try:
                rules.check_message(message)
            except QueueError as exc:
                failed.append(BatchEntryFailure(message.id, exc.code, exc.message, exc.sender_fault))
                continue
            entry: dict[str, Any] = {"Id": message.id, "MessageBody": message.body}
            if message.delay_seconds is not None:
                entry["DelaySeconds"] = message.delay_seconds
            if message.attributes:
                entry["MessageAttributes"] = _attributes_out(message.attributes)
            entries.append(entry)
        sent: list[SentMessage] = []
        if entries:
            with self._errors("SendMessageBatch", queue):
                response = await self.client.send_message_batch(QueueUrl=url, Entries=entries)
            sent = [SentMessage(e["Id"], e["MessageId"], e["MD5OfMessageBody"], e.get("MD5OfMessageAttributes"))
                    for e in response.get("Successful", ())]
            failed += [BatchEntryFailure(e["Id"], e["Code"], e.get("Message", ""), e.get("SenderFault", True))
                       for e in response.get("Failed", ())]
        order = {m.id: i for i, m in enumerate(messages)}
        return SendBatchResult(tuple(sorted(sent, key=lambda s: order[s.id])),
                               tuple(sorted(failed, key=lambda f: order.get(f.id, 0))))

    async def receive(self, queue: str, max_messages: int = 1, *, visibility_timeout: int | None = None,
                      wait_seconds: int | None = None) -> list[ReceivedMessage]:
        rules.check_max_messages(max_messages)
        kwargs: dict[str, Any] = {"QueueUrl": await self._url(queue), "MaxNumberOfMessages": max_messages,
                                  "MessageSystemAttributeNames": ["All"], "MessageAttributeNames": ["All"]}
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = rules.check_visibility(visibility_timeout)
        if wait_seconds is not None:
            kwargs["WaitTimeSeconds"] = rules.check_wait_seconds(wait_seconds)
        with self._errors("ReceiveMessage", queue):
            response = await self.client.receive_message(**kwargs)
        out = []
        for m in response.get("Messages", ()):
            system = m.get("Attributes", {})
            first = system.get("ApproximateFirstReceiveTimestamp")
            source = system.get("DeadLetterQueueSourceArn")
            out.append(ReceivedMessage(
                message_id=m["MessageId"], receipt_handle=m["ReceiptHandle"], body=m["Body"],
                md5_of_body=m["MD5OfBody"], receive_count=int(system.get("ApproximateReceiveCount", 1)),
                sent_at=int(system.get("SentTimestamp", 0)) / 1000, first_received_at=int(first) / 1000 if first else None,
                attributes=_attributes_in(m.get("MessageAttributes")), md5_of_attributes=m.get("MD5OfMessageAttributes"),
                dead_letter_source=rules.queue_name_of_arn(source) if source else None,
            ))
        return out

    async def delete(self, queue: str, receipt_handle: str) -> None:
        url = await self._url(queue)
        with self._errors("DeleteMessage", queue):
            await self.client.delete_message(QueueUrl=url, ReceiptHandle=receipt_handle)

    async def change_visibility(self, queue: str, receipt_handle: str, visibility_timeout: int) -> None:
        rules.check_visibility(visibility_timeout)
        url = await self._url(queue)
        with self._errors("ChangeMessageVisibility", queue):
            await self.client.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt_handle,
                                                        VisibilityTimeout=visibility_timeout)

    async def purge(self, queue: str) -> None:
        url = await self._url(queue)
        with self._errors("PurgeQueue", queue):
            await self.client.purge_queue(QueueUrl=url)

    async def counts(self, queue: str) -> QueueCounts:
        url = await self._url(queue)
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        with self._errors("GetQueueAttributes", queue):
            attributes = (await self.client.get_queue_attributes(QueueUrl=url, AttributeNames=names))["Attributes"]
        return QueueCounts(*(int(attributes.get(n, 0)) for n in names))

    async def peek(self, queue: str, limit: int = 100) -> list[ReceivedMessage]:
        seen: dict[str, ReceivedMessage] = {}
        while len(seen) < limit:
            batch = await self.receive(queue, min(10, limit - len(seen)), visibility_timeout=_PEEK_VISIBILITY)
            fresh = [m for m in batch if m.message_id not in seen]
            if not fresh:
                break
            for m in fresh:
                seen[m.message_id] = m
        for m in seen.values():
            await self.change_visibility(queue, m.receipt_handle, 0)
        return sorted(seen.values(), key=lambda m: m.sent_at)

    async def dead_letter_sources(self, queue: str) -> list[str]:
        url = await self._url(queue)
        names: list[str] = []
        with self._errors("ListDeadLetterSourceQueues", queue):
            paginator = self.client.get_paginator("list_dead_letter_source_queues")
            async for page in paginator.paginate(QueueUrl=url):
                names.extend(u.rsplit("/", 1)[-1] for u in page.get("queueUrls", ()))
        return sorted(names)

    async def move_messages(self, source: str, destination: str | None = None) -> int:
        sources = await self.dead_letter_sources(source)
        if destination is None and not sources:
            raise QueueError("InvalidParameterValue", f"{source!r} is not the dead-letter queue of any queue: "
                             "name a destination queue")
        moved = 0
        kept: set[str] = set()
        while True:
            batch = await self.receive(source, 10, visibility_timeout=60)
            if not batch or all(m.message_id in kept for m in batch):
                return moved
            for m in batch:
                # A DLQ fed by one queue tells where each message goes even where SQS does not say.
                target = destination or m.dead_letter_source or (sources[0] if len(sources) == 1 else None)
                if target is None:  # no known source queue: the message stays in the DLQ
                    kept.add(m.message_id)
                    await self.change_visibility(source, m.receipt_handle, 0)
                    continue
                await self.send(target, OutgoingMessage(m.body, attributes=m.attributes))
                await self.delete(source, m.receipt_handle)
                moved += 1

