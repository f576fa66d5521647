"""A :class:`WorkflowGraph` as Graphviz DOT text, and Graphviz to lay it out.

:func:`to_dot` is pure: node shape by state type, edges styled by kind,
Parallel/Map drawn as nested clusters, terminal states doubly outlined, and
(for a report) each state filled with its outcome's colour. Every node gets
an SVG ``id`` (``state-...``) and ``class`` (``state type-Task outcome-failed``)
so a page can find and style it. :class:`Graphviz` runs the ``dot`` program
(Debian/Ubuntu: ``apt-get install graphviz``) - the one effect of this package.

Example::

    text = to_dot(workflow_graph(definition), outcomes={"ETL": "succeeded"})
    svg = Graphviz().render(text, "svg")
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Collection, Mapping

from ..errors import CeapError
from .graph import StateNode, WorkflowGraph

__all__ = ["OUTCOME_COLOURS", "Graphviz", "GraphvizMissing", "dom_id", "to_dot"]

#: outcome -> (fill, outline); the report's legend uses the same table.
OUTCOME_COLOURS: dict[str, tuple[str, str]] = {
    "succeeded": ("#c8e6c9", "#2e7d32"),
    "retried": ("#fff59d", "#b08800"),
    "caught": ("#ffe0b2", "#e65100"),
    "failed": ("#ffcdd2", "#c62828"),
    "running": ("#bbdefb", "#1565c0"),
    "not_reached": ("#f5f5f5", "#9e9e9e"),
}

_SHAPES = {
    "Task": "box", "Pass": "box", "Choice": "diamond", "Wait": "hexagon", "Succeed": "box",
    "Fail": "octagon", "Parallel": "box3d", "Map": "folder",
}
_EDGE_STYLE = {
    "next": 'color="#424242"',
    "default": 'color="#616161" fontcolor="#616161"',
    "choice": 'color="#1565c0" fontcolor="#1565c0"',
    "catch": 'color="#e65100" fontcolor="#e65100" style=dashed',
    "retry": 'color="#b08800" fontcolor="#8d6e00" style=dotted',
    "branch": 'color="#757575" style=bold',
}


def dom_id(key: str) -> str:
    """The SVG/HTML id of a state's node.

    >>> dom_id("Fan/items/Score.Failed")
    'state-Fan_items_Score_Failed'
    """
    return "state-" + re.sub(r"[^A-Za-z0-9_-]", "_", key)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _short_resource(resource: str | None) -> str:
    if not resource:
        return ""
    return resource.removeprefix("arn:aws:states:::").split(":function:")[-1]


def to_dot(graph: WorkflowGraph, outcomes: Mapping[str, str] | None = None, title: str | None = None,
           taken: Collection[tuple[str, str]] | None = None) -> str:
    """DOT text of the graph; ``outcomes`` maps node keys to an :data:`OUTCOME_COLOURS` key,
    ``taken`` holds the (source, target) node keys of the edges an execution went along (drawn bold).

    >>> from ceap_engine.observe.graph import workflow_graph
    >>> "digraph" in to_dot(workflow_graph({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}))
    True
    """
    lines = [
        "digraph workflow {",
        '  graph [rankdir=TB fontname="Helvetica" fontsize=11 nodesep=0.35 ranksep=0.45 compound=true'
        + (f" label={_quote(title)} labelloc=t" if title else "") + "];",
        '  node [fontname="Helvetica" fontsize=11 style="rounded,filled" fillcolor="#ffffff" color="#455a64" penwidth=1.3];',
        '  edge [fontname="Helvetica" fontsize=9 arrowsize=0.7];',
        '  "__start__" [label="" shape=circle width=0.18 style=filled fillcolor="#263238" id="state-start" class="marker"];',
        '  "__end__" [label="" shape=doublecircle width=0.14 style=filled fillcolor="#263238" id="state-end" class="marker"];',
    ]
    owners = {g.owner for g in graph.groups}
    ids: dict[str, str] = {}

    def node_line(node: StateNode, indent: str) -> str:
        outcome = (outcomes or {}).get(node.key)
        attrs = [f"label={_quote(_node_label(node))}", f"shape={_SHAPES.get(node.type, 'box')}"]
        if node.type in ("Choice", "Wait", "Fail", "Parallel", "Map"):
            attrs.append('style="filled"')
        if node.terminal:
            attrs.append("peripheries=2")
        if outcome is not None:
            fill, line = OUTCOME_COLOURS.get(outcome, OUTCOME_COLOURS["not_reached"])
            attrs.append(f'fillcolor="{fill}" color="{line}"')
            if outcome == "not_reached":
                attrs.append('fontcolor="#757575"')
            if outcome == "failed":
                attrs.append("penwidth=2.5")
        node_id = dom_id(node.key)
        while node_id in ids.values():
            node_id += "_"
        ids[node.key] = node_id
        classes = f"state type-{node.type}" + (f" outcome-{outcome}" if outcome else "")
        tooltip = node.comment or node.type
        attrs += [f'id="{node_id}"', f'class="{classes}"', f"tooltip={_quote(tooltip)}"]
        return f"{indent}{_quote(node.key)} [{' '.join(attrs)}];"

    counter = iter(range(1, 1_000_000))

    def emit(group: str | None, indent: str) -> None:
        for node in graph.children(group):
            if node.key not in owners:
                lines.append(node_line(node, indent))
                continue
            lines.append(f"{indent}subgraph cluster_{next(counter)} {{")
            lines.append(f'{indent}  graph [label="" style="rounded" color="#b0bec5"];')
            lines.append(node_line(node, indent + "  "))
            for sub in (g for g in graph.groups if g.owner == node.key):
                lines.append(f"{indent}  subgraph cluster_{next(counter)} {{")
                lines.append(f'{indent}    graph [label={_quote(sub.label)} style="rounded,dashed" color="#90a4ae" fontcolor="#546e7a"];')
                emit(sub.key, indent + "    ")
                lines.append(f"{indent}  }}")
            lines.append(f"{indent}}}")

    emit(None, "  ")
    lines.append(f'  "__start__" -> {_quote(graph.start)} [color="#263238"];')
    went = set(taken or ())
    for edge in graph.edges:
        attrs = _EDGE_STYLE[edge.kind]
        label = f" label={_quote(edge.label)}" if edge.label else ""
        classes = f"edge-{edge.kind}"
        if (edge.source, edge.target) in went:
            attrs += " penwidth=2.6"
            classes += " taken"
        lines.append(f"  {_quote(edge.source)} -> {_quote(edge.target)} [{attrs}{label} class=\"{classes}\"];")
    for node in graph.children(None):
        if node.terminal:
            style = 'color="#c62828" style=dashed' if node.type == "Fail" else 'color="#263238"'
            lines.append(f'  {_quote(node.key)} -> "__end__" [{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_label(node: StateNode) -> str:
    detail = _short_resource(node.resource) if node.type == "Task" else node.type
    return f"{node.name}\n{detail}" if detail else node.name


class GraphvizMissing(CeapError):
    """Graphviz's ``dot`` is not installed; the message says how to install it."""


_INSTALL_HINT = ("Graphviz's 'dot' program is needed to draw the graph and was not found on PATH. "
                 "Install it: 'sudo apt-get install graphviz' (Debian/Ubuntu), 'brew install graphviz' (macOS), "
                 "or see https://graphviz.org/download/ - or write DOT text with '-o FILE.dot' and lay it out elsewhere.")


class Graphviz:
    """Graphviz's ``dot`` as a layout engine: DOT text in, SVG or PNG bytes out.

    Example::

        svg_bytes = Graphviz().render("digraph { a -> b }", "svg")
    """

    FORMATS = ("svg", "png")

    def __init__(self, executable: str | None = None, timeout_seconds: float = 60.0) -> None:
        self.executable = executable
        self.timeout_seconds = timeout_seconds

    def path(self) -> str:
        """The ``dot`` program to run; raises :class:`GraphvizMissing` (with how to install it) when absent."""
        found = shutil.which(self.executable or "dot")
        if found is None:
            raise GraphvizMissing(_INSTALL_HINT)
        return found

    def render(self, dot_text: str, fmt: str) -> bytes:
        """Lay out and draw ``dot_text`` as ``fmt`` (svg or png)."""
        if fmt not in self.FORMATS:
            raise ValueError(f"Graphviz output format must be one of {self.FORMATS}, not {fmt!r}")
        try:
            done = subprocess.run([self.path(), f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True,
                                  timeout=self.timeout_seconds, check=False)
        except subprocess.TimeoutExpired:
            raise CeapError(f"Graphviz took more than {self.timeout_seconds:g} s to lay out the graph") from None
        if done.returncode != 0:
            raise CeapError(f"Graphviz failed (exit {done.returncode}): {done.stderr.decode('utf-8', 'replace').strip()}")
        return done.stdout

    def svg(self, dot_text: str) -> str:
        """The SVG document as text, without the XML prolog and DOCTYPE (ready to inline in HTML)."""
        text = self.render(dot_text, "svg").decode("utf-8")
        start = text.find("<svg")
        # Graphviz writes every "-" of an id or class as "&#45;": the same character, but unreadable.
        return (text[start:] if start >= 0 else text).replace("&#45;", "-")
