"""Rules every CandidateStore applies before it writes, so all backends refuse the same records."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping

from ceap_engine.errors import InputError, Problem
from ceap_engine.ports import CandidateRecord

__all__ = ["encode_candidate_data", "validate_query_limit"]


_CANDIDATE_KEY_FIELDS = ("customer_id", "program_id", "marketplace", "subject_type", "subject_id")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_candidate_data(record: CandidateRecord) -> str:
    """Check that ``record`` can be stored and return its ``data`` as compact JSON.

    Every :class:`CandidateStore` calls this before writing, so all backends
    refuse the same records and report them in :attr:`PutResult.failed` with
    the same reason. Refused: empty or non-string key parts, a score that is
    not a finite number, channels that are not non-empty strings, ``data``
    that is not a JSON object of JSON values (``NaN``, ``datetime``, ``set``
    ...). All problems of the record are collected into one :class:`InputError`;
    backends report ``"; ".join(p.message for p in error.problems)`` as the
    record's failure reason.

    >>> encode_candidate_data(CandidateRecord("c-1", "p-1", "US", "ORDER", "o-1", data={"x": 1}))
    '{"x":1}'
    """
    problems: list[Problem] = []
    for name in _CANDIDATE_KEY_FIELDS:
        value = getattr(record, name)
        if not isinstance(value, str) or not value or not _is_utf8(value):
            problems.append(Problem(f"/{name}", f"{name} must be a non-empty UTF-8 string, got {value!r}"))
    score = record.score
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score)
    ):
        problems.append(Problem("/score", f"score must be a finite number or None, got {score!r}"))
    channels = record.channels
    if (
        isinstance(channels, str | bytes)
        or not isinstance(channels, Iterable)
        or not all(isinstance(c, str) and c and _is_utf8(c) for c in channels)
    ):
        problems.append(
            Problem("/channels", f"channels must be a set of non-empty channel names, got {channels!r}")
        )
    text = ""
    if not isinstance(record.data, Mapping):
        problems.append(Problem("/data", f"data must be a JSON object (a mapping), got {type(record.data).__name__}"))
    else:
        try:
            text = json.dumps(dict(record.data), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            problems.append(
                Problem(
                    "/data",
                    f"data is not JSON-serialisable ({exc}); convert it first, e.g. with model_dump(mode='json')",
                )
            )
        else:
            if not _is_utf8(text):
                problems.append(Problem("/data", "data holds a string that is not valid UTF-8 (a lone surrogate)"))
    if problems:
        raise InputError(problems, f"candidate {record.pk} {record.sk}")
    return text


def validate_query_limit(limit: int | None) -> int | None:
    """Return ``limit`` if it is ``None`` or a whole number >= 1, else raise :class:`InputError`.

    >>> validate_query_limit(10)
    10
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(
            [Problem("/limit", f"limit must be a whole number >= 1, or None for no limit; got {limit!r}")],
            "candidate query",
        )
    return limit
