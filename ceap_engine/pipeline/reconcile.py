"""The reconciliation chain of a run: every record from the lines read to the actions.

Each stage's manifest carries its balance (``in = out + rejected + errors + skipped +
merged``) and, from the second stage on, the previous stage's ``out`` it should have
read. :func:`chain` turns those into one readable line per stage, each with whether it
holds, for the run summary (text and JSON)::

    >>> [link.text for link in chain({"Filter": {"in": 3, "out": 2, "rejected": 1, "previousOut": 3}}, ["Filter"])]
    ['Filter: 3 in (= previous out 3) = 2 out + 1 rejected']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Link", "chain"]

_TERMS = (("out", "out"), ("rejected", "rejected"), ("errors", "errors"), ("skipped", "skipped"), ("merged", "merged"))


@dataclass(frozen=True)
class Link:
    """One stage's line of the chain and whether it holds."""

    stage: str
    text: str
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "check": self.text, "ok": self.ok}


def chain(reconciliations: Mapping[str, Mapping[str, Any]], order: Sequence[str]) -> list[Link]:
    """One :class:`Link` per stage in ``order`` that has a reconciliation; missing links fail."""
    links: list[Link] = []
    previous_out: int | None = None
    for stage in order:
        rec = reconciliations.get(stage)
        if not rec:
            continue
        n_in = int(rec.get("in", 0))
        terms = [(label, int(rec.get(key, 0) or 0)) for key, label in _TERMS]
        shown = " + ".join(f"{value} {label}" for label, value in terms if value or label == "out")
        balanced = n_in == sum(value for _, value in terms)
        expected = rec.get("previousOut", previous_out if links else None)
        chained = expected is None or int(expected) == n_in
        what = "read" if not links and expected is None else "in"
        link = f" (= previous out {expected})" if expected is not None else ""
        links.append(Link(stage, f"{stage}: {n_in} {what}{link} = {shown}", balanced and chained))
        previous_out = int(rec.get("out", 0))
    return links
