"""The rules every CandidateStore applies (ceap_engine.storage.candidates), apart from any backend."""

from __future__ import annotations

import math

import pytest

from ceap_engine._json import strict_json
from ceap_engine.errors import InputError
from ceap_engine.ports import CandidateRecord
from ceap_engine.storage.candidates import (
    MAX_ITEM_BYTES,
    MAX_PARTITION_KEY_BYTES,
    MAX_SORT_KEY_BYTES,
    document_version,
    encode_candidate_data,
    item_size,
)

# CandidateRecord.pk is "CUSTOMER#{c}#PROGRAM#{p}#MARKETPLACE#{m}", .sk "SUBJECT#{type}#{id}".
PK_FIXED = len("CUSTOMER##PROGRAM##MARKETPLACE#")
SK_FIXED = len("SUBJECT##")


def record(customer="c-1", program="p-1", marketplace="US", subject_type="ORDER", subject_id="o-1",
           score=0.5, channels=frozenset({"email"}), data=None) -> CandidateRecord:
    return CandidateRecord(customer, program, marketplace, subject_type, subject_id, score=score,
                           channels=channels, data={"x": 1} if data is None else data)


def item_of_size(size: int) -> CandidateRecord:
    """A record DynamoDB counts as exactly ``size`` bytes."""
    base = record(data={"blob": ""})
    room = size - item_size(base, strict_json(base.data))
    return record(data={"blob": "x" * room})


def outcome(r: CandidateRecord) -> tuple[str, object]:
    try:
        return "stored", encode_candidate_data(r)
    except InputError as error:
        return "refused", [(p.path, p.message) for p in error.problems]


# Records a Store part writes, and records at and just past every limit the check counts:
# the check must say the same of each whether its writer encoded the data or not.
CASES = {
    "plain": record(),
    "no score, no channels": record(score=None, channels=frozenset()),
    "pk at the limit": record(customer="c" * (MAX_PARTITION_KEY_BYTES - PK_FIXED - 5)),
    "pk one over": record(customer="c" * (MAX_PARTITION_KEY_BYTES - PK_FIXED - 4)),
    "sk at the limit": record(subject_id="o" * (MAX_SORT_KEY_BYTES - SK_FIXED - 5)),
    "sk one over": record(subject_id="o" * (MAX_SORT_KEY_BYTES - SK_FIXED - 4)),
    "ranking key at the limit": record(customer="c" * 500, subject_id="o" * (MAX_SORT_KEY_BYTES - 10 - PK_FIXED
                                                                             - 505 - SK_FIXED - 5)),
    "ranking key one over": record(customer="c" * 500, subject_id="o" * (MAX_SORT_KEY_BYTES - 10 - PK_FIXED
                                                                         - 505 - SK_FIXED - 4)),
    "item at the limit": item_of_size(MAX_ITEM_BYTES),
    "item one over": item_of_size(MAX_ITEM_BYTES + 1),
    "item at the limit, no score": record(score=None, data=item_of_size(MAX_ITEM_BYTES).data),
    "zero score": record(score=0.0),
    "negative zero score": record(score=-0.0),
    "smallest score": record(score=1e-130),
    "score too small": record(score=1e-131),
    "score too large": record(score=1e126),
    "largest score": record(score=-9.99e125),
    "NaN score": record(score=math.nan),
    "infinite score": record(score=-math.inf),
    "int score": record(score=3),
    "bool score": record(score=True),
    "non-ASCII ids": record(customer="kundé", subject_id="ö" * 400),
    "non-ASCII ids over the sort key limit": record(subject_id="ö" * 510),
    "lone surrogate id": record(customer="c\ud800"),
    "empty id": record(program=""),
    "non-string id": record(marketplace=7),  # type: ignore[arg-type]
    "channels as a set": record(channels={"email", "sms"}),  # type: ignore[arg-type]
    "channels as a string": record(channels="email"),  # type: ignore[arg-type]
    "empty channel name": record(channels=frozenset({"", "email"})),
    "non-ASCII channel": record(channels=frozenset({"ëmail"})),
    "non-ASCII data": record(data={"name": "Zoë"}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_data_its_writer_encoded_is_checked_as_data_the_store_encodes(case: CandidateRecord) -> None:
    encoded = CandidateRecord(case.customer_id, case.program_id, case.marketplace, case.subject_type,
                              case.subject_id, score=case.score, channels=case.channels, data=case.data,
                              data_json=strict_json(dict(case.data)))

    assert outcome(encoded) == outcome(case)


@pytest.mark.parametrize(
    ("name", "paths"),
    [("pk at the limit", ["/rank"]), ("pk one over", ["/pk"]), ("sk at the limit", ["/rank"]), ("sk one over", ["/sk"]),
     ("ranking key at the limit", []), ("ranking key one over", ["/rank"]), ("item at the limit", []),
     ("item one over", ["/data"]), ("item at the limit, no score", []), ("smallest score", []),
     ("score too small", ["/score"]), ("score too large", ["/score"]), ("largest score", [])],
)
def test_the_limit_cases_are_on_both_sides_of_their_limits(name: str, paths: list[str]) -> None:
    # Otherwise the comparison above would not test the counting. (A key at its own limit
    # makes the ranking key too long.)
    kind, result = outcome(CASES[name])
    assert (kind, [path for path, _ in result] if kind == "refused" else []) == ("refused" if paths else "stored", paths)


@pytest.mark.parametrize(
    "data",
    [{"metadata": {"version": 3}}, {"metadata": {"version": True}}, {"metadata": {"version": 2.0}},
     {"metadata": {"version": "4"}}, {"metadata": None}, {"metadata": [1]}, {}, {"a": 1, "metadata": {"version": 2**70}},
     {"metadata": {"createdAt": "2025-03-01T00:00:00Z", "version": -1}, "scores": {"m": {"value": 0.5}}}],
)
def test_document_version_reads_the_version_as_the_record_does(data: dict) -> None:
    assert document_version(strict_json(data)) == record(data=data).version
    assert document_version(strict_json(data).encode()) == record(data=data).version
