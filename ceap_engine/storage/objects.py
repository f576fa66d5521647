"""Rules every ObjectStore applies, and JSON helpers over the port.

Object keys follow S3's rules plus a file-system safety net (no ``..``, no absolute
paths), so the same keys work on S3, on disk and in memory.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ceap_engine.errors import InvalidKey
from ceap_engine.ports import ObjectStore

__all__ = ["MAX_KEY_BYTES", "read_json", "validate_bucket", "validate_key", "write_json"]

MAX_KEY_BYTES = 1024


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe object key, else raise :class:`InvalidKey`.

    Refused: empty keys, keys over 1,024 UTF-8 bytes or not valid UTF-8,
    absolute paths, ``..`` or ``.`` segments, backslashes, empty segments
    (``a//b``, ``a/``) and NUL or other control characters - anything that
    could leave its bucket on a file system or that S3 would store under a
    different name.

    >>> validate_key("executions/e-1/ETL/output.json")
    'executions/e-1/ETL/output.json'
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("object key must be a non-empty string")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey(f"object key is not valid UTF-8 (it holds a lone surrogate): {key!r}") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKey(f"object key is longer than {MAX_KEY_BYTES} bytes: {key[:60]!r}...")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise InvalidKey(f"object key contains a NUL or control character: {key!r}")
    if key.startswith("/") or "\\" in key or (len(key) > 1 and key[1] == ":"):
        raise InvalidKey(f"object key must be relative, without backslashes or drive letters: {key!r}")
    for segment in key.split("/"):
        if segment in ("..", "."):
            raise InvalidKey(f"object key must not contain '.' or '..' segments: {key!r}")
    if "//" in key or key.endswith("/"):
        raise InvalidKey(f"object key must not contain empty segments ('//' or a trailing '/'): {key!r}")
    return key


def check_range(start: int, end: int) -> None:
    """Refuse a byte range that is not ``0 <= start <= end`` (what :meth:`ObjectStore.get_range` reads).

    >>> check_range(3, 2)
    Traceback (most recent call last):
    ...
    ValueError: a byte range needs 0 <= start <= end, got 3..2
    """
    if start < 0 or end < start:
        raise ValueError(f"a byte range needs 0 <= start <= end, got {start}..{end}")


def validate_bucket(bucket: str) -> str:
    """Return ``bucket`` if it is a valid S3 bucket name (3-63 chars, lowercase)."""
    if not isinstance(bucket, str) or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket) or ".." in bucket:
        raise InvalidKey(
            f"invalid bucket name {bucket!r}: use 3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )
    return bucket


async def read_json(store: ObjectStore, bucket: str, key: str) -> Any:
    """Read and parse a JSON object from ``store``."""
    return json.loads(await store.get(bucket, key))


async def write_json(store: ObjectStore, bucket: str, key: str, value: Any) -> int:
    """Serialise ``value`` as compact UTF-8 JSON at ``key``; return its size in bytes."""
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    await store.put(bucket, key, data, content_type="application/json")
    return len(data)
