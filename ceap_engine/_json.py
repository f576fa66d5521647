"""Compact JSON as Step Functions writes it, and its size - on the interpreter's hot path.

``json.dumps`` rebuilds its C encoder on every call; the interpreter serialises
every state's output (for the 256 KiB limit) and every history payload, so
the encoder is built once here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["compact_json", "json_size", "strict_json"]


def _compact_encoder(allow_nan: bool = True) -> Callable[[Any], str]:
    try:
        from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - interpreters without the C accelerator
        c_make_encoder = None
    if c_make_encoder is None:  # pragma: no cover
        return lambda value: json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan)
    fallback = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    # Arguments as json.JSONEncoder.iterencode passes them for this configuration.
    encoder = c_make_encoder(None, fallback.default, encode_basestring, None, ":", ",", False, False, allow_nan)

    def encode(value: Any) -> str:
        if isinstance(value, str):
            return encode_basestring(value)
        return "".join(encoder(value, 0))

    return encode


#: ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``, faster.
compact_json: Callable[[Any], str] = _compact_encoder()


#: The same, refusing ``NaN``/``Infinity`` (``ValueError``) and non-JSON values (``TypeError``).
#: No circular-reference check: a cyclic value raises ``RecursionError``.
strict_json: Callable[[Any], str] = _compact_encoder(allow_nan=False)


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (what Step Functions' payload limit counts).

    >>> json_size({"a": "é"})
    10
    """
    text = compact_json(value)
    return len(text) if text.isascii() else len(text.encode("utf-8"))
