"""ETL's source reading: the format from the extension, records line by line, and byte ranges.

A JSON Lines source is split into byte ranges that separate calls read on their own
(:func:`range_records`): a range ``[start, end)`` holds the lines that *start* in it. A
reader of a range that starts at ``b > 0`` skips through the first newline at or after
``b - 1`` (the line before it ends there, or the range starts mid-line and that line
belongs to the range before), then reads whole lines, past ``end`` for the last one. So
every line is read by exactly one range whatever the boundaries. Line numbers are counted
within the range; the caller adds the lines of the ranges before it.

A JSON array or a CSV file is one document: it is read whole by one call
(:func:`records`), as is a source too small to split.
"""

from __future__ import annotations

import csv
import io
import json
from contextlib import contextmanager
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ceap_engine.pipeline.stage import (
    InvalidKey,
    NonFiniteNumber,
    ObjectNotFound,
    PermanentError,
    StageContext,
    decode_line,
    nesting_depth_exceeds,
)

__all__ = ["RANGE_READ_BYTES", "ParsedRecord", "range_records", "records", "source_format", "source_size",
           "splits_into_ranges"]

#: A range is read in pieces of this many bytes (a range call holds one piece and one line at a time).
RANGE_READ_BYTES = 4 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


@dataclass
class ParsedRecord:
    line: int
    value: Any = None
    error: str | None = None
    raw: bytes | None = None  # a JSON line, validated straight from its bytes
    code: str = "INVALID_JSON"


def source_format(uri: str) -> str:
    if uri.startswith("s3://") and not uri[5:].partition("/")[2]:
        raise PermanentError(f"source {uri!r} names a bucket but no object key: use s3://bucket/path/orders.jsonl")
    path = uri[5:].partition("/")[2] if uri.startswith("s3://") else uri
    suffix = PurePosixPath(path.replace("\\", "/")).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix == ".csv":
        return "csv"
    raise PermanentError(
        f"cannot tell the format of source {uri!r} from its extension {suffix or '(none)'!r}: "
        "name the file .jsonl (JSON Lines), .json or .csv"
    )


def _missing(uri: str) -> PermanentError:
    hint = (
        "check the bucket and key"
        if uri.startswith("s3://")
        else "check the path (the CLI resolves a relative path against the payload file)"
    )
    return PermanentError(f"source {uri!r} does not exist: {hint}")


async def _read(uri: str, context: StageContext) -> str:
    with _reading(uri):
        raw = await context.read_source(uri)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PermanentError(
            f"source {uri!r} is not UTF-8 text (byte {err.start}): export it as UTF-8 JSON Lines or CSV"
        ) from None


async def _source_lines(uri: str, context: StageContext) -> AsyncIterator[bytes]:
    with _reading(uri):
        first = True
        async for line in context.read_source_lines(uri):
            if first:
                line = line.removeprefix(_BOM)
                first = False
            yield line


def _parse_line(number: int, line: bytes) -> ParsedRecord | None:
    """One JSON line as a record to validate, or an error with its reason code; None if blank."""
    line = line.strip()
    if not line:
        return None
    if nesting_depth_exceeds(line):
        return ParsedRecord(number, error="JSON nested deeper than 64 levels", code="TOO_DEEP")
    if line[:1] == b"{":
        return ParsedRecord(number, raw=line)  # the common case: validated straight from the bytes
    try:
        return ParsedRecord(number, value=decode_line(line))
    except NonFiniteNumber as err:
        return ParsedRecord(number, error=str(err), code="NON_FINITE")
    except UnicodeDecodeError as err:
        return ParsedRecord(number, error=f"not UTF-8 text (byte {err.start})", code="INVALID_ENCODING")
    except json.JSONDecodeError as err:
        return ParsedRecord(number, error=f"not valid JSON: {err.msg} (column {err.colno})")


async def _json_lines(uri: str, context: StageContext) -> AsyncIterator[ParsedRecord]:
    number = 0
    async for line in _source_lines(uri, context):
        number += 1
        record = _parse_line(number, line)
        if record is not None:
            yield record


def _json_array(text: str, uri: str) -> Iterator[ParsedRecord]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise PermanentError(
            f"source {uri!r} starts like a JSON array but is not valid JSON ({err.msg} at line {err.lineno}, "
            f"column {err.colno}): fix it or export it as JSON Lines (.jsonl)"
        ) from None
    if not isinstance(items, list):
        raise PermanentError(f"source {uri!r} must be JSON Lines or one JSON array of records")
    for position, item in enumerate(items, start=1):
        yield ParsedRecord(position, value=item)


def _unflatten(row: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for column, cell in row.items():
        if cell is None or cell == "":
            continue  # an empty cell is an absent field, so defaults and "Field required" apply
        target = record
        *parents, leaf = column.strip().split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                break
        else:
            target[leaf] = cell
    return record


def _csv_rows(text: str, uri: str) -> Iterator[ParsedRecord]:
    # strict: a stray or unterminated quote would otherwise swallow the rest of the file silently.
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        for row in reader:
            if None in row:  # DictReader puts surplus cells under the key None
                yield ParsedRecord(
                    reader.line_num,
                    error=f"row has {len(reader.fieldnames or []) + len(row[None])} cells but the header "
                    f"has {len(reader.fieldnames or [])} columns",
                )
                continue
            if all(cell in (None, "") for cell in row.values()):
                continue
            yield ParsedRecord(reader.line_num, value=_unflatten(row))
    except csv.Error as err:
        raise PermanentError(f"source {uri!r} is not readable as CSV at line {reader.line_num}: {err}") from None


async def records(fmt: str, uri: str, context: StageContext) -> AsyncIterator[ParsedRecord]:
    if fmt == "jsonl" or (fmt == "json" and not await _starts_with_bracket(uri, context)):
        async for record in _json_lines(uri, context):
            yield record
        return
    text = await _read(uri, context)
    for record in _csv_rows(text, uri) if fmt == "csv" else _json_array(text, uri):
        yield record


async def _starts_with_bracket(uri: str, context: StageContext) -> bool:
    async for line in _source_lines(uri, context):
        if line.strip():
            return line.lstrip().startswith(b"[")
    return False



async def splits_into_ranges(fmt: str, uri: str, context: StageContext) -> bool:
    """Whether the source is JSON Lines (which byte ranges can split), not one JSON array or a CSV file."""
    return fmt == "jsonl" or (fmt == "json" and not await _starts_with_bracket(uri, context))


@contextmanager
def _reading(uri: str) -> Iterator[None]:
    """A source that is missing or cannot be read is the stage's PermanentError, naming it."""
    try:
        yield
    except (FileNotFoundError, ObjectNotFound):
        raise _missing(uri) from None
    except (IsADirectoryError, NotADirectoryError, PermissionError, InvalidKey) as err:
        raise PermanentError(f"source {uri!r} cannot be read: {err}") from None


async def source_size(uri: str, context: StageContext) -> int:
    """The source's length in bytes (a local file's size, an S3 object's HeadObject)."""
    with _reading(uri):
        return await context.source_size(uri)


async def _range_lines(uri: str, context: StageContext, start: int, end: int, size: int) -> AsyncIterator[list[bytes]]:
    """The lines that start in ``[start, end)`` of the source (see the module doc), without their newline.

    A list of lines a piece read (the loop over a piece's lines is the caller's, not one
    async step a line).
    """
    skipping = start > 0
    at = start - 1 if skipping else 0  # where the next piece is read from
    offset = at  # the source offset of ``rest``'s first byte
    rest = b""
    while at < size and offset < end:
        with _reading(uri):
            piece = await context.read_source_range(uri, at, min(size, at + RANGE_READ_BYTES))
        if not piece:
            break
        at += len(piece)
        buffer = rest + piece if rest else piece
        if skipping:
            newline = buffer.find(b"\n")
            if newline < 0:
                rest, offset = b"", at
                continue
            buffer, offset, skipping = buffer[newline + 1:], offset + newline + 1, False
        lines = buffer.split(b"\n")
        rest = lines.pop()
        if offset + len(buffer) - len(rest) > end:  # the range ends within this piece: its lines up to there
            kept = []
            for line in lines:
                if offset >= end:
                    break
                kept.append(line)
                offset += len(line) + 1
            yield kept
            return
        offset += len(buffer) - len(rest)
        yield lines
    if rest and offset < end and not skipping:
        yield [rest]


async def range_records(uri: str, context: StageContext, start: int, end: int, size: int
                        ) -> AsyncIterator[list[tuple[int, ParsedRecord | None]]]:
    """Each line starting in ``[start, end)``: its number within the range (from 1) and its record (None if blank).

    In lists, one a piece of the source read (:data:`RANGE_READ_BYTES`).
    """
    number = 0
    async for lines in _range_lines(uri, context, start, end, size):
        if number == 0 and start == 0 and lines:
            lines[0] = lines[0].removeprefix(_BOM)
        batch = []
        for line in lines:
            number += 1
            batch.append((number, _parse_line(number, line)))
        yield batch
