"""The Queues contract: SQS standard-queue semantics that every backend keeps.

Each test runs against the in-memory queues, the SQLite queues (both on a virtual
clock: a visibility wait costs nothing) and SQS on the session's moto server (real
time: the few waits there are one second). What only virtual time can show in a
test's time budget (retention, a 10-minute visibility timeout) runs on the local
backends alone, named as such.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.local.queue import SQLiteQueues
from ceap_engine.errors import QueueError, QueueNotFound
from ceap_engine.ports import (
    MessageAttribute,
    OutgoingMessage,
    QueueCounts,
    Queues,
    QueueSettings,
    RedrivePolicy,
)
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.storage.memory_queue import MemoryQueues
from ceap_engine.storage.queue import md5_of_attributes, md5_of_body

START = 1_800_000_000.0


@dataclass
class Backend:
    queues: Queues
    pass_time: Callable[[float], Awaitable[None]]
    time: Callable[[], float]
    prefix: str

    def name(self, short: str) -> str:
        return f"{self.prefix}{short}"


def _virtual(queues_of: Callable[[VirtualClock], Queues]) -> Backend:
    clock = VirtualClock(start=START)

    async def pass_time(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    return Backend(queues_of(clock), pass_time, clock.time, "")


@pytest.fixture
def memory_queues() -> Backend:
    return _virtual(lambda clock: MemoryQueues(clock=clock))


@pytest.fixture
def sqlite_queues(tmp_path: Path) -> Backend:
    backend = _virtual(lambda clock: SQLiteQueues(tmp_path / "queues.sqlite3", clock=clock))
    yield backend
    backend.queues.close()  # type: ignore[attr-defined]


@pytest.fixture
async def sqs_queues(moto_endpoint: str) -> AsyncIterator[Backend]:
    """SQS on moto; every queue name of the test gets a fresh prefix (the server is shared by the session)."""
    import time

    from adapters.aws.queue import SqsQueues
    from adapters.aws.session import AwsClients, AwsSettings

    prefix = f"t{uuid.uuid4().hex[:10]}-"
    async with AwsClients(AwsSettings(endpoint_url=moto_endpoint)) as aws:
        client = await aws.client("sqs")
        try:
            yield Backend(SqsQueues(client), asyncio.sleep, time.time, prefix)
        finally:
            for url in (await client.list_queues(QueueNamePrefix=prefix)).get("QueueUrls", ()):
                await client.delete_queue(QueueUrl=url)


LOCAL = [pytest.param("memory_queues", id="memory"), pytest.param("sqlite_queues", id="sqlite")]
ALL = [*LOCAL, pytest.param("sqs_queues", id="sqs", marks=pytest.mark.moto)]


@pytest.fixture(params=ALL)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(request.param)


@pytest.fixture(params=LOCAL)
def local_backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(request.param)


async def _queue(backend: Backend, short: str = "jobs", **settings: object) -> str:
    name = backend.name(short)
    await backend.queues.create_queue(name, QueueSettings(**settings))  # type: ignore[arg-type]
    return name


async def _with_dlq(backend: Backend, max_receive_count: int = 3, **settings: object) -> tuple[str, str]:
    dlq = await _queue(backend, "jobs-dlq", retention_seconds=14 * 24 * 3600)
    source = await _queue(backend, "jobs", redrive=RedrivePolicy(dlq, max_receive_count), **settings)
    return source, dlq


# -- basics ------------------------------------------------------------------------------


def test_every_backend_is_a_queues(backend: Backend) -> None:
    assert isinstance(backend.queues, Queues)


async def test_a_sent_message_is_received_with_its_body_digests_and_attributes(backend: Backend) -> None:
    queue = await _queue(backend)
    attributes = {
        "kind": MessageAttribute("String", "order"),
        "priority": MessageAttribute("Number", "3"),
        "blob": MessageAttribute("Binary", binary_value=b"\x00\x01"),
    }
    sent = await backend.queues.send(queue, OutgoingMessage('{"programId": "p1"}', attributes=attributes))

    [got] = await backend.queues.receive(queue)

    assert got.message_id == sent.message_id
    assert got.body == '{"programId": "p1"}'
    assert got.md5_of_body == sent.md5_of_body == md5_of_body('{"programId": "p1"}')
    assert dict(got.attributes) == attributes
    assert got.md5_of_attributes == sent.md5_of_attributes == md5_of_attributes(attributes)
    assert got.receive_count == 1
    assert got.receipt_handle


async def test_an_unknown_queue_is_queue_not_found(backend: Backend) -> None:
    with pytest.raises(QueueNotFound) as caught:
        await backend.queues.send(backend.name("absent"), OutgoingMessage("x"))
    assert caught.value.code == "QueueDoesNotExist"
    with pytest.raises(QueueNotFound):
        await backend.queues.receive(backend.name("absent"))


async def test_create_queue_again_is_a_no_op_but_other_settings_are_refused(backend: Backend) -> None:
    queue = await _queue(backend, visibility_timeout=600)
    await backend.queues.create_queue(queue, QueueSettings(visibility_timeout=600))

    with pytest.raises(QueueError) as caught:
        await backend.queues.create_queue(queue, QueueSettings(visibility_timeout=5))

    assert caught.value.code == "QueueNameExists"
    assert (await backend.queues.settings(queue)).visibility_timeout == 600
    assert queue in await backend.queues.list_queues(backend.name(""))


async def test_settings_read_back_as_created(backend: Backend) -> None:
    source, dlq = await _with_dlq(backend, visibility_timeout=600, delay_seconds=2, receive_wait_seconds=5)

    settings = await backend.queues.settings(source)

    assert (settings.visibility_timeout, settings.delay_seconds, settings.receive_wait_seconds) == (600, 2, 5)
    assert settings.redrive == RedrivePolicy(dlq, 3)
    assert (await backend.queues.settings(dlq)).retention_seconds == 14 * 24 * 3600


# -- visibility and at-least-once -----------------------------------------------------------


async def test_a_received_message_is_hidden_until_its_visibility_timeout_ends(backend: Backend) -> None:
    queue = await _queue(backend)
    await backend.queues.send(queue, OutgoingMessage("once"))
    [first] = await backend.queues.receive(queue, visibility_timeout=1)

    assert await backend.queues.receive(queue) == []
    assert await backend.queues.counts(queue) == QueueCounts(visible=0, in_flight=1, delayed=0)

    await backend.pass_time(1.2)
    [again] = await backend.queues.receive(queue)

    assert again.message_id == first.message_id
    assert again.receive_count == 2
    assert again.receipt_handle != first.receipt_handle


async def test_deleting_with_the_receipt_handle_removes_the_message(backend: Backend) -> None:
    queue = await _queue(backend)
    await backend.queues.send(queue, OutgoingMessage("done"))
    [got] = await backend.queues.receive(queue, visibility_timeout=0)
    [got] = await backend.queues.receive(queue)

    await backend.queues.delete(queue, got.receipt_handle)
    await backend.queues.delete(queue, got.receipt_handle)  # deleting twice is no error

    assert await backend.queues.counts(queue) == QueueCounts()
    assert await backend.queues.receive(queue, visibility_timeout=0) == []


async def test_change_visibility_to_zero_returns_the_message_at_once(backend: Backend) -> None:
    queue = await _queue(backend, visibility_timeout=600)
    await backend.queues.send(queue, OutgoingMessage("retry me"))
    [got] = await backend.queues.receive(queue)

    await backend.queues.change_visibility(queue, got.receipt_handle, 0)

    [again] = await backend.queues.receive(queue)
    assert again.body == "retry me" and again.receive_count == 2


async def test_a_garbage_receipt_handle_is_invalid(backend: Backend) -> None:
    queue = await _queue(backend)
    await backend.queues.send(queue, OutgoingMessage("x"))
    for call in (lambda: backend.queues.delete(queue, "not-a-handle"),
                 lambda: backend.queues.change_visibility(queue, "not-a-handle", 5)):
        with pytest.raises(QueueError) as caught:
            await call()
        assert caught.value.code == "ReceiptHandleIsInvalid"


async def test_receive_returns_up_to_max_messages_distinct_messages(backend: Backend) -> None:
    queue = await _queue(backend)
    result = await backend.queues.send_batch(queue, [OutgoingMessage(f"m{i}", id=f"e{i}") for i in range(10)])
    assert not result.failed

    got = []
    for _ in range(10):
        got += await backend.queues.receive(queue, 10)
        if len(got) == 10:
            break

    assert sorted(m.body for m in got) == sorted(f"m{i}" for i in range(10))
    assert len({m.message_id for m in got}) == 10


# -- redrive to the DLQ ---------------------------------------------------------------------


async def test_after_max_receive_count_receives_the_message_moves_to_the_dlq(backend: Backend) -> None:
    source, dlq = await _with_dlq(backend)
    sent = await backend.queues.send(source, OutgoingMessage("poison"))
    counts = []
    for _ in range(3):
        [got] = await backend.queues.receive(source, visibility_timeout=0)
        counts.append(got.receive_count)

    assert await backend.queues.receive(source, visibility_timeout=0) == []  # the 4th receive moves it

    assert counts == [1, 2, 3]
    [dead] = await backend.queues.receive(dlq)
    assert (dead.message_id, dead.body) == (sent.message_id, "poison")
    assert await backend.queues.dead_letter_sources(dlq) == [source]


async def test_a_dead_lettered_message_keeps_its_original_enqueue_time(local_backend: Backend) -> None:
    backend = local_backend
    dlq = await _queue(backend, "jobs-dlq", retention_seconds=120)
    source = await _queue(backend, "jobs", visibility_timeout=600, redrive=RedrivePolicy(dlq, 1))
    await backend.queues.send(source, OutgoingMessage("old"))
    sent_at = backend.time()
    await backend.queues.receive(source)
    await backend.pass_time(600)  # a 10-minute visibility timeout, for free
    assert await backend.queues.receive(source) == []

    [dead] = await backend.queues.peek(dlq)
    assert dead.sent_at == sent_at

    # The DLQ keeps messages 120 s - counted from the first send, 600 s ago: it is gone.
    assert await backend.queues.receive(dlq) == []
    assert await backend.queues.counts(dlq) == QueueCounts()


async def test_moving_messages_out_of_the_dlq_sends_them_back_to_their_source(backend: Backend) -> None:
    source, dlq = await _with_dlq(backend, max_receive_count=1)
    await backend.queues.send(source, OutgoingMessage("fixed now"))
    await backend.queues.receive(source, visibility_timeout=0)
    await backend.queues.receive(source, visibility_timeout=0)  # moves it to the DLQ
    assert [m.body for m in await backend.queues.peek(dlq)] == ["fixed now"]

    moved = await backend.queues.move_messages(dlq)

    assert moved == 1
    [back] = await backend.queues.receive(source)
    assert back.body == "fixed now" and back.receive_count == 1
    assert await backend.queues.receive(dlq, visibility_timeout=0) == []


async def test_peek_leaves_messages_to_be_received(backend: Backend) -> None:
    queue = await _queue(backend)
    await backend.queues.send(queue, OutgoingMessage("a"))
    await backend.queues.send(queue, OutgoingMessage("b"))

    assert sorted(m.body for m in await backend.queues.peek(queue)) == ["a", "b"]
    got = await backend.queues.receive(queue, 10)
    got += await backend.queues.receive(queue, 10)
    assert sorted(m.body for m in got) == ["a", "b"]


# -- delay, long polling, retention, purge ------------------------------------------------


async def test_a_delayed_message_is_received_after_its_delay(backend: Backend) -> None:
    queue = await _queue(backend)
    await backend.queues.send(queue, OutgoingMessage("later", delay_seconds=1))

    assert await backend.queues.receive(queue) == []
    assert (await backend.queues.counts(queue)).delayed == 1

    await backend.pass_time(1.2)
    [got] = await backend.queues.receive(queue)
    assert got.body == "later"


async def test_a_long_poll_on_an_empty_queue_waits_its_wait_time(backend: Backend) -> None:
    queue = await _queue(backend)
    before = backend.time()

    assert await backend.queues.receive(queue, wait_seconds=1) == []
    assert backend.time() - before >= 0.9


async def test_a_long_poll_returns_a_message_sent_while_it_waits(backend: Backend) -> None:
    queue = await _queue(backend)
    poll = asyncio.ensure_future(backend.queues.receive(queue, wait_seconds=5))
    await asyncio.sleep(0)
    await backend.queues.send(queue, OutgoingMessage("arrived"))

    assert [m.body for m in await poll] == ["arrived"]


async def test_a_long_poll_returns_a_delayed_message_when_it_becomes_due(local_backend: Backend) -> None:
    queue = await _queue(local_backend)
    await local_backend.queues.send(queue, OutgoingMessage("due in 15 s", delay_seconds=15))
    before = local_backend.time()

    [got] = await local_backend.queues.receive(queue, wait_seconds=20)

    assert got.body == "due in 15 s"
    assert 15 <= local_backend.time() - before < 16


async def test_messages_past_retention_are_gone(local_backend: Backend) -> None:
    queue = await _queue(local_backend, retention_seconds=60)
    await local_backend.queues.send(queue, OutgoingMessage("stale"))

    await local_backend.pass_time(61)

    assert await local_backend.queues.receive(queue) == []
    assert await local_backend.queues.counts(queue) == QueueCounts()


async def test_purge_removes_every_message(backend: Backend) -> None:
    queue = await _queue(backend)
    await backend.queues.send_batch(queue, [OutgoingMessage("a", id="a"), OutgoingMessage("b", id="b")])

    await backend.queues.purge(queue)

    assert await backend.queues.receive(queue, 10) == []


# -- SQS's rules and limits -----------------------------------------------------------------


async def test_a_batch_entry_that_breaks_a_rule_fails_alone(backend: Backend) -> None:
    queue = await _queue(backend)

    result = await backend.queues.send_batch(queue, [
        OutgoingMessage("fine", id="ok"),
        OutgoingMessage("late", id="late", delay_seconds=901),
    ])

    assert [s.id for s in result.successful] == ["ok"]
    assert [(f.id, f.code, f.sender_fault) for f in result.failed] == [("late", "InvalidParameterValue", True)]


@pytest.mark.parametrize(("entries", "code"), [
    ([], "EmptyBatchRequest"),
    ([OutgoingMessage("x", id=f"e{i}") for i in range(11)], "TooManyEntriesInBatchRequest"),
    ([OutgoingMessage("x", id="same"), OutgoingMessage("y", id="same")], "BatchEntryIdsNotDistinct"),
    ([OutgoingMessage("x", id="bad id!")], "InvalidBatchEntryId"),
    ([OutgoingMessage("x" * 200_000, id="a"), OutgoingMessage("y" * 100_000, id="b")], "BatchRequestTooLong"),
])
async def test_a_batch_that_breaks_a_rule_is_refused_whole(backend: Backend, entries: list, code: str) -> None:
    queue = await _queue(backend)

    with pytest.raises(QueueError) as caught:
        await backend.queues.send_batch(queue, entries)

    assert caught.value.code == code
    assert await backend.queues.receive(queue, 10) == []


@pytest.mark.parametrize(("message", "code"), [
    (OutgoingMessage("x" * 262_145), "InvalidParameterValue"),
    (OutgoingMessage("x" * 262_000, attributes={"a": MessageAttribute("String", "y" * 200)}), "InvalidParameterValue"),
    (OutgoingMessage("nul \x00 byte"), "InvalidMessageContents"),
    (OutgoingMessage("x", delay_seconds=901), "InvalidParameterValue"),
    (OutgoingMessage("x", attributes={"n": MessageAttribute("Number", "twelve")}), "InvalidParameterValue"),
    (OutgoingMessage("x", attributes={"AWS.trace": MessageAttribute("String", "v")}), "InvalidParameterValue"),
    (OutgoingMessage("x", attributes={f"a{i}": MessageAttribute("String", "v") for i in range(11)}),
     "InvalidParameterValue"),
])
async def test_a_message_sqs_refuses_is_refused(backend: Backend, message: OutgoingMessage, code: str) -> None:
    queue = await _queue(backend)

    with pytest.raises(QueueError) as caught:
        await backend.queues.send(queue, message)

    assert caught.value.code == code
    assert await backend.queues.receive(queue) == []


async def test_a_message_of_exactly_256_kib_is_accepted(backend: Backend) -> None:
    queue = await _queue(backend)
    await backend.queues.send(queue, OutgoingMessage("x" * 262_144))
    [got] = await backend.queues.receive(queue)
    assert len(got.body) == 262_144


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"max_messages": 11}, "MaxNumberOfMessages"),
    ({"max_messages": 0}, "MaxNumberOfMessages"),
    ({"wait_seconds": 21}, "WaitTimeSeconds"),
    ({"visibility_timeout": 43_201}, "VisibilityTimeout"),
])
async def test_receive_arguments_out_of_range_are_refused(backend: Backend, kwargs: dict, parameter: str) -> None:
    queue = await _queue(backend)

    with pytest.raises(QueueError) as caught:
        await backend.queues.receive(queue, **kwargs)

    assert caught.value.code == "InvalidParameterValue"
    assert parameter in str(caught.value)


async def test_queue_settings_out_of_range_are_refused(backend: Backend) -> None:
    with pytest.raises(QueueError) as caught:
        await backend.queues.create_queue(backend.name("slow"), QueueSettings(visibility_timeout=43_201))
    assert caught.value.code == "InvalidAttributeValue"
    with pytest.raises(QueueError):
        await backend.queues.create_queue("bad name!", QueueSettings())
