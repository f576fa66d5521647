"""The CandidateStore contract: idempotent batched upserts and ranked queries, on every backend."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime

import pytest

from ceap_engine.errors import InputError
from ceap_engine.ports import CandidateRecord, CandidateStore, PutResult
from ceap_engine.storage.candidates import record_consumed


def candidate(
    customer: str,
    subject: str,
    score: float | None = None,
    channels: tuple[str, ...] = ("email",),
    *,
    program: str = "p-1",
    marketplace: str = "US",
    data: dict | None = None,
) -> CandidateRecord:
    return CandidateRecord(
        customer_id=customer,
        program_id=program,
        marketplace=marketplace,
        subject_type="ORDER",
        subject_id=subject,
        score=score,
        channels=frozenset(channels),
        data=data if data is not None else {"customerId": customer, "subject": {"type": "ORDER", "id": subject}},
    )


def keys(records: list[CandidateRecord]) -> list[tuple[str, str]]:
    return [(r.pk, r.sk) for r in records]


def test_every_backend_is_a_candidate_store(candidate_store: CandidateStore) -> None:
    assert isinstance(candidate_store, CandidateStore)


async def test_get_returns_the_stored_record(candidate_store: CandidateStore) -> None:
    record = candidate(
        "c-1",
        "o-1",
        0.75,
        ("email", "push"),
        data={"customerId": "c-1", "scores": {"m-1": {"value": 0.75}}, "attributes": {"orderValue": 42.5}},
    )

    result = await candidate_store.put_batch([record])

    assert result == PutResult(stored=(("CUSTOMER#c-1#PROGRAM#p-1#MARKETPLACE#US", "SUBJECT#ORDER#o-1"),))
    assert await candidate_store.get(record.pk, record.sk) == record


async def test_get_of_absent_record_is_none(candidate_store: CandidateStore) -> None:
    assert await candidate_store.get("CUSTOMER#nobody#PROGRAM#p-1#MARKETPLACE#US", "SUBJECT#ORDER#o-1") is None


async def test_get_many_reads_more_than_a_batch_in_the_order_asked(candidate_store: CandidateStore) -> None:
    batch = [candidate(f"c-{n:03}", f"o-{n}", float(n) if n % 3 else None, () if n % 5 == 0 else ("email",))
             for n in range(250)]
    assert (await candidate_store.put_batch(batch)).failed == ()
    asked = keys(batch)
    random.Random(7).shuffle(asked)

    read = await candidate_store.get_many(asked)  # type: ignore[attr-defined]

    assert read == [await candidate_store.get(*key) for key in asked]
    by_key = {(r.pk, r.sk): r for r in batch}
    assert read == [by_key[key] for key in asked]


async def test_get_many_gives_none_for_missing_keys_and_repeats_duplicates(candidate_store: CandidateStore) -> None:
    first, second = candidate("c-1", "o-1", 0.5), candidate("c-2", "o-2", None, ())
    await candidate_store.put_batch([first, second])
    missing = ("CUSTOMER#nobody#PROGRAM#p-1#MARKETPLACE#US", "SUBJECT#ORDER#o-1")
    asked = [first.key, missing, first.key, second.key, missing, first.key]

    read = await candidate_store.get_many(asked)  # type: ignore[attr-defined]

    assert read == [first, None, first, second, None, first]
    assert await candidate_store.get_many([]) == []  # type: ignore[attr-defined]
    assert await candidate_store.get_many([missing] * 3) == [None, None, None]  # type: ignore[attr-defined]


async def test_get_many_of_150_duplicates_of_one_key_and_others(candidate_store: CandidateStore) -> None:
    batch = [candidate(f"c-{n}", f"o-{n}", float(n)) for n in range(120)]
    await candidate_store.put_batch(batch)
    asked = [batch[0].key] * 150 + keys(batch)

    read = await candidate_store.get_many(asked)  # type: ignore[attr-defined]

    assert read == [batch[0]] * 150 + batch


def consumed_as(customer: str, attributes: object) -> CandidateRecord:
    return candidate(customer, "o-1", 0.5, data={"customerId": customer, "attributes": attributes})


async def test_consumed_many_reads_the_consumed_flag_as_record_consumed_does(candidate_store: CandidateStore) -> None:
    records = [
        consumed_as("c-true", {"orderIds": ["o-1"], "consumed": True, "consumedChannel": "push"}),
        consumed_as("c-false", {"consumed": False}),
        consumed_as("c-absent", {"orderValue": 1.5}),
        consumed_as("c-string", {"consumed": "true"}),
        consumed_as("c-one", {"consumed": 1}),
        consumed_as("c-null", {"consumed": None}),
        consumed_as("c-list", [{"consumed": True}]),
        consumed_as("c-scalar", True),
        candidate("c-none", "o-1", data={"customerId": "c-none", "consumed": True}),  # not under attributes
        consumed_as("c-nested", {"x": {"consumed": True}, "consumed": True}),
    ]
    assert (await candidate_store.put_batch(records)).failed == ()
    missing = ("CUSTOMER#nobody#PROGRAM#p-1#MARKETPLACE#US", "SUBJECT#ORDER#o-1")
    asked = [*keys(records), missing, records[0].key]

    flags = await candidate_store.consumed_many(asked)  # type: ignore[attr-defined]

    assert flags == [True, False, False, False, False, False, False, False, False, True, False, True]
    assert flags == [record_consumed(r) for r in await candidate_store.get_many(asked)]  # type: ignore[attr-defined]
    assert await candidate_store.consumed_many([]) == []  # type: ignore[attr-defined]


async def test_consumed_many_reads_more_than_a_batch_and_sees_writes(candidate_store: CandidateStore) -> None:
    batch = [consumed_as(f"c-{n:03}", {"consumed": n % 7 == 0}) for n in range(450)]
    assert (await candidate_store.put_batch(batch)).failed == ()
    asked = keys(batch)
    random.Random(3).shuffle(asked)
    by_key = {r.key: r.data["attributes"]["consumed"] for r in batch}  # type: ignore[index]

    assert await candidate_store.consumed_many(asked) == [by_key[key] for key in asked]  # type: ignore[attr-defined]

    now_consumed = consumed_as("c-001", {"consumed": True})
    await candidate_store.put_batch([now_consumed])
    await candidate_store.delete(*batch[0].key)
    assert await candidate_store.consumed_many([batch[0].key, now_consumed.key]) == [False, True]  # type: ignore[attr-defined]


async def test_consumed_many_answers_a_writers_consumed_word_as_its_document(candidate_store: CandidateStore) -> None:
    # A writer that knows the flag (the stages' candidates) says it beside the document: same answers.
    from dataclasses import replace

    batch = [consumed_as(f"c-{n}", {"consumed": n % 2 == 0}) for n in range(4)]
    told = [replace(r, consumed=record_consumed(r)) for r in batch]
    assert (await candidate_store.put_batch(told)).failed == ()

    assert await candidate_store.consumed_many(keys(told)) == [True, False, True, False]  # type: ignore[attr-defined]
    # Written again without the word, from a document that says otherwise: the document's new flag.
    await candidate_store.put_batch([consumed_as("c-0", {"consumed": False}), consumed_as("c-1", {"consumed": True})])
    assert await candidate_store.consumed_many(keys(told)) == [False, True, True, False]  # type: ignore[attr-defined]


async def test_a_record_reads_back_as_its_text_parsed_only_when_its_data_is_read(candidate_store: CandidateStore) -> None:
    from ceap_engine.ports import document_text

    written = candidate("c-1", "o-1", 0.5, data={"customerId": "c-1", "metadata": {"version": 3}, "n": [1, 2.5]})
    await candidate_store.put_batch([written])
    [many] = await candidate_store.get_many([written.key])  # type: ignore[attr-defined]
    for read in (await candidate_store.get(*written.key), many):
        assert read is not None and json.loads(document_text(read) or "null") == written.data
        assert read.version == 3 and document_text(read) is not None  # the version alone: still unparsed
        assert read.data == written.data and document_text(read) is None  # read, so parsed


async def test_a_record_read_changed_in_place_and_written_back_keeps_the_change(candidate_store: CandidateStore) -> None:
    # A record read back holds its document unparsed; once a caller reads and changes it, what is
    # written is the changed document (and the consumed flag it now says), not the text it was read as.
    await candidate_store.put_batch([consumed_as("c-1", {"consumed": False})])
    read = await candidate_store.get(*consumed_as("c-1", {}).key)
    assert read is not None
    read.data["attributes"]["consumed"] = True  # type: ignore[index]
    read.data["note"] = "changed"  # type: ignore[index]
    await candidate_store.put_batch([read])

    again = await candidate_store.get(*read.key)
    assert again is not None and again.data["note"] == "changed" and again.data["attributes"] == {"consumed": True}
    assert await candidate_store.consumed_many([read.key]) == [True]  # type: ignore[attr-defined]
    untouched = await candidate_store.get(*read.key)
    await candidate_store.put_batch([untouched])  # written back unread: the same document
    assert (await candidate_store.get(*read.key)).data == again.data  # type: ignore[union-attr]


async def test_get_many_sees_every_write_and_delete(candidate_store: CandidateStore) -> None:
    old, gone = candidate("c-1", "o-1", 0.2), candidate("c-2", "o-2", 0.3)
    await candidate_store.put_batch([old, gone])
    new = candidate("c-1", "o-1", 0.9, ("push",), data={"customerId": "c-1", "v": 2})

    await candidate_store.put_batch([new])
    await candidate_store.delete(*gone.key)

    assert await candidate_store.get_many([old.key, gone.key]) == [new, None]  # type: ignore[attr-defined]


async def test_put_batch_of_nothing_stores_nothing(candidate_store: CandidateStore) -> None:
    assert await candidate_store.put_batch([]) == PutResult()
    assert await candidate_store.query("p-1") == []


async def test_the_same_batch_twice_leaves_the_same_records(candidate_store: CandidateStore) -> None:
    batch = [candidate(f"c-{n}", f"o-{n}", n / 10, ("email",) if n % 2 else ("push",)) for n in range(30)]

    first = await candidate_store.put_batch(batch)
    after_first = await candidate_store.query("p-1")
    second = await candidate_store.put_batch(batch)
    after_second = await candidate_store.query("p-1")

    assert first == second
    assert len(first.stored) == 30 and first.failed == ()
    assert after_second == after_first
    assert len(after_second) == 30


async def test_an_upsert_replaces_the_record(candidate_store: CandidateStore) -> None:
    await candidate_store.put_batch([candidate("c-1", "o-1", 0.2, ("email",)), candidate("c-2", "o-2", 0.5)])
    updated = candidate("c-1", "o-1", 0.9, ("push",), data={"customerId": "c-1", "version": 2})

    await candidate_store.put_batch([updated])

    assert await candidate_store.get(updated.pk, updated.sk) == updated
    assert [r.customer_id for r in await candidate_store.query("p-1")] == ["c-1", "c-2"]
    assert await candidate_store.query("p-1", "email") == [candidate("c-2", "o-2", 0.5)]


async def test_batches_larger_than_25_are_stored_whole_in_input_order(candidate_store: CandidateStore) -> None:
    batch = [candidate(f"c-{n:03}", f"o-{n}", float(n)) for n in range(83)]

    result = await candidate_store.put_batch(batch)

    assert result.stored == tuple(keys(batch))
    assert result.failed == ()
    stored = await candidate_store.query("p-1")
    assert len(stored) == 83
    assert stored == sorted(batch, key=lambda r: -r.score)


async def test_of_two_records_with_one_key_in_a_call_the_later_wins(candidate_store: CandidateStore) -> None:
    early = candidate("c-1", "o-1", 0.1, data={"v": 1})
    late = candidate("c-1", "o-1", 0.2, data={"v": 2})

    result = await candidate_store.put_batch([early, late])

    assert result.stored == (early_key := (early.pk, early.sk), early_key)
    assert await candidate_store.get(*early_key) == late
    assert await candidate_store.query("p-1") == [late]


async def test_query_orders_by_score_highest_first_and_unscored_last(candidate_store: CandidateStore) -> None:
    scores = [0.5, None, 0.99, -1.0, 0.0, None, 0.25, 1e-9, 7.0]
    batch = [candidate(f"c-{n}", f"o-{n}", score) for n, score in enumerate(scores)]
    random.Random(3).shuffle(batch)

    await candidate_store.put_batch(batch)
    ranked = await candidate_store.query("p-1")

    assert [r.score for r in ranked] == [7.0, 0.99, 0.5, 0.25, 1e-9, 0.0, -1.0, None, None]


async def test_query_orders_equal_scores_by_key_and_a_limit_cuts_the_same_order(candidate_store: CandidateStore) -> None:
    # Six customers at one score, two at a higher, two unscored: ties by (pk, sk), within and across marketplaces.
    batch = [candidate(f"c-{n}", f"o-{n % 3}", 0.5, marketplace=("US", "DE")[n % 2]) for n in range(6)]
    batch += [candidate("c-9", "o-1", 0.75), candidate("c-8", "o-1", 0.75), candidate("c-7", "o-2", None),
              candidate("c-7", "o-1", None)]
    random.Random(5).shuffle(batch)
    for record in batch:  # one call each, in no key order: a store that kept write order would show it
        await candidate_store.put_batch([record])

    def order(records: list[CandidateRecord]) -> list[tuple[float | None, str, str]]:
        return [(r.score, r.pk, r.sk) for r in records]

    def expected(records: list[CandidateRecord]) -> list[tuple[float | None, str, str]]:
        return sorted(order(records), key=lambda row: (row[0] is None, -(row[0] or 0.0), row[1], row[2]))

    assert order(await candidate_store.query("p-1")) == expected(batch)
    assert order(await candidate_store.query("p-1", limit=4)) == expected(batch)[:4]  # the limit ends inside the tie
    us = [r for r in batch if r.marketplace == "US"]
    assert order(await candidate_store.query("p-1", marketplace="US", limit=3)) == expected(us)[:3]


async def test_query_returns_only_the_program_asked_for(candidate_store: CandidateStore) -> None:
    await candidate_store.put_batch(
        [
            candidate("c-1", "o-1", 0.9, program="p-1"),
            candidate("c-1", "o-1", 0.8, program="p-2"),
            candidate("c-2", "o-2", 0.7, program="p-1"),
        ]
    )

    in_p1 = await candidate_store.query("p-1")
    assert [(r.program_id, r.customer_id) for r in in_p1] == [("p-1", "c-1"), ("p-1", "c-2")]
    assert [(r.program_id, r.customer_id) for r in await candidate_store.query("p-2")] == [("p-2", "c-1")]
    assert await candidate_store.query("p-3") == []


async def test_query_filters_by_marketplace(candidate_store: CandidateStore) -> None:
    await candidate_store.put_batch(
        [
            candidate("c-1", "o-1", 0.9, marketplace="US"),
            candidate("c-2", "o-2", 0.8, marketplace="DE"),
            candidate("c-3", "o-3", 0.7, marketplace="US"),
        ]
    )

    assert [r.customer_id for r in await candidate_store.query("p-1", marketplace="US")] == ["c-1", "c-3"]
    assert [r.customer_id for r in await candidate_store.query("p-1", marketplace="DE")] == ["c-2"]
    assert await candidate_store.query("p-1", marketplace="JP") == []


async def test_query_filters_by_channel_eligibility(candidate_store: CandidateStore) -> None:
    await candidate_store.put_batch(
        [
            candidate("c-1", "o-1", 0.9, ("email", "push")),
            candidate("c-2", "o-2", 0.8, ("push",)),
            candidate("c-3", "o-3", 0.7, ("email",)),
            candidate("c-4", "o-4", 0.6, ()),
            candidate("c-5", "o-5", 0.5, ("emails", "in-app")),
        ]
    )

    assert [r.customer_id for r in await candidate_store.query("p-1", "email")] == ["c-1", "c-3"]
    assert [r.customer_id for r in await candidate_store.query("p-1", "push")] == ["c-1", "c-2"]
    assert [r.customer_id for r in await candidate_store.query("p-1", "in-app")] == ["c-5"]
    assert await candidate_store.query("p-1", "sms") == []
    assert len(await candidate_store.query("p-1")) == 5


async def test_query_combines_channel_marketplace_and_limit(candidate_store: CandidateStore) -> None:
    batch = [
        candidate(f"c-{n}", f"o-{n}", n / 100, ("email",) if n % 3 else ("push",), marketplace="US" if n % 2 else "DE")
        for n in range(100)
    ]
    await candidate_store.put_batch(batch)

    best = await candidate_store.query("p-1", "email", marketplace="US", limit=5)

    expected = sorted(
        (r for r in batch if "email" in r.channels and r.marketplace == "US"), key=lambda r: -r.score
    )[:5]
    assert best == expected
    assert [r.score for r in best] == [0.97, 0.95, 0.91, 0.89, 0.85]  # 0.99 and 0.93: push only


async def test_query_limit_caps_the_count_and_keeps_the_best(candidate_store: CandidateStore) -> None:
    await candidate_store.put_batch([candidate(f"c-{n}", f"o-{n}", float(n)) for n in range(40)])

    assert [r.score for r in await candidate_store.query("p-1", limit=3)] == [39.0, 38.0, 37.0]
    assert len(await candidate_store.query("p-1", limit=1)) == 1
    assert len(await candidate_store.query("p-1", limit=1000)) == 40


@pytest.mark.parametrize("limit", [0, -1, True, 2.5, "10"])
async def test_query_refuses_a_limit_that_is_not_a_positive_whole_number(
    candidate_store: CandidateStore, limit: object
) -> None:
    with pytest.raises(InputError, match="limit must be a whole number >= 1"):
        await candidate_store.query("p-1", limit=limit)  # type: ignore[arg-type]


async def test_delete_removes_the_record_from_get_and_query(candidate_store: CandidateStore) -> None:
    kept, gone = candidate("c-1", "o-1", 0.9), candidate("c-2", "o-2", 0.8)
    await candidate_store.put_batch([kept, gone])

    await candidate_store.delete(gone.pk, gone.sk)

    assert await candidate_store.get(gone.pk, gone.sk) is None
    assert await candidate_store.query("p-1") == [kept]


async def test_delete_of_absent_record_is_not_an_error(candidate_store: CandidateStore) -> None:
    record = candidate("c-1", "o-1", 0.9)
    await candidate_store.delete(record.pk, record.sk)
    await candidate_store.put_batch([record])
    await candidate_store.delete(record.pk, record.sk)
    await candidate_store.delete(record.pk, record.sk)

    assert await candidate_store.query("p-1") == []


async def test_records_that_cannot_be_stored_are_reported_and_the_rest_stored(
    candidate_store: CandidateStore,
) -> None:
    good = [candidate(f"c-{n}", f"o-{n}", n / 10) for n in range(30)]
    not_json = candidate("c-bad", "o-set", 0.5, data={"tags": {"a", "b"}})
    a_datetime = candidate("c-bad", "o-time", 0.5, data={"eventDate": datetime(2024, 5, 1, tzinfo=UTC)})
    nan_in_data = candidate("c-bad", "o-nan", 0.5, data={"orderValue": math.nan})
    nan_score = candidate("c-bad", "o-nan-score", math.nan)
    no_customer = candidate("", "o-empty", 0.5)
    batch = good[:10] + [not_json, a_datetime] + good[10:20] + [nan_in_data, nan_score, no_customer] + good[20:]

    result = await candidate_store.put_batch(batch)

    assert result.stored == tuple(keys(good))
    failed = dict(result.failed)
    assert list(failed) == keys([not_json, a_datetime, nan_in_data, nan_score, no_customer])
    assert "data is not JSON-serialisable" in failed[(not_json.pk, not_json.sk)]
    assert "set" in failed[(not_json.pk, not_json.sk)]
    assert "datetime" in failed[(a_datetime.pk, a_datetime.sk)]
    assert "data is not JSON-serialisable" in failed[(nan_in_data.pk, nan_in_data.sk)]
    assert "score must be a finite number" in failed[(nan_score.pk, nan_score.sk)]
    assert "customer_id must be a non-empty" in failed[(no_customer.pk, no_customer.sk)]
    for record in [not_json, a_datetime, nan_in_data, nan_score, no_customer]:
        assert await candidate_store.get(record.pk, record.sk) is None
    assert len(await candidate_store.query("p-1")) == 30


async def test_a_failed_record_reports_every_problem_it_has(candidate_store: CandidateStore) -> None:
    record = CandidateRecord("", "p-1", "US", "ORDER", "", score=math.inf, channels=frozenset({""}), data={"x": {1, 2}})

    result = await candidate_store.put_batch([record])

    assert result.stored == ()
    [(key, reason)] = result.failed
    assert key == (record.pk, record.sk)
    for problem in ["customer_id", "subject_id", "score", "channels", "data"]:
        assert problem in reason


async def test_a_failing_update_keeps_the_stored_version(candidate_store: CandidateStore) -> None:
    stored = candidate("c-1", "o-1", 0.5, data={"v": 1})
    await candidate_store.put_batch([stored])

    result = await candidate_store.put_batch([candidate("c-1", "o-1", 0.9, data={"v": object()})])

    assert result.stored == () and len(result.failed) == 1
    assert await candidate_store.get(stored.pk, stored.sk) == stored


async def test_stored_data_cannot_be_changed_through_the_callers_objects(candidate_store: CandidateStore) -> None:
    data = {"attributes": {"channelEligibility": {"email": True}}, "rejectionHistory": []}
    record = candidate("c-1", "o-1", 0.5, data=data)
    await candidate_store.put_batch([record])

    data["attributes"]["channelEligibility"]["email"] = False
    read = await candidate_store.get(record.pk, record.sk)
    assert read is not None
    read.data["rejectionHistory"].append({"filterId": "f"})  # type: ignore[index]

    again = await candidate_store.get(record.pk, record.sk)
    assert again is not None
    assert again.data == {"attributes": {"channelEligibility": {"email": True}}, "rejectionHistory": []}
    assert (await candidate_store.query("p-1"))[0].data == again.data


async def test_values_come_back_normalised_as_json_would(candidate_store: CandidateStore) -> None:
    record = CandidateRecord(
        "c-1",
        "p-1",
        "US",
        "ORDER",
        "o-1",
        score=3,
        channels={"push", "email"},  # type: ignore[arg-type]
        data={"pair": (1, 2), "nested": {"ok": None}},
    )

    await candidate_store.put_batch([record])
    read = await candidate_store.get(record.pk, record.sk)

    assert read is not None
    assert read.score == 3.0 and isinstance(read.score, float)
    assert read.channels == frozenset({"email", "push"}) and isinstance(read.channels, frozenset)
    assert read.data == {"pair": [1, 2], "nested": {"ok": None}}


async def test_unicode_ids_and_data_round_trip(candidate_store: CandidateStore) -> None:
    record = CandidateRecord(
        "kunde-ä", "programm-ü", "DE", "PRODUKT", "商品-1", score=0.1, channels=frozenset({"e-mail"}),
        data={"title": "Größe 🚀", "note": "日本"},
    )

    await candidate_store.put_batch([record])

    assert await candidate_store.get(record.pk, record.sk) == record
    assert await candidate_store.query("programm-ü", "e-mail", marketplace="DE") == [record]


async def test_a_query_sees_every_write_and_delete_made_after_an_earlier_query(
    candidate_store: CandidateStore,
) -> None:
    first, second, third = candidate("c-1", "o-1", 0.5), candidate("c-2", "o-2", 0.4), candidate("c-3", "o-3", 0.9)
    await candidate_store.put_batch([first, second])
    assert await candidate_store.query("p-1") == [first, second]

    await candidate_store.put_batch([third, candidate("c-2", "o-2", 0.1, ("push",))])
    assert [r.customer_id for r in await candidate_store.query("p-1")] == ["c-3", "c-1", "c-2"]
    assert [r.customer_id for r in await candidate_store.query("p-1", "email")] == ["c-3", "c-1"]

    await candidate_store.delete(third.pk, third.sk)
    assert [r.customer_id for r in await candidate_store.query("p-1", limit=2)] == ["c-1", "c-2"]


# -- optimistic concurrency: conditional writes on metadata.version -----------


def versioned(customer: str, subject: str, version: int, **data: object) -> CandidateRecord:
    return candidate(customer, subject, 0.5, data={"metadata": {"version": version}, **data})


async def test_a_record_reads_back_with_the_version_of_its_data(candidate_store: CandidateStore) -> None:
    await candidate_store.put_batch([versioned("c-1", "o-1", 3), candidate("c-2", "o-2")])

    assert (await candidate_store.get(*versioned("c-1", "o-1", 3).key)).version == 3
    assert (await candidate_store.get(*candidate("c-2", "o-2").key)).version == 0


async def test_a_conditional_create_writes_only_when_there_is_no_record(candidate_store: CandidateStore) -> None:
    first, second = versioned("c-1", "o-1", 1, by="first"), versioned("c-1", "o-1", 1, by="second")

    created = await candidate_store.put_batch([first], expected_versions={first.key: None})
    refused = await candidate_store.put_batch([second], expected_versions={second.key: None})

    assert created == PutResult(stored=(first.key,))
    assert refused.stored == () and refused.failed == ()
    assert [key for key, _ in refused.conflicts] == [first.key]
    assert (await candidate_store.get(*first.key)).data["by"] == "first"


async def test_a_conditional_update_needs_the_version_it_read(candidate_store: CandidateStore) -> None:
    await candidate_store.put_batch([versioned("c-1", "o-1", 1)])
    mine, theirs = versioned("c-1", "o-1", 2, by="mine"), versioned("c-1", "o-1", 2, by="theirs")

    won = await candidate_store.put_batch([theirs], expected_versions={theirs.key: 1})
    lost = await candidate_store.put_batch([mine], expected_versions={mine.key: 1})

    assert won.stored == (theirs.key,)
    assert lost.conflicts == ((mine.key, 2),)
    assert await candidate_store.get(*mine.key) == theirs


async def test_a_conflict_in_a_batch_leaves_the_other_records_written(candidate_store: CandidateStore) -> None:
    await candidate_store.put_batch([versioned(f"c-{n}", f"o-{n}", 1) for n in range(30)])
    batch = [versioned(f"c-{n}", f"o-{n}", 2) for n in range(30)]
    expected = {r.key: (7 if n == 13 else 1) for n, r in enumerate(batch)}

    result = await candidate_store.put_batch(batch, expected_versions=expected)

    assert result.stored == tuple(r.key for n, r in enumerate(batch) if n != 13)
    assert result.conflicts == ((batch[13].key, 1),)
    assert (await candidate_store.get(*batch[13].key)).version == 1
    assert (await candidate_store.get(*batch[12].key)).version == 2


async def test_conditional_and_plain_writes_mix_in_one_call(candidate_store: CandidateStore) -> None:
    plain, conditional = versioned("c-1", "o-1", 1), versioned("c-2", "o-2", 1)

    result = await candidate_store.put_batch([plain, conditional], expected_versions={conditional.key: None})

    assert result.stored == (plain.key, conditional.key)


async def test_one_failed_condition_among_new_updated_and_plain_writes_holds_back_only_its_record(
    candidate_store: CandidateStore,
) -> None:
    await candidate_store.put_batch([versioned("c-1", "o-1", 1), versioned("c-2", "o-2", 1)])
    new, updated, lost, plain = (versioned("c-0", "o-0", 1), versioned("c-1", "o-1", 2, by="me"),
                                 versioned("c-2", "o-2", 2, by="me"), versioned("c-3", "o-3", 1))

    result = await candidate_store.put_batch(
        [new, updated, lost, plain], expected_versions={new.key: None, updated.key: 1, lost.key: 5}
    )

    assert set(result.stored) == {new.key, updated.key, plain.key}
    assert result.conflicts == ((lost.key, 1),)
    assert [(await candidate_store.get(*r.key)).version for r in (new, updated, lost, plain)] == [1, 2, 1, 1]


async def test_a_conditional_rewrite_of_what_is_stored_is_stored_and_no_conflict(
    candidate_store: CandidateStore,
) -> None:
    same = versioned("c-1", "o-1", 1)
    await candidate_store.put_batch([same])

    result = await candidate_store.put_batch([same, versioned("c-2", "o-2", 1)],
                                             expected_versions={same.key: 1, versioned("c-2", "o-2", 1).key: None})

    assert result == PutResult(stored=(same.key, versioned("c-2", "o-2", 1).key))
    assert await candidate_store.get(*same.key) == same


async def test_write_candidates_retries_a_lost_race_by_reading_again(candidate_store: CandidateStore) -> None:
    from ceap_engine.storage.candidates import write_candidates

    await candidate_store.put_batch([versioned("c-1", "o-1", 1, count=0)])
    racing = True

    def bump(key: tuple[str, str], stored: CandidateRecord | None) -> CandidateRecord:
        nonlocal racing
        assert stored is not None
        if racing:  # another writer commits between our read and our write, once
            racing = False
            other = versioned("c-1", "o-1", stored.version + 1, count=stored.data["count"] + 1)
            import asyncio

            asyncio.get_running_loop().create_task(candidate_store.put_batch([other]))
        return versioned("c-1", "o-1", stored.version + 1, count=stored.data["count"] + 1)

    key = versioned("c-1", "o-1", 1).key
    # The racing write is scheduled, not awaited: _Yielding lets it land before our conditional write.
    done = await write_candidates(_Yielding(candidate_store), [key], bump)

    assert done.failed == {}
    assert done.conflicts == 1
    stored = await candidate_store.get(*key)
    assert (stored.version, stored.data["count"]) == (3, 2)


class _Yielding:
    """A store that lets scheduled tasks run before each write (so a racing write lands first)."""

    def __init__(self, inner: CandidateStore) -> None:
        self.inner = inner

    async def get(self, pk: str, sk: str) -> CandidateRecord | None:
        return await self.inner.get(pk, sk)

    async def put_batch(self, records, *, expected_versions=None):  # type: ignore[no-untyped-def]
        import asyncio

        for _ in range(20):
            await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0.01)
        return await self.inner.put_batch(records, expected_versions=expected_versions)


async def test_write_candidates_writes_nothing_when_nothing_changed(candidate_store: CandidateStore) -> None:
    from ceap_engine.storage.candidates import write_candidates

    record = versioned("c-1", "o-1", 4)
    await candidate_store.put_batch([record])

    done = await write_candidates(candidate_store, [record.key], lambda key, stored: None)

    assert done.unchanged == {record.key}
    assert done.current == {record.key: record}


# -- DynamoDB's limits, on every backend ---------------------------------------


@pytest.mark.parametrize(
    ("make", "path", "words"),
    [
        (lambda: CandidateRecord("c" * 2100, "p-1", "US", "ORDER", "o-1"), "/pk", "2048-byte partition key limit"),
        (lambda: CandidateRecord("c-1", "p-1", "US", "ORDER", "o" * 1100), "/sk", "1024-byte sort key limit"),
        (lambda: CandidateRecord("c" * 600, "p-1", "US", "ORDER", "o" * 600), "/rank", "sort key limit"),
        (lambda: CandidateRecord("c-1", "p-1", "US", "ORDER", "o-1", data={"blob": "x" * 410_000}), "/data",
         "400 KB item limit"),
        (lambda: CandidateRecord("c-1", "p-1", "US", "ORDER", "o-1", score=1e-200), "/score", "number range"),
    ],
    ids=["partition-key", "sort-key", "ranking-key", "item-size", "number-range"],
)
async def test_every_backend_refuses_what_dynamodb_refuses_with_one_reason(
    candidate_store: CandidateStore, make, path: str, words: str
) -> None:
    from ceap_engine.storage.candidates import encode_candidate_data

    bad = make()
    with pytest.raises(InputError) as caught:
        encode_candidate_data(bad)
    assert [p.path for p in caught.value.problems] == [path]

    result = await candidate_store.put_batch([bad, candidate("c-9", "o-9")])

    assert result.stored == (candidate("c-9", "o-9").key,)
    assert result.failed == ((bad.key, "; ".join(p.message for p in caught.value.problems)),)
    assert words in result.failed[0][1]
    assert await candidate_store.get(*bad.key) is None


async def test_a_record_just_under_the_limits_is_stored(candidate_store: CandidateStore) -> None:
    from ceap_engine.storage.candidates import MAX_ITEM_BYTES, item_size

    base = CandidateRecord("c-1", "p-1", "US", "ORDER", "o-1", data={"blob": ""})
    room = MAX_ITEM_BYTES - item_size(base, '{"blob":""}')
    record = CandidateRecord("c-1", "p-1", "US", "ORDER", "o-1", data={"blob": "x" * room})

    assert (await candidate_store.put_batch([record])).stored == (record.key,)
    assert (await candidate_store.get(*record.key)).data["blob"] == "x" * room


# -- engagement claims: one execution issues each engagement -----------------------


async def test_the_first_execution_to_claim_an_engagement_holds_it(candidate_store: CandidateStore) -> None:
    first = await candidate_store.claim_engagements(["e-1", "e-2"], "monday")
    second = await candidate_store.claim_engagements(["e-2", "e-3", "e-1"], "tuesday")

    assert first == {"e-1": "monday", "e-2": "monday"}
    assert second == {"e-2": "monday", "e-3": "tuesday", "e-1": "monday"}


async def test_claiming_again_what_one_holds_returns_oneself(candidate_store: CandidateStore) -> None:
    await candidate_store.claim_engagements(["e-1"], "monday")

    assert await candidate_store.claim_engagements(["e-1", "e-1"], "monday") == {"e-1": "monday"}


async def test_concurrent_claims_of_one_engagement_have_one_winner(candidate_store: CandidateStore) -> None:
    import asyncio

    keys = [f"e-{n}" for n in range(40)]
    results = await asyncio.gather(*(candidate_store.claim_engagements(keys, f"run-{r}") for r in range(5)))

    for key in keys:
        assert len({result[key] for result in results}) == 1


async def test_claims_are_not_candidates(candidate_store: CandidateStore) -> None:
    await candidate_store.put_batch([candidate("c-1", "o-1", 0.5)])
    await candidate_store.claim_engagements([f"e-{n}" for n in range(30)], "monday")

    assert [r.customer_id for r in await candidate_store.query("p-1")] == ["c-1"]


async def test_a_claim_of_nothing_is_empty_and_a_bad_claim_is_refused(candidate_store: CandidateStore) -> None:
    assert await candidate_store.claim_engagements([], "monday") == {}
    with pytest.raises(InputError):
        await candidate_store.claim_engagements([""], "monday")
    with pytest.raises(InputError):
        await candidate_store.claim_engagements(["e-1"], "")
