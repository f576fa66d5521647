"""A part goes through the record-codec stages in slices (stage_runtime.SLICE_RECORDS): the
outputs must be those of one call on the whole part, every record once, each part object
holding exactly the records its manifest entry says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.local import LocalStores
from ceap_engine.pipeline import REALTIME, stage_runtime
from ceap_engine.pipeline.local import LocalPipeline
from ceap_engine.pipeline.stage_runtime import load_stage_function
from ceap_engine.runtime.clock import VirtualClock

ROOT = Path(__file__).resolve().parents[2]


async def _run(tmp_path: Path) -> tuple[Path, object]:
    payload = json.loads((ROOT / "examples" / "payload.json").read_text())
    payload["source"] = str(ROOT / "examples" / payload["source"]) if not Path(payload["source"]).is_absolute() \
        else payload["source"]
    root = tmp_path / "store"
    stores = LocalStores(root)
    objects, candidates = stores(VirtualClock())
    try:
        with LocalPipeline(REALTIME, objects=objects, candidates=candidates, clock=VirtualClock()) as pipeline:
            result = await pipeline.run(payload)
    finally:
        candidates.close()
    assert result.status == "SUCCEEDED", result.execution.cause
    return root, result


def _stream(root: Path, result, stage: str, stream: str) -> list[dict]:
    manifest = json.loads((root / "buckets" / result.bucket / result.outputs[stage]).read_text())
    keys = [part["key"] for part in manifest["parts"][stream]]
    assert len(keys) == len(set(keys)), keys  # no part object named twice (one slice overwriting another)
    records = []
    for part in manifest["parts"][stream]:
        lines = (root / "buckets" / result.bucket / part["key"]).read_bytes().splitlines()
        assert len(lines) == part["records"], part
        records.extend(json.loads(line) for line in lines)
    return records


def _without(value, keys: set[str]):
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    return [_without(v, keys) for v in value] if isinstance(value, list) else value


def _slice(stage) -> int:
    """How many records the runtime hands ``stage`` a call (the SLICE_RECORDS in force, unless it says)."""
    return stage.wire.slice_records or stage_runtime.SLICE_RECORDS


@pytest.fixture
def slice_store(monkeypatch):
    """``slice_store(n)``: Store in slices of ``n`` too (it takes 4,000 records a call: its ``slice_records``)."""
    import dataclasses

    from stages import store

    def slice_store(n: int) -> None:
        load_stage_function.cache_clear()
        monkeypatch.setattr(store.run, "wire", dataclasses.replace(store.run.wire, slice_records=n))

    yield slice_store
    load_stage_function.cache_clear()  # the next load, after monkeypatch's undo, sees Store's own wire


async def test_a_part_in_many_slices_gives_what_one_slice_gives(tmp_path, monkeypatch, slice_store):
    whole_root, whole = await _run(tmp_path / "whole")
    monkeypatch.setattr(stage_runtime, "SLICE_RECORDS", 97)  # the example's part in a dozen slices
    slice_store(97)
    sliced_root, sliced = await _run(tmp_path / "sliced")

    assert sliced.counts == whole.counts
    assert sliced.counts["Reactive"]["actionCount"] == 473
    for stage, stream in [("Filter", "candidates"), ("Score", "candidates"), ("Store", "candidates"),
                          ("Reactive", "actions")]:
        one, many = _stream(whole_root, whole, stage, stream), _stream(sliced_root, sliced, stage, stream)
        # What names the execution or its moment differs between two runs; everything else is equal.
        ignore = {"actionId", "executionId", "workflowExecutionId", "createdAt", "updatedAt", "expiresAt", "timestamp"}
        assert [_without(r, ignore) for r in many] == [_without(r, ignore) for r in one], stage
    reactive = json.loads((sliced_root / "buckets" / sliced.bucket / sliced.outputs["Reactive"]).read_text())
    assert len(reactive["parts"]["actions"]) > 1  # the slices really wrote parts of their own


async def test_a_rerun_of_a_part_in_slices_where_no_slice_has_an_action_succeeds(tmp_path, monkeypatch):
    # A re-run finds every engagement claimed: no slice has an action. Only the first slice writes
    # the empty actions object; the others wrote none and once failed (IndexError) on naming theirs.
    monkeypatch.setattr(stage_runtime, "SLICE_RECORDS", 97)
    root, first = await _run(tmp_path)
    assert first.counts["Reactive"]["actionCount"] == 473
    _, again = await _run(tmp_path)

    assert again.counts["Reactive"]["actionCount"] == 0
    assert again.counts["Store"] == first.counts["Store"]
    assert _stream(root, again, "Reactive", "actions") == []
    reactive = json.loads((root / "buckets" / again.bucket / again.outputs["Reactive"]).read_text())
    [empty] = reactive["parts"]["actions"]
    assert (root / "buckets" / again.bucket / empty["key"]).read_bytes() == b""


async def test_a_part_in_slices_holds_neither_its_bytes_nor_the_slices_done(tmp_path, monkeypatch):
    # What a stage call has alive is the part's lines still to go, not the bytes they were split
    # from (the finished read's future held them while no stage code suspended) nor the slices
    # before it. Every part is read in a thread here, as a big one is.
    import gc

    from adapters.local.objects import FileObjectStore
    from ceap_engine.pipeline import stage_data

    monkeypatch.setattr(stage_runtime, "SLICE_RECORDS", 97)
    monkeypatch.setattr(FileObjectStore, "inline_read_limit", 0)
    read: list[tuple[bytes, list[bytes], int]] = []  # each part read: its bytes, its lines, their count
    split_lines = stage_data.split_lines

    def recording_split(data: bytes) -> list[bytes]:
        lines = split_lines(data)
        read.append((data, lines, len(lines)))
        return lines

    seen: list[tuple[int, int, list[object]]] = []  # each wire call: lines left, lines expected left, holders
    call, slices = stage_runtime._call, {}

    async def checking_call(stage, stage_input, ctx, *, wire=False):
        if wire:
            data, lines, total = read[-1]
            done = slices[id(lines)] = slices.get(id(lines), 0) + 1
            holders = [r for r in gc.get_referrers(data) if r is not read[-1]]
            seen.append((len(lines), max(0, total - done * _slice(stage)), holders))
        return await call(stage, stage_input, ctx, wire=wire)

    monkeypatch.setattr(stage_data, "split_lines", recording_split)
    monkeypatch.setattr(stage_runtime, "_call", checking_call)
    root, result = await _run(tmp_path)

    assert result.counts["Reactive"]["actionCount"] == 473
    sizes = [_slice(load_stage_function(f"stages.{name.lower()}:run")) for name in ("Filter", "Score", "Store", "Reactive")]
    inputs = [result.counts[stage]["inputCount"] for stage in ("Filter", "Score", "Store", "Reactive")]
    # Store takes bigger calls (its writes go into the candidate store a call at a time): one for the example's part.
    assert sizes == [97, 97, load_stage_function("stages.store:run").wire.slice_records, 97] and sizes[2] >= inputs[2]
    # Every slice of every part was seen (the example's stages have one part each).
    assert len(seen) == sum(-(-n // size) for n, size in zip(inputs, sizes, strict=True)) > 3 * 5
    assert [(left, expected) for left, expected, _ in seen] == [(expected, expected) for _, expected, _ in seen]
    assert [holders for _, _, holders in seen if holders] == []  # without the loop turn: the read's futures
