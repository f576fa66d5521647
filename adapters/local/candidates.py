"""Candidate store in SQLite: the local twin of the DynamoDB table.

One table keyed ``(pk, sk)`` like the DynamoDB table, with the query columns
(program, marketplace, customer, subject, score, channels) beside the full
candidate document (``data``, JSON). Writes are idempotent upserts, one
transaction per call of up to :data:`BATCH_SIZE` records (a Store slice); a
rewrite of an unchanged record leaves the row (and its ``updated_at``) alone,
so re-running a Store stage does not churn the table.

Conditional writes (``expected_versions``) hold inside the same ``BEGIN IMMEDIATE``
transaction that writes, so no other writer - thread or process - can slip in
between the check and the write: a row expected new is inserted only where there
is none, a row expected at a version updated only at that ``metadata.version``;
if fewer rows changed than were written, the transaction is rolled back and the
stored versions read and compared key by key in a new one (one ``SELECT`` per 400 keys).

What a write costs is mostly pages written twice - to the WAL at commit, to the
database at the checkpoint - so the store keeps that small: a rowid table (a
~1.5 KB document in a ``WITHOUT ROWID`` table spills to an overflow page of its
own), rows written in key order, one transaction per call, and a checkpoint
once the WAL holds :data:`WAL_CHECKPOINT_BYTES` (64 MiB) instead of SQLite's 1,000
pages (a page changed by several transactions is copied to the database once), and
16 KiB pages in a new file (:data:`PAGE_SIZE`: fewer pages dirtied a row).

Why the calls run inline on the event loop: a call's SQL costs less than the
stage code that prepares it, and a worker process (``ceap run --local``) runs one
stage call at a time anyway. What can hold the loop: a query without ``limit``
over a very large program (it reads every row), a transaction of a whole part
(about a second for 10,000 new rows), and waiting up to ``timeout`` seconds for
the write lock when another *process* writes the same file.

Example::

    store = SQLiteCandidateStore(".ceap/candidates.sqlite3")
    result = await store.put_batch(records)
    best = await store.query("p-1", "email", marketplace="US", limit=100)
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ceap_engine.errors import InputError, StorageError
from ceap_engine.ports import CandidateRecord, Clock, EncodedDocument, PutResult
from ceap_engine.runtime.clock import RealClock
from ceap_engine.storage.candidates import (
    encode_candidate_data,
    failure_reason,
    validate_claim,
    validate_query_limit,
    written_consumed,
)

__all__ = ["BATCH_SIZE", "BUSY_TIMEOUT_SECONDS", "PAGE_SIZE", "SCHEMA_VERSION", "WAL_CHECKPOINT_BYTES", "SQLiteCandidateStore",
           "keys_statement", "query_statement"]

BATCH_SIZE = 10_000
"""Records per transaction at most: a whole call in one (the Store stage calls once per 4,000 records
of a part, its ``slice_records``: see ``stages/store.py``).

Measured on 52,000 new ~1.5 KB candidates (2 cores, slow fsync): 500 records a transaction
spent most of a Store in commits, each commit writing again the index and table pages the
previous one had written; one transaction per part writes each page once. A writer in another
process waits for the lock at ``BEGIN`` meanwhile (about a second), while doing its own stage
work - the two worker processes of ``ceap run --local`` take turns, not thrash.
"""

PAGE_SIZE = 16_384
"""The page size of a new database file (SQLite's default is 4,096; a file keeps the size it was made with).

Candidates go into three B-trees besides the table - the key and the two ranking indexes -
at places their keys and scores scatter, so a transaction dirties about one leaf page of
each a row, and each dirty page is written whole to the WAL at commit and again at the
checkpoint. Larger pages hold more entries, so a transaction of 2,000 rows dirties fewer of
them. Measured here (``executemany`` of ~1.5 KB rows in 2,000-row transactions, sorted by
key, with schema 2's wider ranking indexes): 12.0 -> 7.4 us a row into an empty file,
71.6 -> 31.0 us a row into a file holding 100,000 candidates; 32 KiB pages were no better on
the empty file and much worse on the full one. A file made by an older ceap keeps 4 KiB pages (``VACUUM`` after
``PRAGMA journal_mode = DELETE`` and ``PRAGMA page_size = 16384`` converts it).
"""

WAL_CHECKPOINT_BYTES = 64 * 1024 * 1024
"""The WAL is copied into the database once it holds this many bytes of pages (64 MiB).

SQLite's default, 1,000 pages (4 MiB of 4 KiB pages), checkpointed inside nearly every Store
commit: each checkpoint writes its pages to the database and fsyncs it (tens of milliseconds
here). Fewer, larger checkpoints copy a page changed by several transactions once. Durability
is the same kind as before: a commit survives a crash of ceap at once; a power cut may lose
commits not yet checkpointed (now up to this much WAL), never corrupt the file
(``synchronous=NORMAL``). Set as ``wal_autocheckpoint`` pages of the file's own page size.
"""

BUSY_TIMEOUT_SECONDS = 30.0
"""How long a write waits, in wall time, for a lock another process holds.

SQLite's own busy handler waits (on wall time: the virtual clock of a local run
cannot shorten it), so a short lock elsewhere - a backup, a second ``ceap run``,
a notebook writing - is waited for instead of failing the stage. The state
machine's Retry waits come on top of this, and under ``--clock virtual`` those
pass instantly: this timeout is what makes a local run outlast a real lock.
"""

# The stored version, read as CandidateRecord.version reads it: an integer
# metadata.version, else 0.
_VERSION = "CASE json_type(data, '$.metadata.version') WHEN 'integer' THEN json_extract(data, '$.metadata.version') ELSE 0 END"

SCHEMA_VERSION = 3
"""1: ``candidates`` was a ``WITHOUT ROWID`` table; 2: a rowid table, same columns; 3: the ranking
indexes hold ``(program_id, [marketplace,] score)`` and the rowid, not the keys again
(:data:`_RANKING_INDEXES`), and a ``consumed`` column keeps the document's consumed flag
(``consumed_many`` reads it instead of parsing each document: ~6 -> ~2 us a key). An older file
is migrated on open: its rows are kept, the flag read from their documents and the ranking
indexes made again (a few seconds for a million candidates, once)."""

# The candidates table; {name}, so that a migration can build it beside the old one.
_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    pk           TEXT NOT NULL,
    sk           TEXT NOT NULL,
    program_id   TEXT NOT NULL,
    marketplace  TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    score        REAL,              -- NULL: not scored, sorts last in 'score DESC'
    channels     TEXT NOT NULL,     -- JSON array of channel names, sorted
    data         TEXT NOT NULL,     -- the candidate document, JSON object
    updated_at   TEXT NOT NULL,     -- ISO 8601 UTC, set by the store when a row changes
    consumed     INTEGER NOT NULL DEFAULT 0,  -- 1: data.attributes.consumed is true (consumed_many)
    PRIMARY KEY (pk, sk)
)
"""

_RANKING_INDEXES = (
    # query(program) and query(program, marketplace) walk one of these in score order, and a
    # LIMIT stops soon after that many rows. Ties are put in (pk, sk) order as they come: SQLite
    # sorts each run of equal scores alone ("TEMP B-TREE FOR RIGHT PART OF ORDER BY"). With
    # (pk, sk) in the index instead (schema 2), each entry held the keys a second and third time
    # - ~110 bytes against ~30 - and a Store transaction dirtied and wrote that many more index
    # pages: measured here on 10,000 new ~1.5 KB rows in 2,500-row transactions, 14.5-16.3 against
    # 9.7-11.4 us a row into an empty file, 65-80 against 41-56 into one of 100,000 rows.
    # The price: a query whose LIMIT ends inside a run of many equal scores sorts that run.
    "CREATE INDEX IF NOT EXISTS candidates_by_program ON candidates (program_id, score DESC)",
    "CREATE INDEX IF NOT EXISTS candidates_by_program_marketplace ON candidates (program_id, marketplace, score DESC)",
)

_SCHEMA = (
    _TABLE.format(name="candidates"),
    *_RANKING_INDEXES,
    # Which execution issued each engagement (claim_engagements): the first claim wins.
    "CREATE TABLE IF NOT EXISTS engagement_claims "
    "(key TEXT PRIMARY KEY, execution_id TEXT NOT NULL, claimed_at TEXT NOT NULL) WITHOUT ROWID",
)

_COLUMNS = "customer_id, program_id, marketplace, subject_type, subject_id, score, channels, data"
_ALL_COLUMNS = "pk, sk, program_id, marketplace, customer_id, subject_type, subject_id, score, channels, data, updated_at"

# Keys per statement where a statement names many (two parameters each, under SQLite's limit).
_KEYS_PER_STATEMENT = 400


def keys_statement(columns: str, count: int) -> str:
    """The SQL that reads ``c.pk, c.sk`` and ``columns`` of the rows at ``count`` keys (parameters pk, sk, pk, ...).

    The keys drive the join (``CROSS JOIN`` keeps that order): one primary key search each.
    ``(pk, sk) IN (VALUES ...)`` reads the same rows, but on a rowid table SQLite answers it
    by scanning the whole table.

    >>> keys_statement("data", 2).count("?")
    4
    """
    marks = ",".join("(?, ?)" for _ in range(count))
    return (f"WITH k(pk, sk) AS (VALUES {marks}) "
            f"SELECT c.pk, c.sk, {columns} FROM k CROSS JOIN candidates AS c ON c.pk = k.pk AND c.sk = k.sk")

_GET = f"SELECT {_COLUMNS} FROM candidates WHERE pk = ? AND sk = ?"

# Claims inserted by one statement, which hands back the keys it inserted (RETURNING: SQLite 3.35+;
# an older library inserts with INSERT OR IGNORE and reads every holder back). Three parameters a
# claim, under the 999 of SQLite builds before 3.32.
_RETURNING = sqlite3.sqlite_version_info >= (3, 35)
_CLAIMS_PER_STATEMENT = 300


def _claim_statement(count: int) -> str:
    """Insert ``count`` claims (key, execution id, time), keeping any claimed before; return the keys inserted.

    >>> _claim_statement(2).count("?")
    6
    """
    marks = ",".join("(?, ?, ?)" for _ in range(count))
    return (f"INSERT INTO engagement_claims (key, execution_id, claimed_at) VALUES {marks} "
            "ON CONFLICT (key) DO NOTHING RETURNING key")

# Where the document's attributes.consumed is JSON true (record_consumed): what the consumed column holds.
_DOCUMENT_CONSUMED = "json_type(data, '$.attributes.consumed') IS 'true'"
_CONSUMED = "c.consumed"

# The columns a write sets besides the key, and the test that a stored row says something else than
# the new values (the first eight: updated_at and consumed follow from them): a rewrite of what is
# stored changes no row.
_WRITTEN = ("program_id", "marketplace", "customer_id", "subject_type", "subject_id", "score", "channels", "data",
            "updated_at", "consumed")
_CHANGED = "(" + ", ".join(f"candidates.{column}" for column in _WRITTEN[:8]) + ") IS NOT ({new})"

_UPSERT = (
    f"INSERT INTO candidates (pk, sk, {', '.join(_WRITTEN)}) VALUES ({', '.join('?' * (2 + len(_WRITTEN)))}) "
    "ON CONFLICT (pk, sk) DO UPDATE SET " + ", ".join(f"{column} = excluded.{column}" for column in _WRITTEN)
    + " WHERE " + _CHANGED.format(new=", ".join(f"excluded.{column}" for column in _WRITTEN[:8]))
)

# The optimistic conditional writes (_write_transaction): a row expected to be new is inserted only where
# there is none; a row expected at a version is updated only at that version and only if it changes.
# Either writes nothing where its condition fails, so the rows they change count those that held.
_INSERT_NEW = _UPSERT.split(" ON CONFLICT")[0] + " ON CONFLICT (pk, sk) DO NOTHING"
_UPDATE_AT_VERSION = (
    "UPDATE candidates SET " + ", ".join(f"{column} = ?{n}" for n, column in enumerate(_WRITTEN, start=3))
    + f" WHERE pk = ?1 AND sk = ?2 AND {_VERSION} = ?13 AND "
    + _CHANGED.format(new=", ".join(f"?{n}" for n in range(3, 11)))
)


class SQLiteCandidateStore:
    """A :class:`~ceap_engine.ports.CandidateStore` in one SQLite file (or ``":memory:"``).

    The folder of ``path`` is made if needed; the database runs in WAL mode,
    so readers in other processes (``sqlite3`` on the command line, a
    notebook) do not block writes. ``clock`` stamps ``updated_at`` (a
    :class:`~ceap_engine.runtime.clock.VirtualClock` gives virtual timestamps);
    ``timeout`` is how long (wall time) a write waits for another process's
    lock (:data:`BUSY_TIMEOUT_SECONDS`).
    Close the store with :meth:`close` or use it as a context manager.

    >>> import asyncio
    >>> with SQLiteCandidateStore(":memory:") as store:
    ...     record = CandidateRecord("c-1", "p-1", "US", "ORDER", "o-1", score=0.5)
    ...     len(asyncio.run(store.put_batch([record, record])).stored)
    2
    """

    def __init__(
        self,
        path: Path | str = ".ceap/candidates.sqlite3",
        *,
        clock: Clock | None = None,
        timeout: float = BUSY_TIMEOUT_SECONDS,
    ) -> None:
        self.path = path if path == ":memory:" else Path(path)
        self._clock = clock or RealClock()
        # One connection, shared by whichever thread calls (the local Glue
        # runner may), so calls take turns under this lock.
        self._lock = threading.Lock()
        try:
            if isinstance(self.path, Path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._storage_error(exc, "open") from exc
        try:
            self._db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before anything is written: a new file only
            self._db.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL loses no data on an application crash and
            # skips an fsync per commit; only a power cut may lose the last
            # commits, never corrupt the file.
            self._db.execute("PRAGMA synchronous = NORMAL")
            page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            self._db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_BYTES // page_size}")
            self._upgrade_schema()
        except StorageError:
            self._db.close()
            raise
        except sqlite3.Error as exc:
            self._db.close()
            raise self._storage_error(exc, "open") from exc

    def _upgrade_schema(self) -> None:
        """Create the tables, or migrate an older schema, unless the file is at :data:`SCHEMA_VERSION`.

        Under the write lock, so that processes opening one new (or old) file at once create
        (or migrate) it once; a file already at the current version is only read.
        """
        if self._schema_version() == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._schema_version() < SCHEMA_VERSION:  # not done by another process meanwhile
                old = self._db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'candidates'").fetchone()
                if old is not None and "WITHOUT ROWID" in old[0].upper():
                    # Version 1: the same columns in a WITHOUT ROWID table. Copied in key order; its
                    # indexes go with it and are made again below.
                    self._db.execute(_TABLE.format(name="candidates_v2"))
                    self._db.execute(f"INSERT INTO candidates_v2 ({_ALL_COLUMNS}, consumed) "
                                     f"SELECT {_ALL_COLUMNS}, {_DOCUMENT_CONSUMED} FROM candidates ORDER BY pk, sk")
                    self._db.execute("DROP TABLE candidates")
                    self._db.execute("ALTER TABLE candidates_v2 RENAME TO candidates")
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(candidates)")}
                if columns and "consumed" not in columns:
                    # Versions 1 and 2: no consumed column; read the flag from each document once.
                    self._db.execute("ALTER TABLE candidates ADD COLUMN consumed INTEGER NOT NULL DEFAULT 0")
                    self._db.execute(f"UPDATE candidates SET consumed = 1 WHERE {_DOCUMENT_CONSUMED}")
                # Versions 1 and 2: the ranking indexes held (pk, sk) too; made again below.
                self._db.execute("DROP INDEX IF EXISTS candidates_by_program")
                self._db.execute("DROP INDEX IF EXISTS candidates_by_program_marketplace")
                for statement in _SCHEMA:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _schema_version(self) -> int:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"candidate database {self.path} has schema version {version}, newer than this "
                f"ceap understands ({SCHEMA_VERSION}); upgrade ceap or use another database file"
            )
        return version

    def close(self) -> None:
        """Close the database connection; the store cannot be used afterwards."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteCandidateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def put_batch(
        self,
        records: Sequence[CandidateRecord],
        *,
        expected_versions: Mapping[tuple[str, str], int | None] | None = None,
    ) -> PutResult:
        failed: list[tuple[tuple[str, str], str]] = []
        keys: list[tuple[str, str]] = []
        # One row per key: of two records with one key in a call the later wins, as two
        # upserts in a row would leave it, and both are checked against what was stored before.
        latest: dict[tuple[str, str], tuple[object, ...]] = {}
        updated_at = self._clock.now().isoformat()
        for record in records:
            pk, sk = key = (record.pk, record.sk)
            try:
                data_json = encode_candidate_data(record)
            except InputError as error:
                failed.append((key, failure_reason(error)))
                continue
            keys.append(key)
            score = record.score
            latest[key] = (
                pk,
                sk,
                record.program_id,
                record.marketplace,
                record.customer_id,
                record.subject_type,
                record.subject_id,
                None if score is None else float(score),
                _channels_json(record.channels),
                data_json,
                updated_at,
                written_consumed(record, data_json),
            )
        # In key order: neighbouring rows share index pages, so a transaction changes fewer pages. The rows
        # themselves are compared: their keys differ, so the comparison ends at the key, in C.
        rows = sorted(latest.values())
        conflicts: dict[tuple[str, str], int | None] = {}
        for start in range(0, len(rows), BATCH_SIZE):
            if start:
                await asyncio.sleep(0)  # let other executions run between transactions
            try:
                conflicts.update(self._write_transaction(rows[start : start + BATCH_SIZE], expected_versions or {}))
            except sqlite3.Error as exc:
                raise self._storage_error(
                    exc,
                    "write",
                    f"{start} of the {len(rows)} valid records of this call were stored before the failure; "
                    "writes are idempotent upserts, so retrying the whole call is safe",
                ) from exc
        return PutResult(
            stored=tuple(key for key in keys if key not in conflicts),
            failed=tuple(failed),
            conflicts=tuple(conflicts.items()),
        )

    async def get(self, pk: str, sk: str) -> CandidateRecord | None:
        try:
            with self._lock:
                row = self._db.execute(_GET, (pk, sk)).fetchone()
        except sqlite3.Error as exc:
            raise self._storage_error(exc, "read") from exc
        return _record(row) if row is not None else None

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> list[CandidateRecord | None]:
        """The records at ``keys`` (``None`` where there is none), in one query per 400 keys."""
        found = self._read_keys(keys, _COLUMNS)
        records = {key: _record(row) for key, row in found.items()}
        return [records.get(key) for key in keys]

    async def consumed_many(self, keys: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether the candidate at each key is consumed (``False`` where there is none): the ``consumed``
        column, set from each document as it is written (:func:`~ceap_engine.storage.candidates.record_consumed`
        of :meth:`get_many`, without reading the documents)."""
        found = self._read_keys(keys, _CONSUMED)
        return [key in found and found[key][0] == 1 for key in keys]

    def _read_keys(self, keys: Sequence[tuple[str, str]], columns: str) -> dict[tuple[str, str], tuple]:
        """``columns`` of the rows at ``keys`` (each key once), by key: one query per 400 keys.

        The keys are asked in key order: neighbouring keys share B-tree pages, so a part's keys
        (which come in no order) touch each page once instead of missing SQLite's page cache
        nearly every key - ``consumed_many`` of 5,000 keys: ~7 -> ~3.6 us a key.
        """
        found: dict[tuple[str, str], tuple] = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), _KEYS_PER_STATEMENT):
            chunk = unique[start : start + _KEYS_PER_STATEMENT]
            try:
                with self._lock:
                    rows = self._db.execute(
                        keys_statement(columns, len(chunk)), [part for key in chunk for part in key]
                    ).fetchall()
            except sqlite3.Error as exc:
                raise self._storage_error(exc, "read") from exc
            for row in rows:
                found[(row[0], row[1])] = row[2:]
        return found

    async def query(
        self,
        program_id: str,
        channel: str | None = None,
        *,
        marketplace: str | None = None,
        limit: int | None = None,
    ) -> list[CandidateRecord]:
        validate_query_limit(limit)
        sql, params = query_statement(program_id, channel, marketplace=marketplace, limit=limit)
        try:
            with self._lock:
                rows = self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._storage_error(exc, "query") from exc
        return [_record(row) for row in rows]

    async def delete(self, pk: str, sk: str) -> None:
        try:
            with self._lock:
                self._db.execute("DELETE FROM candidates WHERE pk = ? AND sk = ?", (pk, sk))
        except sqlite3.Error as exc:
            raise self._storage_error(exc, "delete") from exc

    async def claim_engagements(self, keys: Sequence[str], execution_id: str) -> dict[str, str]:
        validate_claim(keys, execution_id)
        claimed_at = self._clock.now().isoformat()
        unique = sorted(set(keys))  # in key order, as _read_keys asks: each B-tree page touched once
        if not unique:
            return {}
        holders: dict[str, str] = {}
        try:
            with self._lock:
                # One transaction under the write lock: the first claim of a key wins, in any process.
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    held = unique  # the keys whose holder is read back: all, or those not just claimed
                    if _RETURNING:
                        # The inserted rows come back: those keys are this execution's. Only the others
                        # (claimed before: a re-run, or another execution) are looked up (claims of 3,962 new keys:
                        # 3.67 -> 2.08 us a key).
                        mine = set()
                        for start in range(0, len(unique), _CLAIMS_PER_STATEMENT):
                            chunk = unique[start : start + _CLAIMS_PER_STATEMENT]
                            rows = self._db.execute(_claim_statement(len(chunk)),
                                                    [v for key in chunk for v in (key, execution_id, claimed_at)])
                            mine.update(key for (key,) in rows)
                        holders.update(dict.fromkeys(mine, execution_id))
                        held = [key for key in unique if key not in mine]
                    else:
                        self._db.executemany(
                            "INSERT OR IGNORE INTO engagement_claims (key, execution_id, claimed_at) VALUES (?, ?, ?)",
                            [(key, execution_id, claimed_at) for key in unique],
                        )
                    for start in range(0, len(held), _KEYS_PER_STATEMENT):
                        chunk = held[start : start + _KEYS_PER_STATEMENT]
                        marks = ",".join("?" * len(chunk))
                        holders.update(self._db.execute(
                            f"SELECT key, execution_id FROM engagement_claims WHERE key IN ({marks})", chunk
                        ).fetchall())
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise self._storage_error(exc, "claim engagements for", "claiming is idempotent: retry the call") from exc
        return {key: holders[key] for key in keys}

    def _write_transaction(
        self, rows: list[tuple[object, ...]], expected: Mapping[tuple[str, str], int | None]
    ) -> dict[tuple[str, str], int | None]:
        """Write ``rows`` in one transaction, skipping those whose condition fails; return those."""
        with self._lock:
            # IMMEDIATE takes the write lock up front, so a concurrent writer
            # in another process waits at BEGIN instead of failing mid-batch,
            # and nobody writes between a condition's check and its write.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                conflicts: dict[tuple[str, str], int | None] = {}
                if not expected:
                    self._db.executemany(_UPSERT, rows)
                elif not self._optimistic_writes(rows, expected):
                    # Some condition did not hold: undo, and check each key's version under the lock again.
                    self._db.execute("ROLLBACK")
                    self._db.execute("BEGIN IMMEDIATE")
                    conflicts = self._checked_writes(rows, expected)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return conflicts

    def _optimistic_writes(self, rows: list[tuple[object, ...]], expected: Mapping[tuple[str, str], int | None]) -> bool:
        """Write ``rows`` as if every expected version holds (in the write transaction); ``False`` if one did not.

        Rows expected new are inserted where no row is (:data:`_INSERT_NEW`), rows expected at a version
        updated only at it (:data:`_UPDATE_AT_VERSION`): when as many rows changed as were written, no
        other writer came in between (the usual case) and no version was read; the rows without a
        condition follow. ``False`` (a condition failed, or a row said what the stored one says, which
        changes nothing): the caller rolls the transaction back and calls :meth:`_checked_writes` (the
        whole transaction, not a savepoint: in a savepoint every page a write changes is first copied to
        a sub-journal - into a file of 450,000 candidates, 61.6 -> 71.3-76.1 us a row). A first Store of
        4,757 candidates: 7.1-7.6 us a row in the transaction with every version read, 6.6-7.0 this way.
        """
        new: list[tuple[object, ...]] = []
        known: list[tuple[object, ...]] = []
        free: list[tuple[object, ...]] = []  # no condition: upserted as they are
        for row in rows:
            key = (row[0], row[1])
            if key not in expected:
                free.append(row)
            elif (version := expected[key]) is None:
                new.append(row)
            else:
                known.append((*row, version))
        written = self._db.executemany(_INSERT_NEW, new).rowcount if new else 0
        if known:
            written += self._db.executemany(_UPDATE_AT_VERSION, known).rowcount
        if written != len(new) + len(known):
            return False
        if free:
            self._db.executemany(_UPSERT, free)
        return True

    def _checked_writes(
        self, rows: list[tuple[object, ...]], expected: Mapping[tuple[str, str], int | None]
    ) -> dict[tuple[str, str], int | None]:
        """Read the stored version of each key in ``expected`` (in the write transaction), write the rows
        whose version is the one expected and the rows without a condition; return the others' found versions."""
        conflicts: dict[tuple[str, str], int | None] = {}
        checked = [key for key in map(_row_key, rows) if key in expected]
        stored = self._stored_versions(checked)
        for key in checked:
            found = stored.get(key)
            if found != expected[key]:
                conflicts[key] = found
        self._db.executemany(_UPSERT, [row for row in rows if _row_key(row) not in conflicts] if conflicts else rows)
        return conflicts

    def _stored_versions(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The stored ``metadata.version`` of those ``keys`` that have a row (call it under the lock)."""
        versions: dict[tuple[str, str], int] = {}
        for start in range(0, len(keys), _KEYS_PER_STATEMENT):
            chunk = keys[start : start + _KEYS_PER_STATEMENT]
            sql = keys_statement(_VERSION, len(chunk))
            for pk, sk, version in self._db.execute(sql, [part for key in chunk for part in key]):
                versions[(pk, sk)] = int(version)
        return versions

    def _storage_error(self, exc: BaseException, doing: str, note: str = "") -> StorageError:
        """Turn a sqlite3 or OS error into a :class:`StorageError` that says what to do."""
        text = str(exc)
        lowered = text.lower()
        if "locked" in lowered or "busy" in lowered:
            advice = (
                "another process is writing to this database; wait for it to finish, "
                "or give this run its own database file"
            )
        elif "readonly" in lowered or "read-only" in lowered or isinstance(exc, PermissionError):
            advice = f"give the user running ceap write access to {self.path} and its folder"
        elif "full" in lowered or "disk i/o" in lowered:
            advice = "free some disk space, or put the database on another disk"
        elif "not a database" in lowered or "malformed" in lowered:
            advice = f"{self.path} is not a usable SQLite database; move it away or choose another path"
        elif "closed" in lowered:
            advice = "the store was closed; make a new SQLiteCandidateStore"
        elif "unable to open" in lowered or isinstance(exc, OSError):
            advice = f"check that the folder of {self.path} exists and is writable"
        else:
            advice = f"check the database file {self.path}"
        message = f"could not {doing} candidates in {self.path}: {text}; {advice}"
        return StorageError(f"{message} ({note})" if note else message)


def query_statement(
    program_id: str, channel: str | None = None, *, marketplace: str | None = None, limit: int | None = None
) -> tuple[str, list[object]]:
    """The SQL and parameters of :meth:`SQLiteCandidateStore.query` (for ``EXPLAIN QUERY PLAN``).

    >>> query_statement("p-1", limit=5)[1]
    ['p-1', 5]
    """
    sql = [f"SELECT {_COLUMNS} FROM candidates WHERE program_id = ?"]
    params: list[object] = [program_id]
    if marketplace is not None:
        sql.append("AND marketplace = ?")
        params.append(marketplace)
    if channel is not None:
        sql.append("AND EXISTS (SELECT 1 FROM json_each(candidates.channels) WHERE json_each.value = ?)")
        params.append(channel)
    # NULL is the smallest value in SQLite, so 'score DESC' puts unscored
    # candidates last; (pk, sk) makes ties come out in a stable order.
    sql.append("ORDER BY score DESC, pk, sk")
    if limit is not None:
        sql.append("LIMIT ?")
        params.append(limit)
    return " ".join(sql), params


def _row_key(row: tuple[object, ...]) -> tuple[str, str]:
    return row[0], row[1]  # type: ignore[return-value]


_CHANNELS_JSON: dict[frozenset[str], str] = {}
_CHANNELS: dict[str, frozenset[str]] = {}


def _channels_json(channels: Iterable[str]) -> str:
    """The ``channels`` column: the sorted names as a JSON array (a part has a handful of distinct sets)."""
    names = frozenset(channels)
    text = _CHANNELS_JSON.get(names)
    if text is None:
        text = json.dumps(sorted(names), ensure_ascii=False)
        if len(_CHANNELS_JSON) < 1024:
            _CHANNELS_JSON[names] = text
    return text


def _channels(text: str) -> frozenset[str]:
    """The ``channels`` column read back (the inverse of :func:`_channels_json`, remembered the same way)."""
    names = _CHANNELS.get(text)
    if names is None:
        names = frozenset(json.loads(text))
        if len(_CHANNELS) < 1024:
            _CHANNELS[text] = names
    return names


def _record(row: tuple[object, ...]) -> CandidateRecord:
    customer_id, program_id, marketplace, subject_type, subject_id, score, channels, data = row
    return CandidateRecord(
        customer_id=customer_id,  # type: ignore[arg-type]
        program_id=program_id,  # type: ignore[arg-type]
        marketplace=marketplace,  # type: ignore[arg-type]
        subject_type=subject_type,  # type: ignore[arg-type]
        subject_id=subject_id,  # type: ignore[arg-type]
        score=score,  # type: ignore[arg-type]
        channels=_channels(channels),  # type: ignore[arg-type]
        data=EncodedDocument(data),  # type: ignore[arg-type]  # parsed if read (see document_text)
    )
