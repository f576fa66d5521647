"""Candidate documents held as their JSON text: what the candidate stores hand back.

- :class:`EncodedDocument`: a ``CandidateRecord.data`` that is its compact JSON text, parsed on first read;
- :func:`document_text`: that text, for a reader that decodes it into its own types;
- :func:`document_version`: ``metadata.version`` read from the text alone.

Used by :class:`ceap_engine.ports.CandidateRecord` (which re-exports them) and every store.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import msgspec

__all__ = ["EncodedDocument", "document_text", "document_version"]


class EncodedDocument(MutableMapping[str, Any]):
    """A candidate document held as its compact JSON text, parsed only if someone reads it.

    The Store stage encodes each candidate once (msgspec, a few microseconds) and
    stores that text; building the same document as a dict as well (``to_builtins``)
    cost more than the encoding, for stores that never look at the dict. The stores
    read records back the same way: a reader that wants the candidate decodes the text
    into its own types (:func:`document_text`) and never builds the dict. A
    :class:`CandidateRecord` with ``data=EncodedDocument(text)`` and ``data_json=text``
    says exactly what the text says; reading ``data`` (``record.data["metadata"]``,
    ``dict(record.data)``) parses the text once and then behaves as that dict, changes
    included (``record.version`` reads the version alone). A record the stores hand back
    carries no ``data_json``: written back, it is written as its text if nobody read the
    document, else as the document now is. The text must be a JSON object.

    >>> doc = EncodedDocument('{"metadata":{"version":2}}')
    >>> from ceap_engine.ports import CandidateRecord
    >>> doc["metadata"], doc == {"metadata": {"version": 2}}, CandidateRecord("c", "p", "US", "T", "s", data=doc).version
    ({'version': 2}, True, 2)
    """

    __slots__ = ("_value", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._value: dict[str, Any] | None = None

    def _document(self) -> dict[str, Any]:
        if self._value is None:
            self._value = msgspec.json.decode(self.text)  # as json.loads, in a third of the time
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._document()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._document()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._document()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._document())

    def __len__(self) -> int:
        return len(self._document())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EncodedDocument):
            return self.text == other.text or self._document() == other._document()
        return self._document() == other if isinstance(other, Mapping) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a document compares by value, like the dict it stands for

    def __repr__(self) -> str:
        return repr(self._document())


class _Versioned(msgspec.Struct):
    metadata: Any = None


# Parses a document's "metadata" and skips the rest without building it.
_VERSIONED = msgspec.json.Decoder(_Versioned)


def document_version(data_json: str | bytes) -> int:
    """:attr:`CandidateRecord.version` of the record whose ``data`` is this JSON object, without parsing all of it.

    >>> document_version('{"customerId":"c","metadata":{"version":4}}'), document_version('{"metadata":{"version":true}}')
    (4, 0)
    >>> document_version('[1]')  # not an object: no version, as for such a dict
    0
    """
    try:
        metadata = _VERSIONED.decode(data_json).metadata
    except msgspec.ValidationError:
        return 0
    version = metadata.get("version") if isinstance(metadata, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else 0


def document_text(record: Any) -> str | None:
    """The JSON text of ``record.data`` when the record holds it unparsed (an :class:`EncodedDocument`
    nobody has read), else ``None``: a reader decodes it into its own types instead of walking the dict.

    >>> from ceap_engine.ports import CandidateRecord
    >>> document_text(CandidateRecord("c", "p", "US", "T", "s", data=EncodedDocument('{"a":1}')))
    '{"a":1}'
    >>> document_text(CandidateRecord("c", "p", "US", "T", "s", data={"a": 1})) is None
    True
    """
    data = record.data
    return data.text if type(data) is EncodedDocument and data._value is None else None
