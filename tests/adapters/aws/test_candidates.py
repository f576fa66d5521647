"""DynamoDBCandidateStore: what the contract suite cannot show - throttling, batching, the ranking key."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from adapters.aws.candidates import (
    BATCH_SIZE,
    DynamoDBCandidateStore,
    backoff_delays,
    candidate_table_schema,
    rank_key,
)
from adapters.aws.errors import AwsStorageError
from adapters.aws.session import AwsClients, AwsSettings
from ceap_engine.errors import StorageError
from ceap_engine.ports import CandidateRecord, PutResult


def record(n: int, score: float | None = 0.5) -> CandidateRecord:
    return CandidateRecord(f"c-{n}", "p-1", "US", "ORDER", f"o-{n}", score=score, data={"n": n})


class ThrottlingDynamoDB:
    """A DynamoDB client double: BatchWriteItem leaves items unprocessed as scripted."""

    def __init__(self, unprocessed_per_call: list[int]) -> None:
        self.unprocessed_per_call = list(unprocessed_per_call)
        self.calls: list[list[str]] = []
        self.table: dict[tuple[str, str], dict[str, Any]] = {}

    async def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        [(table, requests)] = RequestItems.items()
        self.calls.append([r["PutRequest"]["Item"]["pk"]["S"] for r in requests])
        left = self.unprocessed_per_call.pop(0) if self.unprocessed_per_call else 0
        written, unprocessed = requests[: len(requests) - left], requests[len(requests) - left :]
        for request in written:
            item = request["PutRequest"]["Item"]
            self.table[(item["pk"]["S"], item["sk"]["S"])] = item
        return {"UnprocessedItems": {table: unprocessed} if unprocessed else {}}


class RecordingSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_unprocessed_items_are_sent_again_with_doubling_waits_until_written() -> None:
    client, sleep = ThrottlingDynamoDB([10, 4, 1]), RecordingSleep()
    store = DynamoDBCandidateStore(client, "t", sleep=sleep, base_delay_seconds=0.05)
    batch = [record(n) for n in range(20)]

    result = await store.put_batch(batch)

    assert result == PutResult(stored=tuple((r.pk, r.sk) for r in batch))
    assert [len(call) for call in client.calls] == [20, 10, 4, 1]
    assert sleep.waits == [0.05, 0.1, 0.2]
    assert len(client.table) == 20


async def test_items_still_unprocessed_after_the_last_attempt_are_reported_failed_not_dropped() -> None:
    client, sleep = ThrottlingDynamoDB([3, 3, 3]), RecordingSleep()
    store = DynamoDBCandidateStore(client, "t", sleep=sleep, max_attempts=3)
    batch = [record(n) for n in range(5)]

    result = await store.put_batch(batch)

    assert [key for key, _ in result.failed] == [(r.pk, r.sk) for r in batch[2:]]
    assert all("unprocessed 3 times" in reason for _, reason in result.failed)
    assert result.stored == tuple((r.pk, r.sk) for r in batch[:2])
    assert len(sleep.waits) == 2


async def test_writes_go_in_calls_of_at_most_25_items() -> None:
    client = ThrottlingDynamoDB([])
    store = DynamoDBCandidateStore(client, "t", sleep=RecordingSleep())

    await store.put_batch([record(n) for n in range(60)])

    assert [len(call) for call in client.calls] == [BATCH_SIZE, BATCH_SIZE, 10]


def test_backoff_doubles_and_is_capped() -> None:
    assert backoff_delays(6, 0.05, 1.0) == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert backoff_delays(0) == []


@pytest.mark.parametrize(
    ("better", "worse"),
    [
        (7.0, 0.99),
        (0.5, 0.25),
        (1e-9, 0.0),
        (0.0, -1e-9),
        (-1.0, -2.0),
        (-1e300, None),
        (1e300, 1e299),
    ],
)
def test_rank_key_sorts_higher_scores_first_and_unscored_last(better: float, worse: float | None) -> None:
    assert rank_key(better, "pk", "sk") < rank_key(worse, "pk", "sk")


def test_rank_key_breaks_ties_by_key_even_when_one_key_is_a_prefix_of_another() -> None:
    assert rank_key(0.5, "CUSTOMER#c", "SUBJECT#z") < rank_key(0.5, "CUSTOMER#c-1", "SUBJECT#a")
    assert rank_key(0.0, "a", "b") == rank_key(-0.0, "a", "b")


async def test_records_dynamodb_cannot_hold_are_failed_before_any_call() -> None:
    client = ThrottlingDynamoDB([])
    store = DynamoDBCandidateStore(client, "t", sleep=RecordingSleep())
    too_small = CandidateRecord("c-1", "p-1", "US", "ORDER", "o-1", score=1e-200)
    long_ids = CandidateRecord("c" * 600, "p-1", "US", "ORDER", "o" * 600)
    huge = CandidateRecord("c-3", "p-1", "US", "ORDER", "o-3", data={"blob": "x" * 500_000})

    result = await store.put_batch([too_small, long_ids, huge, record(4)])

    reasons = dict(result.failed)
    assert "number range" in reasons[(too_small.pk, too_small.sk)]
    assert "sort key limit" in reasons[(long_ids.pk, long_ids.sk)]
    assert "400 KB item limit" in reasons[(huge.pk, huge.sk)]
    assert result.stored == ((record(4).pk, record(4).sk),)


@pytest.fixture
async def dynamodb_table(moto_endpoint: str) -> Any:
    """(client, table name): a fresh candidate table on the session's moto server."""
    table = f"ceap-test-{uuid.uuid4().hex[:8]}"
    async with AwsClients(AwsSettings(endpoint_url=moto_endpoint)) as aws:
        client = await aws.client("dynamodb")
        await client.create_table(TableName=table, **candidate_table_schema())
        try:
            yield client, table
        finally:
            await client.delete_table(TableName=table)


@pytest.mark.moto
async def test_a_missing_table_is_a_storage_error_that_names_it(moto_endpoint: str) -> None:
    async with AwsClients(AwsSettings(endpoint_url=moto_endpoint)) as aws:
        store = DynamoDBCandidateStore(await aws.client("dynamodb"), "no-such-table")

        with pytest.raises(StorageError, match="no-such-table") as caught:
            await store.put_batch([record(1)])
        with pytest.raises(StorageError, match="DynamoDB Query"):
            await store.query("p-1")

    assert isinstance(caught.value, AwsStorageError)
    assert caught.value.code == "ResourceNotFoundException"
    assert isinstance(caught.value.__cause__, ClientError)


@pytest.mark.moto
async def test_a_query_with_filters_pages_through_the_index_until_the_limit(dynamodb_table: Any) -> None:
    store = DynamoDBCandidateStore(*dynamodb_table)
    # ~1.2 MB of candidates: more than one 1 MB Query page.
    batch = [
        CandidateRecord(f"c-{n}", "p-1", "US" if n % 2 else "DE", "ORDER", f"o-{n}", score=float(n),
                        channels=frozenset({"email"}), data={"pad": "x" * 4000})
        for n in range(300)
    ]
    assert not (await store.put_batch(batch)).failed

    best = await store.query("p-1", "email", marketplace="DE", limit=120)

    assert [r.score for r in best] == [float(n) for n in range(298, 58, -2)]


class ConditionalDynamoDB:
    """A DynamoDB client double for conditional PutItem: throttles as scripted, checks versions."""

    def __init__(self, throttles: int = 0) -> None:
        self.throttles = throttles
        self.calls = 0
        self.table: dict[tuple[str, str], dict[str, Any]] = {}

    async def put_item(self, **request: Any) -> dict[str, Any]:
        self.calls += 1
        if self.throttles:
            self.throttles -= 1
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              "PutItem")
        item = request["Item"]
        key = (item["pk"]["S"], item["sk"]["S"])
        old = self.table.get(key)
        condition = request["ConditionExpression"]
        if condition == "attribute_not_exists(pk)":
            ok = old is None
        else:
            ok = old is not None and old["version"]["N"] == request["ExpressionAttributeValues"][":expected"]["N"]
        if not ok:
            error: dict[str, Any] = {"Error": {"Code": "ConditionalCheckFailedException", "Message": "failed"}}
            if old is not None:
                error["Item"] = old
            raise ClientError(error, "PutItem")
        self.table[key] = item
        return {}

    async def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        for requests in RequestItems.values():
            for request in requests:
                item = request["PutRequest"]["Item"]
                self.table[(item["pk"]["S"], item["sk"]["S"])] = item
        return {}


def versioned(n: int, version: int) -> CandidateRecord:
    return CandidateRecord(f"c-{n}", "p-1", "US", "ORDER", f"o-{n}", data={"metadata": {"version": version}})


async def test_a_throttled_conditional_write_is_sent_again_with_the_same_backoff() -> None:
    client, sleep = ConditionalDynamoDB(throttles=2), RecordingSleep()
    store = DynamoDBCandidateStore(client, "t", sleep=sleep, base_delay_seconds=0.05)

    result = await store.put_batch([versioned(1, 1)], expected_versions={versioned(1, 1).key: None})

    assert result == PutResult(stored=(versioned(1, 1).key,))
    assert client.calls == 3 and sleep.waits == [0.05, 0.1]
    assert client.table[versioned(1, 1).key]["version"] == {"N": "1"}


async def test_a_conditional_write_throttled_to_the_end_is_failed_and_retryable() -> None:
    client = ConditionalDynamoDB(throttles=99)
    store = DynamoDBCandidateStore(client, "t", sleep=RecordingSleep(), max_attempts=3)

    result = await store.put_batch([versioned(1, 1)], expected_versions={versioned(1, 1).key: None})

    assert result.stored == ()
    assert result.retryable == (versioned(1, 1).key,)
    assert "throttled the conditional write 3 times" in result.failed[0][1]


async def test_a_lost_condition_is_a_conflict_with_the_version_found() -> None:
    client = ConditionalDynamoDB()
    store = DynamoDBCandidateStore(client, "t", sleep=RecordingSleep())
    await store.put_batch([versioned(1, 5)])

    result = await store.put_batch([versioned(1, 5)], expected_versions={versioned(1, 5).key: 4})

    assert result.conflicts == ((versioned(1, 5).key, 5),)
    assert result.stored == () and result.failed == ()


async def test_the_waits_go_through_the_injected_clock() -> None:
    from ceap_engine.runtime.clock import VirtualClock

    clock = VirtualClock(1_700_000_000)
    store = DynamoDBCandidateStore(ConditionalDynamoDB(throttles=1), "t", clock=clock, base_delay_seconds=30,
                                   max_delay_seconds=60)

    result = await store.put_batch([versioned(1, 1)], expected_versions={versioned(1, 1).key: None})

    assert result.stored == (versioned(1, 1).key,)
    assert clock.time() == 1_700_000_030


class UnprocessingDynamoDB:
    """Wraps a real client: the first ``unprocessed_per_call`` BatchGetItem answers hand back that many keys unread."""

    def __init__(self, client: Any, unprocessed_per_call: list[int]) -> None:
        self.client = client
        self.unprocessed_per_call = list(unprocessed_per_call)
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    async def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(RequestItems)
        [(table, asked)] = RequestItems.items()
        left = min(self.unprocessed_per_call.pop(0) if self.unprocessed_per_call else 0, len(asked["Keys"]))
        if not left:
            return await self.client.batch_get_item(RequestItems=RequestItems)
        read, unread = asked["Keys"][: len(asked["Keys"]) - left], asked["Keys"][len(asked["Keys"]) - left :]
        response = await self.client.batch_get_item(RequestItems={table: {**asked, "Keys": read}}) if read else {}
        return {"Responses": response.get("Responses", {table: []}),
                "UnprocessedKeys": {table: {**asked, "Keys": unread}}}


@pytest.mark.moto
async def test_get_many_asks_again_for_unprocessed_keys_with_jittered_doubling_waits(dynamodb_table: Any) -> None:
    client, table = dynamodb_table
    batch = [record(n) for n in range(40)]
    await DynamoDBCandidateStore(client, table).put_batch(batch)
    wrapped, sleep = UnprocessingDynamoDB(client, [30, 12, 1]), RecordingSleep()
    store = DynamoDBCandidateStore(wrapped, table, sleep=sleep, base_delay_seconds=0.05, jitter=lambda: 0.5)
    missing = ("CUSTOMER#nobody#PROGRAM#p-1#MARKETPLACE#US", "SUBJECT#ORDER#o-1")

    read = await store.get_many([r.key for r in batch] + [missing])

    assert read == batch + [None]
    assert [len(call[table]["Keys"]) for call in wrapped.calls] == [41, 30, 12, 1]
    assert all(call[table]["ConsistentRead"] is True for call in wrapped.calls)
    assert sleep.waits == pytest.approx([0.0375, 0.075, 0.15])  # each wait 1 - jitter/2 of the doubling one


@pytest.mark.moto
async def test_get_many_raises_a_storage_error_when_keys_stay_unprocessed(dynamodb_table: Any) -> None:
    client, table = dynamodb_table
    await DynamoDBCandidateStore(client, table).put_batch([record(1), record(2)])
    wrapped, sleep = UnprocessingDynamoDB(client, [1] * 10), RecordingSleep()
    store = DynamoDBCandidateStore(wrapped, table, sleep=sleep, max_attempts=4)

    with pytest.raises(AwsStorageError, match="left 1 keys unread") as caught:
        await store.get_many([record(1).key, record(2).key])

    assert caught.value.operation == "DynamoDB BatchGetItem"
    assert len(wrapped.calls) == 4 and len(sleep.waits) == 3
    assert all(0.025 <= wait <= delay for wait, delay in zip(sleep.waits, backoff_delays(3), strict=True))


@pytest.mark.moto
async def test_get_many_of_a_missing_table_is_a_storage_error_that_names_it(moto_endpoint: str) -> None:
    async with AwsClients(AwsSettings(endpoint_url=moto_endpoint)) as aws:
        store = DynamoDBCandidateStore(await aws.client("dynamodb"), "no-such-table")

        with pytest.raises(AwsStorageError, match="DynamoDB BatchGetItem.*no-such-table") as caught:
            await store.get_many([record(1).key])

    assert caught.value.code == "ResourceNotFoundException"


class CountingReads:
    """A BatchGetItem double that finds nothing and records how many calls are in flight at once."""

    def __init__(self, throttles: int = 0) -> None:
        self.throttles = throttles
        self.in_flight = self.most_in_flight = 0
        self.sizes: list[int] = []

    async def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        [(table, asked)] = RequestItems.items()
        keys = [(key["pk"]["S"], key["sk"]["S"]) for key in asked["Keys"]]
        assert len(set(keys)) == len(keys), "BatchGetItem refuses duplicate keys"
        self.sizes.append(len(keys))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)  # let the other reads start, if they may
        finally:
            self.in_flight -= 1
        if self.throttles:
            self.throttles -= 1
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                              "BatchGetItem")
        return {"Responses": {table: []}}


async def test_get_many_sends_at_most_100_distinct_keys_a_call_and_8_calls_at_once() -> None:
    client = CountingReads()
    store = DynamoDBCandidateStore(client, "t", sleep=RecordingSleep())
    asked = [record(n % 2000).key for n in range(2500)]

    assert await store.get_many(asked) == [None] * 2500

    assert client.sizes == [100] * 20
    assert client.most_in_flight == 8


async def test_a_throttled_batch_read_is_sent_again() -> None:
    client, sleep = CountingReads(throttles=2), RecordingSleep()
    store = DynamoDBCandidateStore(client, "t", sleep=sleep)

    assert await store.get_many([record(1).key]) == [None]
    assert client.sizes == [1, 1, 1] and len(sleep.waits) == 2
