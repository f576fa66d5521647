"""Candidate store in SQLite: the local twin of the DynamoDB table.

One table keyed ``(pk, sk)`` like the DynamoDB table, with the query columns
(program, marketplace, customer, subject, score, channels) beside the full
candidate document (``data``, JSON). Writes are idempotent upserts, 25 to a
transaction as DynamoDB's ``BatchWriteItem``; a rewrite of an unchanged record
leaves the row (and its ``updated_at``) alone, so re-running a Store stage does
not churn the table.

Conditional writes (``expected_versions``) compare the stored document's
``metadata.version`` inside the same ``BEGIN IMMEDIATE`` transaction that
writes, so no other writer - thread or process - can slip in between the check
and the write.

Why the calls run inline on the event loop: a transaction of 25 upserts takes
~0.1-0.3 ms (WAL, ``synchronous=NORMAL``: no fsync per commit), less than a
round trip through ``asyncio.to_thread`` costs, and ``put_batch`` yields to
the loop between transactions. What can still hold the loop: a query without
``limit`` over a very large program (it reads every row), and waiting up to
``timeout`` seconds for the write lock when another *process* writes the same
file.

Example::

    store = SQLiteCandidateStore(".ceap/candidates.sqlite3")
    result = await store.put_batch(records)
    best = await store.query("p-1", "email", marketplace="US", limit=100)
"""

from __future__ import annotations

import asyncio
import json

import msgspec
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from ceap_engine.errors import InputError, StorageError
from ceap_engine.ports import CandidateRecord, Clock, PutResult
from ceap_engine.runtime.clock import RealClock
from ceap_engine.storage.candidates import encode_candidate_data, failure_reason, validate_claim, validate_query_limit

__all__ = ["BATCH_SIZE", "BUSY_TIMEOUT_SECONDS", "SQLiteCandidateStore", "query_statement"]

BATCH_SIZE = 500
"""Records per transaction.

Each commit appends the transaction to the WAL: a transaction per 25 records (DynamoDB's
BatchWriteItem size) made commits most of a Store's time; 500 records keep a transaction
short (tens of milliseconds) for a writer in another process waiting for the lock, and
give the other executions of this process a turn between transactions.
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
_VERSION = (
    "SELECT CASE json_type(data, '$.metadata.version') WHEN 'integer' "
    "THEN json_extract(data, '$.metadata.version') ELSE 0 END FROM candidates WHERE pk = ? AND sk = ?"
)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS candidates (
    pk           TEXT NOT NULL,
    sk           TEXT NOT NULL,
    program_id   TEXT NOT NULL,
    marketplace  TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    score        REAL,              -- NULL: not scored; sorts last in 'score DESC'
    channels     TEXT NOT NULL,     -- JSON array of channel names, sorted
    data         TEXT NOT NULL,     -- the candidate document, JSON object
    updated_at   TEXT NOT NULL,     -- ISO 8601 UTC, set by the store when a row changes
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
-- query(program) and query(program, marketplace) walk one of these in order:
-- no sort step, and a LIMIT stops after that many rows.
CREATE INDEX IF NOT EXISTS candidates_by_program
    ON candidates (program_id, score DESC, pk, sk);
CREATE INDEX IF NOT EXISTS candidates_by_program_marketplace
    ON candidates (program_id, marketplace, score DESC, pk, sk);
-- Which execution issued each engagement (claim_engagements): the first claim wins.
CREATE TABLE IF NOT EXISTS engagement_claims (
    key          TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL,
    claimed_at   TEXT NOT NULL
) WITHOUT ROWID;
"""

_COLUMNS = "customer_id, program_id, marketplace, subject_type, subject_id, score, channels, data"

_GET = f"SELECT {_COLUMNS} FROM candidates WHERE pk = ? AND sk = ?"

_UPSERT = """
INSERT INTO candidates
    (pk, sk, program_id, marketplace, customer_id, subject_type, subject_id, score, channels, data, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (pk, sk) DO UPDATE SET
    program_id = excluded.program_id,
    marketplace = excluded.marketplace,
    customer_id = excluded.customer_id,
    subject_type = excluded.subject_type,
    subject_id = excluded.subject_id,
    score = excluded.score,
    channels = excluded.channels,
    data = excluded.data,
    updated_at = excluded.updated_at
WHERE (candidates.program_id, candidates.marketplace, candidates.customer_id, candidates.subject_type,
       candidates.subject_id, candidates.score, candidates.channels, candidates.data)
   IS NOT (excluded.program_id, excluded.marketplace, excluded.customer_id, excluded.subject_type,
           excluded.subject_id, excluded.score, excluded.channels, excluded.data)
"""


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
            self._db.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL loses no data on an application crash and
            # skips an fsync per commit; only a power cut may lose the last
            # commits, never corrupt the file.
            self._db.execute("PRAGMA synchronous = NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                self._db.close()
                raise StorageError(
                    f"candidate database {self.path} has schema version {version}, newer than this "
                    f"ceap understands ({SCHEMA_VERSION}); upgrade ceap or use another database file"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            self._db.close()
            raise self._storage_error(exc, "open") from exc

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
        rows: list[tuple[object, ...]] = []
        updated_at = self._clock.now().isoformat()
        for record in records:
            key = (record.pk, record.sk)
            try:
                data_json = encode_candidate_data(record)
            except InputError as error:
                failed.append((key, failure_reason(error)))
                continue
            keys.append(key)
            rows.append(
                (
                    key[0],
                    key[1],
                    record.program_id,
                    record.marketplace,
                    record.customer_id,
                    record.subject_type,
                    record.subject_id,
                    None if record.score is None else float(record.score),
                    json.dumps(sorted(set(record.channels)), ensure_ascii=False),
                    data_json,
                    updated_at,
                )
            )
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
        found: dict[tuple[str, str], CandidateRecord] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 400):
            chunk = unique[start : start + 400]
            marks = ",".join("(?, ?)" for _ in chunk)
            try:
                with self._lock:
                    rows = self._db.execute(
                        f"SELECT pk, sk, {_COLUMNS} FROM candidates WHERE (pk, sk) IN (VALUES {marks})",
                        [part for key in chunk for part in key],
                    ).fetchall()
            except sqlite3.Error as exc:
                raise self._storage_error(exc, "read") from exc
            for row in rows:
                found[(row[0], row[1])] = _record(row[2:])
        return [found.get(key) for key in keys]

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
        unique = list(dict.fromkeys(keys))
        holders: dict[str, str] = {}
        for start in range(0, len(unique), 500):
            if start:
                await asyncio.sleep(0)
            chunk = unique[start : start + 500]
            try:
                with self._lock:
                    # One transaction under the write lock: the first claim of a key wins, in any process.
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        self._db.executemany(
                            "INSERT OR IGNORE INTO engagement_claims (key, execution_id, claimed_at) VALUES (?, ?, ?)",
                            [(key, execution_id, claimed_at) for key in chunk],
                        )
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
        conflicts: dict[tuple[str, str], int | None] = {}
        with self._lock:
            # IMMEDIATE takes the write lock up front, so a concurrent writer
            # in another process waits at BEGIN instead of failing mid-batch,
            # and nobody writes between a condition's check and its write.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if expected:
                    writable = []
                    for row in rows:
                        key = (row[0], row[1])
                        if key in expected:
                            found_row = self._db.execute(_VERSION, key).fetchone()
                            found = None if found_row is None else int(found_row[0])
                            if found != expected[key]:  # type: ignore[index]
                                conflicts[key] = found  # type: ignore[index]
                                continue
                        writable.append(row)
                    rows = writable
                self._db.executemany(_UPSERT, rows)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return conflicts

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


def _record(row: tuple[object, ...]) -> CandidateRecord:
    customer_id, program_id, marketplace, subject_type, subject_id, score, channels, data = row
    return CandidateRecord(
        customer_id=customer_id,  # type: ignore[arg-type]
        program_id=program_id,  # type: ignore[arg-type]
        marketplace=marketplace,  # type: ignore[arg-type]
        subject_type=subject_type,  # type: ignore[arg-type]
        subject_id=subject_id,  # type: ignore[arg-type]
        score=score,  # type: ignore[arg-type]
        channels=frozenset(json.loads(channels)),  # type: ignore[arg-type]
        data=msgspec.json.decode(data),  # type: ignore[arg-type]  # as json.loads, in a third of the time
    )
