"""ceap's end-to-end row, the floor beside it, and the per-stage spans of a fanned-out history."""

import json
from pathlib import Path

import pytest

from benchmarks import floor
from benchmarks.end_to_end import stage_seconds

REPO = Path(__file__).resolve().parents[2]


def _event(kind, at, name):
    key = "stateEnteredEventDetails" if kind.endswith("Entered") else "stateExitedEventDetails"
    return {"type": kind, "timestamp": at, key: {"name": name}}


def test_stage_seconds_pairs_entered_and_exited_events_by_state_name():
    events = [
        {"type": "ExecutionStarted", "timestamp": "2025-01-01T00:00:00.000Z"},
        _event("TaskStateEntered", "2025-01-01T00:00:00.000Z", "ETL"),
        {"type": "TaskScheduled", "timestamp": "2025-01-01T00:00:00.100Z"},
        _event("TaskStateExited", "2025-01-01T00:00:01.500Z", "ETL"),
        _event("PassStateEntered", 100.0, "Summary"),
        _event("PassStateExited", 100.25, "Summary"),
    ]
    assert stage_seconds(events) == {"ETL": 1.5, "Summary": 0.25}


def test_a_fanned_out_stage_spans_its_map_its_overlapping_parts_and_its_manifest():
    events = [
        _event("MapStateEntered", 10.0, "Filter"),
        _event("TaskStateEntered", 10.1, "Filter.Part"),
        _event("TaskStateEntered", 10.2, "Filter.Part"),  # two parts at once
        _event("TaskStateExited", 12.0, "Filter.Part"),
        _event("TaskStateExited", 11.0, "Filter.Part"),
        _event("MapStateExited", 12.1, "Filter"),
        _event("TaskStateEntered", 12.1, "Filter.Manifest"),
        _event("TaskStateExited", 12.5, "Filter.Manifest"),
        _event("MapStateEntered", 12.5, "Score"),
        _event("MapStateExited", 13.0, "Score"),
        _event("TaskStateEntered", 13.0, "Score.Manifest"),
        _event("TaskStateExited", 13.25, "Score.Manifest"),
    ]
    assert stage_seconds(events) == {"Filter": 2.5, "Score": 0.75}


def test_the_floor_counts_what_ceap_counts_on_the_example(tmp_path):
    # The example's counts that the suite checks for ceap: 1,031 candidates, 581 stored, 473 actions.
    payload = json.loads((REPO / "examples" / "payload.json").read_text())
    counts = floor.run(payload, REPO / "examples" / "data" / "orders.jsonl", tmp_path)

    assert (counts["read"], counts["errors"], counts["candidates"]) == (1200, 11, 1031)
    assert (counts["stored"], counts["actions"]) == (581, 473)
    assert len((tmp_path / "actions.jsonl").read_text().splitlines()) == 473
    assert len((tmp_path / "errors.jsonl").read_text().splitlines()) == 11
    assert sum(counts["rejectionReasons"].values()) >= counts["candidates"] - counts["passed"]


def test_the_floor_run_again_on_its_own_store_rewrites_nothing_and_acts_once(tmp_path):
    import sqlite3

    payload = json.loads((REPO / "examples" / "payload.json").read_text())
    source = REPO / "examples" / "data" / "orders.jsonl"
    floor.run(payload, source, tmp_path)
    again = floor.run(payload, source, tmp_path)

    with sqlite3.connect(tmp_path / "floor.sqlite3") as db:
        assert db.execute("SELECT count(*), max(version) FROM candidates").fetchone() == (581, 1)
    assert again["stored"] == 581 and again["actions"] == 0  # the first run holds every engagement


_GOOD = {"eventId": "e1", "customerId": "C1", "orderId": "O1", "marketplace": "US", "productId": "B1",
         "orderDate": "2025-03-02T10:00:00Z", "orderValue": 25.5, "currency": "USD"}


def test_the_floor_takes_a_good_event_with_etls_defaults():
    event = floor.order_event(json.dumps(_GOOD).encode())
    assert (event["quantity"], event["fraudFlag"], event["channelOptIns"]) == (1, False, {})


@pytest.mark.parametrize("change", [
    {"orderValue": -1}, {"orderValue": "twelve"}, {"orderDate": "2025-02-30T10:15:00Z"},
    {"deliveryDate": "2025-02-01T00:00:00Z"}, {"eventId": "  "}, {"currency": "usd$"},
    {"customerTrustScore": 1.7}, {"customerId": None},
])
def test_the_floor_refuses_what_etl_refuses(change):
    with pytest.raises(floor.Malformed):
        floor.order_event(json.dumps({**_GOOD, **change}).encode())


def test_the_floor_refuses_lines_that_are_not_one_json_object():
    for line in (b'["evt-1", "C1"]', b"-- export interrupted, resuming --", b'{"eventId": "e1", "cust', b'{"v": NaN}'):
        with pytest.raises(floor.Malformed):
            floor.order_event(line)
