"""The ObjectStore contract: S3 semantics that every backend keeps (see conftest for the backends)."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from ceap_engine.errors import InvalidKey, ObjectNotFound, StorageError
from ceap_engine.ports import ObjectStore
from ceap_engine.storage.objects import read_json, write_json

from .conftest import BUCKET, OTHER_BUCKET

KEY = "executions/e-1/ETL/output.json"


def test_every_backend_is_an_object_store(object_store: ObjectStore) -> None:
    assert isinstance(object_store, ObjectStore)


async def test_get_returns_what_put_stored(object_store: ObjectStore) -> None:
    await object_store.put(BUCKET, KEY, b'{"processedCount":3}', content_type="application/json")

    assert await object_store.get(BUCKET, KEY) == b'{"processedCount":3}'


async def test_get_of_absent_key_raises_object_not_found_naming_it(object_store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        await object_store.get(BUCKET, "executions/e-404/ETL/output.json")

    assert caught.value.bucket == BUCKET
    assert caught.value.key == "executions/e-404/ETL/output.json"
    assert str(caught.value) == f"no object at s3://{BUCKET}/executions/e-404/ETL/output.json"
    assert isinstance(caught.value, StorageError)
    assert isinstance(caught.value, KeyError)


async def test_get_of_a_prefix_of_stored_keys_is_not_found(object_store: ObjectStore) -> None:
    await object_store.put(BUCKET, "executions/e-1/ETL/output.json", b"{}")

    with pytest.raises(ObjectNotFound):
        await object_store.get(BUCKET, "executions/e-1")


async def test_put_overwrites_last_write_wins(object_store: ObjectStore) -> None:
    await object_store.put(BUCKET, KEY, b"first version, longer than the second")
    await object_store.put(BUCKET, KEY, b"second")

    assert await object_store.get(BUCKET, KEY) == b"second"
    assert await object_store.list(BUCKET) == [KEY]


async def test_delete_removes_the_object(object_store: ObjectStore) -> None:
    await object_store.put(BUCKET, KEY, b"x")
    await object_store.put(BUCKET, "executions/e-1/Filter/output.json", b"y")

    await object_store.delete(BUCKET, KEY)

    with pytest.raises(ObjectNotFound):
        await object_store.get(BUCKET, KEY)
    assert await object_store.list(BUCKET) == ["executions/e-1/Filter/output.json"]


async def test_delete_of_absent_key_is_not_an_error(object_store: ObjectStore) -> None:
    await object_store.delete(BUCKET, "never/written.json")
    await object_store.put(BUCKET, KEY, b"x")
    await object_store.delete(BUCKET, KEY)
    await object_store.delete(BUCKET, KEY)

    assert await object_store.list(BUCKET) == []


async def test_a_key_can_be_written_again_after_its_folder_was_emptied(object_store: ObjectStore) -> None:
    await object_store.put(BUCKET, "a/b/c.json", b"1")
    await object_store.delete(BUCKET, "a/b/c.json")

    await object_store.put(BUCKET, "a", b"2")

    assert await object_store.get(BUCKET, "a") == b"2"
    assert await object_store.list(BUCKET) == ["a"]


async def test_list_returns_every_key_sorted(object_store: ObjectStore) -> None:
    keys = [
        "executions/e-2/ETL/output.json",
        "executions/e-1/Score/output.json",
        "executions/e-1/ETL/output.json",
        "executions/e-10/ETL/output.json",
        "inputs/batch.csv",
        "README",
    ]
    for key in keys:
        await object_store.put(BUCKET, key, key.encode())

    assert await object_store.list(BUCKET) == sorted(keys)


async def test_list_by_prefix_matches_whole_and_partial_segments(object_store: ObjectStore) -> None:
    for key in [
        "executions/e-1/ETL/output.json",
        "executions/e-1/Filter/output.json",
        "executions/e-10/ETL/output.json",
        "executions/e-2/ETL/output.json",
        "executionsX",
    ]:
        await object_store.put(BUCKET, key, b"")

    assert await object_store.list(BUCKET, "executions/e-1/") == [
        "executions/e-1/ETL/output.json",
        "executions/e-1/Filter/output.json",
    ]
    assert await object_store.list(BUCKET, "executions/e-1") == [
        "executions/e-1/ETL/output.json",
        "executions/e-1/Filter/output.json",
        "executions/e-10/ETL/output.json",
    ]
    assert await object_store.list(BUCKET, "executions/e-1/F") == ["executions/e-1/Filter/output.json"]
    assert await object_store.list(BUCKET, "executions") == [
        "executions/e-1/ETL/output.json",
        "executions/e-1/Filter/output.json",
        "executions/e-10/ETL/output.json",
        "executions/e-2/ETL/output.json",
        "executionsX",
    ]
    assert await object_store.list(BUCKET, "executions/e-2/ETL/output.json") == ["executions/e-2/ETL/output.json"]
    assert await object_store.list(BUCKET, "executions/e-3") == []
    assert await object_store.list(BUCKET, "nothing/") == []


@pytest.mark.parametrize("prefix", ["../", "/", "a//", "../../etc/", "\\", "executions/../"])
async def test_list_with_a_prefix_no_valid_key_has_is_empty(object_store: ObjectStore, prefix: str) -> None:
    await object_store.put(BUCKET, "executions/e-1/ETL/output.json", b"")

    assert await object_store.list(BUCKET, prefix) == []


async def test_list_of_a_bucket_never_written_is_empty(object_store: ObjectStore) -> None:
    assert await object_store.list(OTHER_BUCKET) == []
    assert await object_store.list(OTHER_BUCKET, "executions/") == []


async def test_buckets_are_separate(object_store: ObjectStore) -> None:
    await object_store.put(BUCKET, KEY, b"first bucket")
    await object_store.put(OTHER_BUCKET, KEY, b"other bucket")
    await object_store.delete(OTHER_BUCKET, KEY)

    assert await object_store.get(BUCKET, KEY) == b"first bucket"
    assert await object_store.list(OTHER_BUCKET) == []


INVALID_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("..", id="dotdot"),
    pytest.param("../escape.json", id="dotdot-first"),
    pytest.param("executions/../../escape.json", id="dotdot-inside"),
    pytest.param("executions/e-1/..", id="dotdot-last"),
    pytest.param("./a.json", id="dot-segment"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("C:/Windows/win.ini", id="drive-letter"),
    pytest.param("executions\\e-1\\output.json", id="backslash"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a\x7fb", id="del"),
    pytest.param("executions//output.json", id="empty-segment"),
    pytest.param("executions/", id="trailing-slash"),
    pytest.param("x" * 1025, id="too-long"),
    pytest.param("é" * 513, id="too-long-in-utf8-bytes"),
    pytest.param("bad\ud800surrogate", id="lone-surrogate"),
]


@pytest.mark.parametrize("key", INVALID_KEYS)
async def test_invalid_keys_are_refused_by_every_operation(object_store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        await object_store.put(BUCKET, key, b"x")
    with pytest.raises(InvalidKey):
        await object_store.get(BUCKET, key)
    with pytest.raises(InvalidKey):
        await object_store.delete(BUCKET, key)

    assert await object_store.list(BUCKET) == []


async def test_the_longest_valid_key_is_accepted(object_store: ObjectStore) -> None:
    # 1,024 bytes in all, in segments a file system accepts (255 bytes at most each).
    key = "/".join(["k" * 200] * 5) + "/" + "v" * 19
    assert len(key.encode()) == 1024

    await object_store.put(BUCKET, key, b"x")

    assert await object_store.list(BUCKET) == [key]


@pytest.mark.parametrize("bucket", ["UPPER", "ab", "has_underscore", "../escape", "-dash-first", "a..b", ""])
async def test_invalid_bucket_names_are_refused(object_store: ObjectStore, bucket: str) -> None:
    with pytest.raises(InvalidKey, match="bucket name"):
        await object_store.put(bucket, KEY, b"x")
    with pytest.raises(InvalidKey, match="bucket name"):
        await object_store.get(bucket, KEY)
    with pytest.raises(InvalidKey, match="bucket name"):
        await object_store.list(bucket)
    with pytest.raises(InvalidKey, match="bucket name"):
        await object_store.delete(bucket, KEY)


async def test_a_large_object_round_trips(object_store: ObjectStore) -> None:
    data = random.Random(7).randbytes(6 * 1024 * 1024 + 3)

    await object_store.put(BUCKET, "inputs/large.bin", data)

    assert await object_store.get(BUCKET, "inputs/large.bin") == data


async def test_binary_data_round_trips_byte_for_byte(object_store: ObjectStore) -> None:
    data = bytes(range(256)) + b"\x00\r\n\xff\xfe" + "é".encode("latin-1")

    await object_store.put(BUCKET, "bin/all-bytes", data)

    assert await object_store.get(BUCKET, "bin/all-bytes") == data


async def test_an_empty_object_is_an_object(object_store: ObjectStore) -> None:
    await object_store.put(BUCKET, "markers/_SUCCESS", b"")

    assert await object_store.get(BUCKET, "markers/_SUCCESS") == b""
    assert await object_store.list(BUCKET, "markers/") == ["markers/_SUCCESS"]


async def test_bytearray_and_memoryview_are_copied_when_stored(object_store: ObjectStore) -> None:
    buffer = bytearray(b"original")
    await object_store.put(BUCKET, "a", buffer)
    await object_store.put(BUCKET, "b", memoryview(buffer))

    buffer[:] = b"changed!"

    assert await object_store.get(BUCKET, "a") == b"original"
    assert await object_store.get(BUCKET, "b") == b"original"


async def test_text_is_refused_with_a_pointer_to_write_json(object_store: ObjectStore) -> None:
    with pytest.raises(TypeError, match="write_json"):
        await object_store.put(BUCKET, KEY, '{"a": 1}')  # type: ignore[arg-type]

    assert await object_store.list(BUCKET) == []


UNICODE_KEYS = [
    "données/été/résumé.json",
    "日本/キー.json",
    "emoji/🚀.bin",
    "mixed/Zürich 2024 (copy).txt",
    "a/b",
    "z",
]


async def test_unicode_keys_round_trip_and_list_in_utf8_byte_order(object_store: ObjectStore) -> None:
    for key in UNICODE_KEYS:
        await object_store.put(BUCKET, key, key.encode("utf-8"))

    for key in UNICODE_KEYS:
        assert await object_store.get(BUCKET, key) == key.encode("utf-8")
    assert await object_store.list(BUCKET) == sorted(UNICODE_KEYS, key=lambda k: k.encode("utf-8"))
    assert await object_store.list(BUCKET, "日本/") == ["日本/キー.json"]


async def test_concurrent_writes_to_one_key_leave_one_whole_version(object_store: ObjectStore) -> None:
    versions = [bytes([n]) * (512 * 1024) for n in range(8)]

    await asyncio.gather(*(object_store.put(BUCKET, KEY, version) for version in versions))

    assert await object_store.get(BUCKET, KEY) in versions
    assert await object_store.list(BUCKET) == [KEY]


async def test_concurrent_writes_to_many_keys_all_land(object_store: ObjectStore) -> None:
    keys = [f"executions/e-{n}/ETL/output.json" for n in range(50)]

    await asyncio.gather(*(object_store.put(BUCKET, key, key.encode()) for key in keys))

    assert await object_store.list(BUCKET, "executions/") == sorted(keys)
    assert [await object_store.get(BUCKET, key) for key in keys] == [key.encode() for key in keys]


async def test_json_helpers_round_trip_through_the_store(object_store: ObjectStore) -> None:
    value = {"programId": "p-1", "candidates": [{"customerId": "c-1", "score": 0.5}], "note": "naïve"}

    size = await write_json(object_store, BUCKET, KEY, value)

    assert await read_json(object_store, BUCKET, KEY) == value
    assert size == len(await object_store.get(BUCKET, KEY))


# -- stage data: the manifest and its bounded JSON Lines parts ----------------------


async def test_parts_are_bounded_and_the_manifest_lists_them_on_every_backend(object_store: ObjectStore) -> None:
    from ceap_engine.storage.parts import PartWriter, iter_records, manifest_document, read_manifest

    writer = PartWriter(object_store, BUCKET, lambda n: f"executions/e-1/Filter/part-{n:05d}.jsonl", max_records=3)
    records = [{"customerId": f"C{i}", "value": i / 3, "name": "naïve ☃"} for i in range(8)]
    for record in records:
        await writer.add(record)
    parts = await writer.close()
    assert [p.records for p in parts] == [3, 3, 2]
    assert [p.bytes for p in parts] == [len(await object_store.get(BUCKET, p.key)) for p in parts]
    manifest = manifest_document(stage="Filter", execution_id="e-1", header={"programId": "p"},
                                 metrics={"inputCount": 8}, parts={"candidates": parts})
    await object_store.put(BUCKET, "executions/e-1/Filter/output.json", json.dumps(manifest).encode(), "application/json")

    read = await read_manifest(object_store, BUCKET, "executions/e-1/Filter/output.json")
    assert (read["schemaVersion"], read["kind"], read["counts"], read["programId"]) == (1, "ceap.stage-output", {"candidates": 8}, "p")
    assert read["parts"]["candidates"] == parts
    assert [r async for r in iter_records(object_store, BUCKET, read["parts"]["candidates"])] == records


async def test_a_part_is_bounded_in_bytes_too_and_never_holds_a_non_finite_number(object_store: ObjectStore) -> None:
    from ceap_engine.storage.parts import NonFiniteNumber, PartWriter

    writer = PartWriter(object_store, BUCKET, lambda n: f"p/part-{n:05d}.jsonl", max_bytes=100)
    for i in range(5):
        await writer.add({"blob": "x" * 40, "i": i})
    with pytest.raises(NonFiniteNumber):
        await writer.add({"orderValue": float("inf")})
    parts = await writer.close()
    assert sum(p.records for p in parts) == 5 and all(p.bytes <= 100 for p in parts) and len(parts) == 5
    assert await object_store.list(BUCKET, "p/") == [p.key for p in parts]


async def test_lines_buffered_without_awaiting_fill_the_same_bounded_parts(object_store: ObjectStore) -> None:
    from ceap_engine.storage.parts import PartWriter

    writer = PartWriter(object_store, BUCKET, lambda n: f"q/part-{n:05d}.jsonl", max_records=3, max_bytes=60)
    lines = [b'{"i":%d,"pad":"%s"}' % (i, b"x" * (i % 4) * 5) for i in range(10)]
    refused = 0
    for line in lines:
        if not writer.try_add(line):  # full: the line waits for the part's flush
            refused += 1
            await writer.add_line(line)
    parts = await writer.close()
    assert sum(p.records for p in parts) == 10 and all(p.records <= 3 and p.bytes <= 60 for p in parts)
    assert refused == len(parts) - 1
    assert b"".join([await object_store.get(BUCKET, p.key) for p in parts]) == b"\n".join(lines) + b"\n"


async def test_a_manifest_of_a_newer_schema_is_refused(object_store: ObjectStore) -> None:
    from ceap_engine.storage.parts import ManifestError, read_manifest

    await object_store.put(BUCKET, "m.json", json.dumps({"kind": "ceap.stage-output", "schemaVersion": 99, "parts": {}}).encode())
    with pytest.raises(ManifestError, match="schemaVersion 99"):
        await read_manifest(object_store, BUCKET, "m.json")


async def test_size_is_the_objects_length_and_absent_keys_are_not_found(object_store: ObjectStore) -> None:
    await object_store.put(BUCKET, KEY, b"0123456789")
    await object_store.put(BUCKET, "markers/_SUCCESS", b"")

    assert await object_store.size(BUCKET, KEY) == 10
    assert await object_store.size(BUCKET, "markers/_SUCCESS") == 0
    with pytest.raises(ObjectNotFound):
        await object_store.size(BUCKET, "executions/e-404/ETL/output.json")
    with pytest.raises(ObjectNotFound):
        await object_store.size(BUCKET, "executions/e-1")  # a prefix is no object


@pytest.mark.parametrize(("start", "end", "expected"), [
    (0, 10, b"0123456789"), (0, 1, b"0"), (3, 7, b"3456"), (9, 10, b"9"),
    (5, 5, b""), (8, 100, b"89"), (10, 20, b""), (50, 60, b""),
])
async def test_get_range_reads_bytes_start_to_end_clipped_to_the_object(
    object_store: ObjectStore, start: int, end: int, expected: bytes
) -> None:
    await object_store.put(BUCKET, KEY, b"0123456789")

    assert await object_store.get_range(BUCKET, KEY, start, end) == expected


async def test_get_range_of_an_absent_key_is_not_found_and_a_reversed_range_is_refused(object_store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await object_store.get_range(BUCKET, KEY, 0, 10)
    with pytest.raises(ObjectNotFound):
        await object_store.get_range(BUCKET, KEY, 0, 0)
    await object_store.put(BUCKET, KEY, b"abc")
    with pytest.raises(ValueError, match="0 <= start <= end"):
        await object_store.get_range(BUCKET, KEY, 2, 1)


async def test_ranges_of_a_big_binary_object_add_up_to_it(object_store: ObjectStore) -> None:
    data = bytes(random.Random(7).randrange(256) for _ in range(300_000))
    await object_store.put(BUCKET, "bin/big", data)

    pieces = [await object_store.get_range(BUCKET, "bin/big", s, s + 65_536) for s in range(0, len(data), 65_536)]
    assert b"".join(pieces) == data
