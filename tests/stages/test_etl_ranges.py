"""ETL over byte ranges of its source: every line read once by the range it starts in, the output as from one call."""

import json
import random
from pathlib import Path

import pytest

from ceap_engine.pipeline.stage import StageContext
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.storage.memory import MemoryObjectStore
from stages import etl
from stages.etl import EtlInput
from stages import etl_source
from stages.etl_source import range_records

from .conftest import BUCKET, run_etl

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "orders.jsonl"


def _context(objects: MemoryObjectStore | None = None, config: dict | None = None) -> StageContext:
    return StageContext(execution_id="e-ranges", stage="ETL", bucket=BUCKET, objects=objects or MemoryObjectStore(),
                        config=config or {}, clock=VirtualClock(1_767_571_200.0))


async def _lines_by_range(uri: str, context: StageContext, size: int, step: int) -> list[tuple[int, list[bytes]]]:
    out = []
    for start in range(0, max(1, size), step):
        found = [(n, r) async for batch in range_records(uri, context, start, min(size, start + step), size)
                 for n, r in batch]
        assert [n for n, _ in found] == list(range(1, len(found) + 1))  # numbered within the range
        out.append((len(found), [r.raw if r is not None else b"" for _, r in found]))
    return out


@pytest.mark.parametrize("piece", [5, 13, 64, etl_source.RANGE_READ_BYTES])
@pytest.mark.parametrize("seed", range(6))
async def test_each_line_is_read_by_exactly_one_range_whatever_the_boundaries(tmp_path, monkeypatch, seed, piece):
    monkeypatch.setattr(etl_source, "RANGE_READ_BYTES", piece)  # lines cut across pieces, ranges ending within one
    rng = random.Random(seed)
    lines = [b"" if rng.random() < 0.1 else json.dumps({"n": i, "pad": "x" * rng.randrange(0, 40)}).encode()
             for i in range(rng.randrange(1, 60))]
    data = b"\n".join(lines) + (b"\n" if seed % 2 else b"")  # with and without a last newline
    path = tmp_path / "s.jsonl"
    path.write_bytes(data)
    expected = data.split(b"\n")
    if expected[-1] == b"":  # the source ends with a newline: no line starts after it
        expected.pop()
    for step in (1, 2, 3, 7, 16, 41, 100, len(data), len(data) + 5):
        ranges = await _lines_by_range(str(path), _context(), len(data), step)
        assert [line for _, got in ranges for line in got] == [line.strip() for line in expected], step
        assert sum(count for count, _ in ranges) == len(expected)  # the line counts add up to the source's


async def test_an_s3_source_is_read_in_ranges_through_the_object_store():
    objects = MemoryObjectStore()
    data = b'{"a":1}\n{"a":22}\n\n{"a":333}\n'
    await objects.put("orders-bucket", "day/orders.jsonl", data)
    context = _context(objects)
    uri = "s3://orders-bucket/day/orders.jsonl"
    assert await context.source_size(uri) == len(data)
    ranges = await _lines_by_range(uri, context, len(data), 9)
    assert [line for _, got in ranges for line in got] == [b'{"a":1}', b'{"a":22}', b"", b'{"a":333}']


def _payload(source: Path | str) -> EtlInput:
    return EtlInput.model_validate({"programId": "review-solicitation", "marketplace": "US",
                                    "dateRange": {"start": "2025-03-01", "end": "2025-03-31"}, "source": str(source)})


async def _parts_bytes(context: StageContext, stream: str) -> bytes:
    parts = context.written_parts().get(stream, [])
    return b"".join([await context.objects.get(BUCKET, p.key) for p in parts])


@pytest.mark.parametrize("partitions", [1, 5])
async def test_many_ranges_give_the_candidates_and_errors_of_one_byte_for_byte(partitions, tmp_path):
    # The example day with a few errors of each kind spread over it, and a BOM on the first line.
    lines = EXAMPLE.read_bytes().split(b"\n")
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    lines[300:300] = [b"not json", b"[1, 2]", b'{"eventId": "x"}', b"", b"   "]
    source = tmp_path / "orders.jsonl"
    source.write_bytes(b"\n".join(lines))
    whole = _context(config={"partitions": partitions})
    ranged = _context(config={"partitions": partitions, "rangeBytes": 50_000})
    one = await run_etl(_payload(source), whole)
    many = await run_etl(_payload(source), ranged)
    plan = await etl.plan(_payload(source), ranged)
    assert len(plan["ranges"]) == -(-source.stat().st_size // 50_000) > 10
    assert many.output == one.output and one.output.metrics.error_count >= 3
    assert await _parts_bytes(ranged, "candidates") == await _parts_bytes(whole, "candidates")
    assert await _parts_bytes(ranged, "errors") == await _parts_bytes(whole, "errors")
    assert [e.line for e in many.errors][:3] == [301, 302, 303]  # the source's line numbers
    assert not [k for k in await ranged.objects.list(BUCKET) if "/spill/" in k]  # scratch removed


async def test_a_json_array_or_csv_source_is_one_range(tmp_path):
    source = tmp_path / "orders.json"
    source.write_text(json.dumps([json.loads(line) for line in EXAMPLE.read_text().splitlines()[:50] if line.strip()]))
    plan = await etl.plan(_payload(source), _context(config={"rangeBytes": 1024}))
    assert plan["ranged"] is False and [(r["start"], r["end"]) for r in plan["ranges"]] == [(0, source.stat().st_size)]
    csv = tmp_path / "orders.csv"
    csv.write_text("eventId,customerId\n" + "e,c\n" * 500)
    plan = await etl.plan(_payload(csv), _context(config={"rangeBytes": 1024}))
    assert len(plan["ranges"]) == 1


async def test_the_plan_groups_the_partitions_into_at_most_forty_merge_calls(tmp_path):
    source = tmp_path / "orders.jsonl"
    source.write_bytes(EXAMPLE.read_bytes())
    plan = await etl.plan(_payload(source), _context(config={"partitions": 150}))
    groups = plan["groups"]
    assert len(groups) == 40 and groups[0]["first"] == 0 and groups[-1]["end"] == 150
    assert all(a["end"] == b["first"] for a, b in zip(groups, groups[1:]))  # contiguous, each partition once
    assert len(plan["ranges"]) == 1  # half a megabyte is one 32 MiB range


async def test_spills_over_their_shared_budget_are_written_early_and_merge_the_same(tmp_path, monkeypatch):
    # A budget far below one range's spills: the writers write their fullest buffers as the range is
    # read (a piece at a time), and the merge reads those many small spills to the same candidates.
    from ceap_engine.pipeline import stage as stage_module
    from ceap_engine.storage.parts import SharedBudget

    payload = _payload(EXAMPLE)
    one = await run_etl(payload, whole := _context(config={"partitions": 7}))
    budget = 8_192
    monkeypatch.setattr(stage_module, "SPILL_BUFFER_BYTES", budget)
    monkeypatch.setattr(etl_source, "RANGE_READ_BYTES", 4_096)  # pieces smaller than the budget
    trims: list[tuple[int, int]] = []
    trim = SharedBudget.trim

    async def recording_trim(self):
        before = self.buffered_bytes
        await trim(self)
        trims.append((before, self.buffered_bytes))

    monkeypatch.setattr(SharedBudget, "trim", recording_trim)
    many = await run_etl(payload, tight := _context(config={"partitions": 7}))
    assert len(trims) > 50 and sum(before > budget for before, _ in trims) > 10  # they did go over, often
    assert max(after for _, after in trims) <= budget  # ... and were back within it after each trim
    assert many.output == one.output
    assert await _parts_bytes(tight, "candidates") == await _parts_bytes(whole, "candidates")


async def test_a_whole_json_array_day_gives_the_candidates_of_its_json_lines(tmp_path):
    # A document read whole goes to the spills in lists of 1,000 records: the example's 1,200 in two.
    events = []
    for line in EXAMPLE.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # the example's malformed lines: no JSON array could hold them
    assert len(events) > 1_000
    (day := tmp_path / "orders.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (array := tmp_path / "orders.json").write_text(json.dumps(events))
    as_lines = await run_etl(_payload(day), jsonl := _context(config={"partitions": 5}))
    as_array = await run_etl(_payload(array), whole := _context(config={"partitions": 5}))
    assert as_array.output.metrics == as_lines.output.metrics
    assert await _parts_bytes(whole, "candidates") == await _parts_bytes(jsonl, "candidates")
