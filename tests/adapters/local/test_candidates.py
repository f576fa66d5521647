"""What only the SQLite candidate store has: the file, its schema and indexes, locks, timestamps."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.local import SQLiteCandidateStore
from adapters.local.candidates import PAGE_SIZE, SCHEMA_VERSION, WAL_CHECKPOINT_BYTES, query_statement
from ceap_engine.errors import StorageError
from ceap_engine.ports import CandidateRecord
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.storage.candidates import record_consumed


def candidate(
    customer: str, score: float | None = 0.5, channels: tuple[str, ...] = ("push", "email"), **data: object
) -> CandidateRecord:
    return CandidateRecord(customer, "p-1", "US", "ORDER", f"o-{customer}", score, frozenset(channels), dict(data))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "candidates.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteCandidateStore]:
    with SQLiteCandidateStore(db_path) as store:
        yield store


def read_rows(db_path: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM candidates ORDER BY pk, sk").fetchall()


async def test_the_folder_is_made_and_the_database_runs_in_wal_mode(store: SQLiteCandidateStore, db_path: Path) -> None:
    assert db_path.is_file()
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_a_new_file_has_16_kib_pages_and_checkpoints_at_64_mib_of_them(store: SQLiteCandidateStore,
                                                                             db_path: Path) -> None:
    assert store._db.execute("PRAGMA page_size").fetchone() == (PAGE_SIZE,) == (16_384,)
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (WAL_CHECKPOINT_BYTES // PAGE_SIZE,)
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA page_size").fetchone() == (PAGE_SIZE,)


async def test_a_file_with_4_kib_pages_keeps_them_and_checkpoints_at_the_same_bytes(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as old:  # as an older ceap made it
        old.execute("PRAGMA page_size = 4096")
        old.execute("PRAGMA journal_mode = WAL")
        old.execute("CREATE TABLE other (x)")
    record = candidate("c-1")
    with SQLiteCandidateStore(db_path) as store:
        await store.put_batch([record])
        assert store._db.execute("PRAGMA page_size").fetchone() == (4096,)
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (WAL_CHECKPOINT_BYTES // 4096,)
    with SQLiteCandidateStore(db_path) as reopened:
        assert await reopened.get(record.pk, record.sk) == record


async def test_rows_hold_the_key_layout_the_query_columns_and_the_json_document(
    store: SQLiteCandidateStore, db_path: Path
) -> None:
    await store.put_batch([candidate("c-1", 0.25, ("push", "email"), orderValue=42.5)])

    [row] = read_rows(db_path)
    assert dict(row) | {"updated_at": None} == {
        "pk": "CUSTOMER#c-1#PROGRAM#p-1#MARKETPLACE#US",
        "sk": "SUBJECT#ORDER#o-c-1",
        "program_id": "p-1",
        "marketplace": "US",
        "customer_id": "c-1",
        "subject_type": "ORDER",
        "subject_id": "o-c-1",
        "score": 0.25,
        "channels": '["email", "push"]',
        "data": '{"orderValue":42.5}',
        "updated_at": None,
        "consumed": 0,
    }
    assert json.loads(row["data"]) == {"orderValue": 42.5}


@pytest.mark.parametrize(
    ("attributes", "hint", "column"),
    [
        ({"consumed": True}, None, 1),  # read from the document
        ({"consumed": False}, None, 0),
        ({"consumed": "yes"}, None, 0),  # not JSON true: not consumed, as record_consumed says
        (None, None, 0),
        ({"consumed": True}, True, 1),  # the writer's word (it says what the document says)
        ({"consumed": False}, False, 0),
    ],
)
async def test_the_consumed_column_says_what_the_document_says(
    store: SQLiteCandidateStore, db_path: Path, attributes: dict | None, hint: bool | None, column: int
) -> None:
    data = {} if attributes is None else {"attributes": attributes}
    record = CandidateRecord("c-1", "p-1", "US", "ORDER", "o-1", 0.5, frozenset({"email"}), data, consumed=hint)
    await store.put_batch([record])

    [row] = read_rows(db_path)
    assert row["consumed"] == column == record_consumed(record)
    assert await store.consumed_many([record.key]) == [bool(column)]
    # An update that changes the flag changes the column.
    flipped = {"attributes": {"consumed": not column}}
    await store.put_batch([CandidateRecord("c-1", "p-1", "US", "ORDER", "o-1", 0.5, frozenset({"email"}), flipped)])
    assert read_rows(db_path)[0]["consumed"] == (not column)


async def test_records_survive_closing_and_reopening(db_path: Path) -> None:
    record = candidate("c-1", note="kept")
    with SQLiteCandidateStore(db_path) as first:
        await first.put_batch([record])

    with SQLiteCandidateStore(db_path) as reopened:
        assert await reopened.get(record.pk, record.sk) == record


async def test_in_memory_databases_are_separate() -> None:
    with SQLiteCandidateStore(":memory:") as one, SQLiteCandidateStore(":memory:") as other:
        await one.put_batch([candidate("c-1")])

        assert len(await one.query("p-1")) == 1
        assert await other.query("p-1") == []


@pytest.mark.parametrize(
    ("marketplace", "channel", "index"),
    [
        (None, None, "candidates_by_program"),
        (None, "email", "candidates_by_program"),
        ("US", None, "candidates_by_program_marketplace"),
        ("US", "email", "candidates_by_program_marketplace"),
    ],
)
async def test_queries_walk_an_index_in_score_order_and_sort_only_ties(
    store: SQLiteCandidateStore, db_path: Path, marketplace: str | None, channel: str | None, index: str
) -> None:
    await store.put_batch([candidate(f"c-{n}", n / 10) for n in range(50)])
    sql, params = query_statement("p-1", channel, marketplace=marketplace, limit=10)

    with sqlite3.connect(db_path) as db:
        plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]

    assert any(f"USING INDEX {index}" in step for step in plan), plan
    # The index gives score order; only runs of equal scores are sorted (by pk, sk), not the whole result.
    assert [step for step in plan if "TEMP B-TREE" in step] == ["USE TEMP B-TREE FOR RIGHT PART OF ORDER BY"]


async def test_ranking_index_entries_hold_no_key(store: SQLiteCandidateStore, db_path: Path) -> None:
    # What makes a write cheap (see _RANKING_INDEXES): the keys are in the table and its key index only.
    await store.put_batch([candidate("c-1", 0.5)])
    with sqlite3.connect(db_path) as db:
        columns = {name: [row[2] for row in db.execute(f"PRAGMA index_info({name})")]
                   for name in ("candidates_by_program", "candidates_by_program_marketplace")}

    assert columns == {"candidates_by_program": ["program_id", "score"],
                       "candidates_by_program_marketplace": ["program_id", "marketplace", "score"]}


async def test_rewriting_an_unchanged_record_keeps_its_timestamp(db_path: Path) -> None:
    clock = VirtualClock(start=1_700_000_000)
    with SQLiteCandidateStore(db_path, clock=clock) as store:
        await store.put_batch([candidate("c-1", 0.5), candidate("c-2", 0.5)])
        clock.advance(60)
        await store.put_batch([candidate("c-1", 0.5), candidate("c-2", 0.9)])

    stamps = {row["customer_id"]: row["updated_at"] for row in read_rows(db_path)}
    assert stamps == {"c-1": "2023-11-14T22:13:20+00:00", "c-2": "2023-11-14T22:14:20+00:00"}


async def test_a_conditional_rewrite_of_an_unchanged_record_keeps_its_timestamp(db_path: Path) -> None:
    # The optimistic conditional update changes no row here, so the store checks the versions instead
    # (see _optimistic_writes): still no conflict, and still no new timestamp.
    clock = VirtualClock(start=1_700_000_000)
    with SQLiteCandidateStore(db_path, clock=clock) as store:
        await store.put_batch([candidate("c-1", 0.5), candidate("c-2", 0.5)])
        clock.advance(60)
        result = await store.put_batch([candidate("c-1", 0.5), candidate("c-2", 0.9)],
                                       expected_versions={candidate("c-1").key: 0, candidate("c-2").key: 0})

    assert result.conflicts == () and len(result.stored) == 2
    stamps = {row["customer_id"]: row["updated_at"] for row in read_rows(db_path)}
    assert stamps == {"c-1": "2023-11-14T22:13:20+00:00", "c-2": "2023-11-14T22:14:20+00:00"}


async def test_a_write_lock_held_by_another_process_is_reported(db_path: Path) -> None:
    with SQLiteCandidateStore(db_path, timeout=0) as store:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StorageError) as caught:
                await store.put_batch([candidate(f"c-{n}") for n in range(30)])
        finally:
            other.execute("ROLLBACK")
            other.close()

        message = str(caught.value)
        assert str(db_path) in message
        assert "another process is writing to this database" in message
        assert "0 of the 30 valid records of this call were stored" in message
        assert "retrying the whole call is safe" in message
        assert await store.query("p-1") == []
        assert len((await store.put_batch([candidate(f"c-{n}") for n in range(30)])).stored) == 30


async def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "candidates.sqlite3"
    path.write_bytes(b"this is a text file, not SQLite" * 100)

    with pytest.raises(StorageError, match="is not a usable SQLite database; move it away"):
        SQLiteCandidateStore(path)


async def test_a_database_from_a_newer_ceap_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(StorageError, match="newer than this ceap understands"):
        SQLiteCandidateStore(db_path)


async def test_a_path_that_cannot_be_opened_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a-folder.sqlite3").mkdir()

    with pytest.raises(StorageError, match="could not open candidates"):
        SQLiteCandidateStore(tmp_path / "a-folder.sqlite3")


async def test_a_closed_store_says_so(db_path: Path) -> None:
    store = SQLiteCandidateStore(db_path)
    store.close()

    with pytest.raises(StorageError, match="the store was closed"):
        await store.query("p-1")
    with pytest.raises(StorageError, match="the store was closed"):
        await store.put_batch([candidate("c-1")])


async def test_a_short_lock_held_by_another_process_is_waited_for_on_wall_time(db_path: Path) -> None:
    import subprocess
    import sys
    import time

    from adapters.local.candidates import BUSY_TIMEOUT_SECONDS

    assert BUSY_TIMEOUT_SECONDS >= 30
    # The virtual clock stands still: the wait must not depend on it.
    with SQLiteCandidateStore(db_path, clock=VirtualClock(1_700_000_000)) as store:
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import sqlite3, sys, time\n"
             f"db = sqlite3.connect({str(db_path)!r}, isolation_level=None)\n"
             "db.execute('BEGIN IMMEDIATE')\n"
             "print('locked', flush=True)\n"
             "time.sleep(0.6)\n"
             "db.execute('ROLLBACK')\n"],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            began = time.monotonic()
            result = await store.put_batch([candidate(f"c-{n}") for n in range(30)])
            waited = time.monotonic() - began
        finally:
            holder.wait(timeout=30)

    assert len(result.stored) == 30
    assert waited >= 0.3  # it waited for the other process, then wrote


async def test_processes_bumping_one_record_at_once_lose_no_update(db_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import asyncio, sys\n"
        "from adapters.local import SQLiteCandidateStore\n"
        "from ceap_engine.ports import CandidateRecord\n"
        "from ceap_engine.storage.candidates import write_candidates\n"
        "def bump(key, stored):\n"
        "    n = stored.version if stored else 0\n"
        "    return CandidateRecord('c-1', 'p-1', 'US', 'ORDER', 'o-1', data={'metadata': {'version': n + 1}})\n"
        "async def main():\n"
        "    with SQLiteCandidateStore(sys.argv[1]) as store:\n"
        "        for _ in range(25):\n"
        "            done = await write_candidates(store, [('CUSTOMER#c-1#PROGRAM#p-1#MARKETPLACE#US', 'SUBJECT#ORDER#o-1')],"
        " bump, max_attempts=1000)\n"
        "            assert not done.failed, done.failed\n"
        "asyncio.run(main())\n"
    )
    with SQLiteCandidateStore(db_path):
        pass  # the schema exists before the writers race
    writers = [subprocess.Popen([sys.executable, "-c", script, str(db_path)], cwd=Path(__file__).resolve().parents[3])
               for _ in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]

    with SQLiteCandidateStore(db_path) as store:
        record = await store.get("CUSTOMER#c-1#PROGRAM#p-1#MARKETPLACE#US", "SUBJECT#ORDER#o-1")
    assert record.version == 100  # 4 processes x 25 increments, each on the version it read


_VERSION_1_SCHEMA = """
CREATE TABLE candidates (
    pk TEXT NOT NULL, sk TEXT NOT NULL, program_id TEXT NOT NULL, marketplace TEXT NOT NULL,
    customer_id TEXT NOT NULL, subject_type TEXT NOT NULL, subject_id TEXT NOT NULL, score REAL,
    channels TEXT NOT NULL, data TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
CREATE INDEX candidates_by_program ON candidates (program_id, score DESC, pk, sk);
CREATE INDEX candidates_by_program_marketplace ON candidates (program_id, marketplace, score DESC, pk, sk);
CREATE TABLE engagement_claims (key TEXT PRIMARY KEY, execution_id TEXT NOT NULL, claimed_at TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO candidates VALUES ('CUSTOMER#c-1#PROGRAM#p-1#MARKETPLACE#US', 'SUBJECT#ORDER#o-c-1', 'p-1', 'US', 'c-1',
    'ORDER', 'o-c-1', 0.5, '["email", "push"]', '{"metadata":{"version":3}}', '2025-01-01T00:00:00+00:00');
INSERT INTO candidates VALUES ('CUSTOMER#c-0#PROGRAM#p-1#MARKETPLACE#US', 'SUBJECT#ORDER#o-c-0', 'p-1', 'US', 'c-0',
    'ORDER', 'o-c-0', 0.25, '["email"]', '{"attributes":{"consumed":true}}', '2025-01-01T00:00:00+00:00');
INSERT INTO engagement_claims VALUES ('k-1', 'daily', '2025-01-01T00:00:00+00:00');
PRAGMA user_version = 1;
"""


async def test_a_version_1_database_is_migrated_on_open_and_keeps_its_rows_claims_and_timestamps(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as db:
        db.executescript(_VERSION_1_SCHEMA)
    before = [dict(row) for row in read_rows(db_path)]

    with SQLiteCandidateStore(db_path) as store:
        record = await store.get("CUSTOMER#c-1#PROGRAM#p-1#MARKETPLACE#US", "SUBJECT#ORDER#o-c-1")
        assert record is not None and record.version == 3 and record.channels == {"email", "push"}
        assert await store.claim_engagements(["k-1"], "other") == {"k-1": "daily"}
        assert [r.customer_id for r in await store.query("p-1", "email", marketplace="US")] == ["c-1", "c-0"]
        assert await store.consumed_many([("CUSTOMER#c-0#PROGRAM#p-1#MARKETPLACE#US", "SUBJECT#ORDER#o-c-0"),
                                          ("CUSTOMER#c-1#PROGRAM#p-1#MARKETPLACE#US", "SUBJECT#ORDER#o-c-1")]) == [True, False]

    after = [dict(row) for row in read_rows(db_path)]
    assert [row.pop("consumed") for row in after] == [1, 0]  # c-0's document says consumed: the flag read from it
    assert after == before
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        [table] = db.execute("SELECT sql FROM sqlite_master WHERE name = 'candidates'").fetchone()
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "WITHOUT ROWID" not in table.upper()
    assert {"candidates_by_program", "candidates_by_program_marketplace"} <= indexes
    assert_current_ranking_indexes(db_path)


def assert_current_ranking_indexes(db_path: Path) -> None:
    from adapters.local.candidates import _RANKING_INDEXES

    with sqlite3.connect(db_path) as db:
        made = {sql.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS") for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name LIKE 'candidates_by_%'")}
    assert made == set(_RANKING_INDEXES)


async def test_a_version_2_database_gets_the_new_ranking_indexes_and_keeps_its_rows(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as db:
        db.executescript(_VERSION_1_SCHEMA.replace(") WITHOUT ROWID;", ");", 1).replace(
            "PRAGMA user_version = 1", "PRAGMA user_version = 2"))
        db.executemany("INSERT INTO candidates VALUES (?, ?, 'p-1', 'US', ?, 'ORDER', ?, 0.5, '[\"email\"]', '{}', 't')",
                       [(f"CUSTOMER#{c}#PROGRAM#p-1#MARKETPLACE#US", f"SUBJECT#ORDER#o-{c}", c, f"o-{c}")
                        for c in ("c-3", "c-2")])
    before = [dict(row) for row in read_rows(db_path)]

    with SQLiteCandidateStore(db_path) as store:
        # Equal scores in (pk, sk) order, through the new index.
        assert [r.customer_id for r in await store.query("p-1", marketplace="US")] == ["c-1", "c-2", "c-3", "c-0"]

    after = [dict(row) for row in read_rows(db_path)]
    assert [row.pop("consumed") for row in after] == [1, 0, 0, 0]  # c-0's document says consumed
    assert after == before
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert_current_ranking_indexes(db_path)


async def test_reading_many_keys_searches_the_primary_key_once_per_key(store: SQLiteCandidateStore, db_path: Path) -> None:
    from adapters.local.candidates import keys_statement

    await store.put_batch([candidate(f"c-{n}") for n in range(50)])
    with sqlite3.connect(db_path) as db:
        plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {keys_statement('data', 3)}", ["a"] * 6))

    assert "SEARCH c USING INDEX sqlite_autoindex_candidates_1 (pk=? AND sk=?)" in plan
    assert "SCAN c" not in plan  # a rowid table answers (pk, sk) IN (VALUES ...) with a full scan


async def test_a_conditional_batch_larger_than_a_statement_checks_every_key(store: SQLiteCandidateStore) -> None:
    records = [candidate(f"c-{n:04d}", metadata={"version": 1}) for n in range(1_000)]
    await store.put_batch(records)
    bumped = [candidate(f"c-{n:04d}", metadata={"version": 2}) for n in range(1_000)]
    # Every key but the last expects the version stored; the last expects none (a create) and conflicts.
    expected = {r.key: 1 for r in bumped[:-1]} | {bumped[-1].key: None}

    result = await store.put_batch(bumped, expected_versions=expected)

    assert len(result.stored) == 999 and result.conflicts == ((bumped[-1].key, 1),)
    assert [r.version for r in await store.get_many([r.key for r in bumped])] == [2] * 999 + [1]


@pytest.mark.parametrize("returning", [True, False], ids=["RETURNING", "older SQLite"])
async def test_claims_over_more_keys_than_a_statement_holds_keep_the_first_holder(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, returning: bool
) -> None:
    import adapters.local.candidates as module

    monkeypatch.setattr(module, "_RETURNING", returning)
    first = [f"k-{n:04d}" for n in range(0, 1000)]
    later = [f"k-{n:04d}" for n in range(700, 1700)]  # 300 already held, 700 new: more than one statement each
    with SQLiteCandidateStore(db_path) as store:
        assert set((await store.claim_engagements(first + first[:5], "daily")).values()) == {"daily"}
        holders = await store.claim_engagements(later, "rerun")
        assert list(holders) == later
        assert {key for key, holder in holders.items() if holder == "daily"} == set(first[700:])
        assert {key for key, holder in holders.items() if holder == "rerun"} == set(later) - set(first)
        assert await store.claim_engagements(first[:3], "daily") == dict.fromkeys(first[:3], "daily")
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*), count(DISTINCT key) FROM engagement_claims").fetchone() == (1700, 1700)
