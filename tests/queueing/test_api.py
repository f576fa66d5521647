"""The SQS API handler: called directly, and through a small HTTP server with boto3 (the wire format)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest

from ceap_engine.queueing.api import SqsApi, response_headers
from ceap_engine.runtime.clock import RealClock, VirtualClock
from ceap_engine.storage.memory_queue import MemoryQueues


@pytest.fixture
def api() -> SqsApi:
    return SqsApi(MemoryQueues(clock=VirtualClock(start=1_800_000_000)), endpoint="http://127.0.0.1:9")


async def test_an_unknown_queue_answers_queue_does_not_exist_with_the_query_code(api: SqsApi) -> None:
    status, document = await api.handle("AmazonSQS.GetQueueUrl", {"QueueName": "absent"})

    assert status == 400
    assert document["__type"] == "com.amazonaws.sqs#QueueDoesNotExist"
    assert "absent" in document["message"]
    assert response_headers(status, document)["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"


async def test_an_unknown_action_and_a_missing_parameter_are_refused(api: SqsApi) -> None:
    status, document = await api.handle("SendMessageToSpace", {})
    assert (status, document["__type"]) == (400, "com.amazonaws.sqs#UnknownOperation")

    await api.handle("CreateQueue", {"QueueName": "q"})
    status, document = await api.handle("SendMessage", {"QueueUrl": api.url("q")})
    assert (status, document["__type"]) == (400, "com.amazonaws.sqs#MissingParameter")


async def test_a_10_minute_visibility_timeout_passes_on_the_virtual_clock(api: SqsApi) -> None:
    await api.handle("CreateQueue", {"QueueName": "q", "Attributes": {"VisibilityTimeout": "600"}})
    await api.handle("SendMessage", {"QueueUrl": api.url("q"), "MessageBody": "hello"})
    _, first = await api.handle("ReceiveMessage", {"QueueUrl": api.url("q")})
    assert len(first["Messages"]) == 1
    _, hidden = await api.handle("ReceiveMessage", {"QueueUrl": api.url("q")})
    assert hidden == {}

    api.queues.clock.advance(600)  # type: ignore[attr-defined]

    _, again = await api.handle("ReceiveMessage", {"QueueUrl": api.url("q"), "AttributeNames": ["All"]})
    assert again["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "2"


# -- on the wire ----------------------------------------------------------------------------


@pytest.fixture
def endpoint() -> Iterator[str]:
    """The handler behind a small aiohttp server on 127.0.0.1 (its own thread and loop), real time."""
    from aiohttp import web

    ready = threading.Event()
    state: dict = {}

    async def serve() -> None:
        api = SqsApi(MemoryQueues(clock=RealClock()))

        async def handle(request: web.Request) -> web.Response:
            raw = await request.read()
            status, document = await api.handle(request.headers.get("X-Amz-Target", ""),
                                                json.loads(raw) if raw else {})
            return web.Response(status=status, body=json.dumps(document).encode(),
                                headers=response_headers(status, document))

        app = web.Application()
        app.router.add_post("/", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        api.endpoint = f"http://127.0.0.1:{port}"
        state["url"], state["stop"] = api.endpoint, asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await runner.cleanup()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the test server did not start"
    try:
        yield state["url"]
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(10)


@pytest.fixture
def sqs(endpoint: str):
    import boto3

    return boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")


def test_boto3_runs_the_seed_commands_against_the_endpoint(sqs) -> None:
    dlq = sqs.create_queue(QueueName="demo-dlq", Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="demo-queue", Attributes={
        "VisibilityTimeout": "600",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}),
    })["QueueUrl"]
    assert sqs.get_queue_url(QueueName="demo-queue")["QueueUrl"] == queue
    assert sqs.list_queues(QueueNamePrefix="demo")["QueueUrls"] == [dlq, queue]

    sent = sqs.send_message(QueueUrl=queue, MessageBody='{"programId": "p1"}', MessageAttributes={
        "kind": {"DataType": "String", "StringValue": "order"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
    })
    batch = sqs.send_message_batch(QueueUrl=queue, Entries=[
        {"Id": "a", "MessageBody": "second"}, {"Id": "b", "MessageBody": "late", "DelaySeconds": 901}])
    assert [e["Id"] for e in batch["Successful"]] == ["a"]
    assert [(e["Id"], e["Code"]) for e in batch["Failed"]] == [("b", "InvalidParameterValue")]

    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                              MessageSystemAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in got] == ['{"programId": "p1"}', "second"]
    first = got[0]
    assert first["MessageId"] == sent["MessageId"] and first["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert first["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\xff"
    assert first["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert first["Attributes"]["ApproximateReceiveCount"] == "1"
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "2"
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}

    changed = sqs.change_message_visibility_batch(QueueUrl=queue, Entries=[
        {"Id": "x", "ReceiptHandle": first["ReceiptHandle"], "VisibilityTimeout": 0}])
    assert [e["Id"] for e in changed["Successful"]] == ["x"]
    deleted = sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": "y", "ReceiptHandle": got[1]["ReceiptHandle"]}])
    assert [e["Id"] for e in deleted["Successful"]] == ["y"]

    # The poison path by hand: two more receives (3 in all), the 4th moves it to the DLQ.
    for _ in range(2):
        [m] = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0)["Messages"]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [queue]
    [dead] = sqs.receive_message(QueueUrl=dlq, VisibilityTimeout=0,
                                 MessageSystemAttributeNames=["DeadLetterQueueSourceArn"])["Messages"]
    assert dead["Attributes"]["DeadLetterQueueSourceArn"].endswith(":demo-queue")

    assert sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    [back] = sqs.receive_message(QueueUrl=queue)["Messages"]
    assert back["Body"] == '{"programId": "p1"}'
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=back["ReceiptHandle"])
    sqs.purge_queue(QueueUrl=dlq)


def test_boto3_sees_aws_error_codes_and_modeled_exceptions(sqs) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as caught:
        sqs.get_queue_url(QueueName="absent")
    assert caught.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"

    queue = sqs.create_queue(QueueName="limits")["QueueUrl"]
    with pytest.raises(ClientError) as too_many:
        sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=11)
    assert too_many.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": f"e{i}", "MessageBody": "x"} for i in range(11)])
    with pytest.raises(ClientError) as invalid:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle="garbage")
    assert invalid.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"
