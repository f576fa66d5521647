"""The state machine as a graph: states as nodes, transitions as labelled edges.

:func:`workflow_graph` reads any ASL definition (JSONPath or JSONata) into a
:class:`WorkflowGraph`: one :class:`StateNode` per state (nested ones too),
one :class:`Transition` per ``Next``, ``Default``, Choice rule, ``Catch`` and
``Retry`` (a retry is an edge from the state back to itself, labelled with
its errors and schedule), and one :class:`StateGroup` per Parallel branch and
Map item processor, so the layout draws them as nested boxes. The model is
pure data; :mod:`ceap_engine.observe.dot` turns it into Graphviz text.

Example::

    graph = workflow_graph({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    [n.name for n in graph.nodes], graph.start   # (['A'], 'A')
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..asl.definition import validate_definition
from ..errors import DefinitionError

__all__ = ["StateGroup", "StateNode", "Transition", "WorkflowGraph", "choice_label", "workflow_graph"]

#: Edge kinds, in the order a legend lists them.
EDGE_KINDS = ("next", "default", "choice", "catch", "retry", "branch")


@dataclass(frozen=True, slots=True)
class StateNode:
    """One state. ``key`` is unique in the graph (names may repeat in separate Map/Parallel scopes)."""

    key: str
    name: str
    type: str
    group: str | None  # the key of the innermost StateGroup holding it; None at the top level
    start: bool  # the StartAt of its scope
    terminal: bool  # End: true, Succeed or Fail
    resource: str | None = None
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """An edge: ``kind`` is next, default, choice, catch, retry (a self loop) or branch (into a group)."""

    source: str
    target: str
    kind: str
    label: str = ""


@dataclass(frozen=True, slots=True)
class StateGroup:
    """A nested scope: a Parallel branch or a Map's item processor, owned by that state."""

    key: str
    label: str
    kind: str  # "parallel" or "map"
    owner: str  # the key of the Parallel/Map state
    parent: str | None  # the enclosing group's key, None at the top level


@dataclass
class WorkflowGraph:
    """Nodes, edges and nested groups of one state machine."""

    start: str
    nodes: list[StateNode] = field(default_factory=list)
    edges: list[Transition] = field(default_factory=list)
    groups: list[StateGroup] = field(default_factory=list)

    def node(self, key: str) -> StateNode:
        for n in self.nodes:
            if n.key == key:
                return n
        raise KeyError(key)

    def keys_named(self, name: str) -> list[str]:
        """The keys of every node with this state name (one, unless scopes reuse a name)."""
        return [n.key for n in self.nodes if n.name == name]

    def children(self, group: str | None) -> Iterator[StateNode]:
        return (n for n in self.nodes if n.group == group)

    def subgroups(self, group: str | None) -> Iterator[StateGroup]:
        return (g for g in self.groups if g.parent == group)


def workflow_graph(definition: Any) -> WorkflowGraph:
    """The graph of an ASL definition (a dict or JSON text); an invalid one raises DefinitionError.

    >>> g = workflow_graph({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}})
    >>> g.nodes[0].terminal
    True
    """
    if isinstance(definition, str | bytes):
        definition = json.loads(definition)
    problems = validate_definition(definition)
    if problems:
        raise DefinitionError(problems)
    builder = _GraphBuilder()
    builder.scope(definition, group=None, prefix="")
    return WorkflowGraph(start=builder.key_of("", definition["StartAt"]), nodes=builder.nodes,
                         edges=builder.edges, groups=builder.groups)


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[StateNode] = []
        self.edges: list[Transition] = []
        self.groups: list[StateGroup] = []

    @staticmethod
    def key_of(prefix: str, name: str) -> str:
        return f"{prefix}{name}"

    def scope(self, machine: dict[str, Any], group: str | None, prefix: str) -> str:
        """Add one scope's states; returns the key of its StartAt."""
        states: dict[str, Any] = machine["States"]
        for name, state in states.items():
            key = self.key_of(prefix, name)
            kind = state["Type"]
            resource = state.get("Resource") if isinstance(state.get("Resource"), str) else None
            comment = state.get("Comment") if isinstance(state.get("Comment"), str) else None
            terminal = state.get("End") is True or kind in ("Succeed", "Fail")
            self.nodes.append(StateNode(key, name, kind, group, name == machine["StartAt"], terminal, resource, comment))
            self.transitions(prefix, key, state)
            if kind == "Parallel":
                for i, branch in enumerate(state.get("Branches") or []):
                    sub = f"{key}/branch{i + 1}"
                    self.groups.append(StateGroup(sub, f"{name}: branch {i + 1}", "parallel", key, group))
                    first = self.scope(branch, sub, f"{sub}/")
                    self.edges.append(Transition(key, first, "branch", f"branch {i + 1}"))
            elif kind == "Map":
                processor = state.get("ItemProcessor") or state.get("Iterator")
                if isinstance(processor, dict):
                    sub = f"{key}/items"
                    mode = (processor.get("ProcessorConfig") or {}).get("Mode", "INLINE")
                    label = f"{name}: each item ({'distributed' if mode == 'DISTRIBUTED' else 'inline'})"
                    self.groups.append(StateGroup(sub, label, "map", key, group))
                    first = self.scope(processor, sub, f"{sub}/")
                    self.edges.append(Transition(key, first, "branch", _map_label(state)))
        return self.key_of(prefix, machine["StartAt"])

    def transitions(self, prefix: str, key: str, state: dict[str, Any]) -> None:
        add = self.edges.append
        for rule in state.get("Choices") or []:
            add(Transition(key, self.key_of(prefix, rule["Next"]), "choice", choice_label(rule)))
        if isinstance(state.get("Default"), str):
            add(Transition(key, self.key_of(prefix, state["Default"]), "default", "default"))
        for retrier in state.get("Retry") or []:
            if retrier.get("MaxAttempts", 3) == 0:
                continue  # "never retry these": no edge to draw
            add(Transition(key, key, "retry", _retry_label(retrier)))
        for catcher in state.get("Catch") or []:
            add(Transition(key, self.key_of(prefix, catcher["Next"]), "catch",
                           "catch " + ", ".join(catcher.get("ErrorEquals") or [])))
        if isinstance(state.get("Next"), str):
            add(Transition(key, self.key_of(prefix, state["Next"]), "next"))


def _retry_label(retrier: dict[str, Any]) -> str:
    errors = ", ".join(retrier.get("ErrorEquals") or [])
    interval = retrier.get("IntervalSeconds", 1)
    attempts = retrier.get("MaxAttempts", 3)
    rate = retrier.get("BackoffRate", 2.0)
    return f"retry {errors}: {attempts}x, {interval}s x{rate:g}"


def _map_label(state: dict[str, Any]) -> str:
    limit = state.get("MaxConcurrency")
    return f"each item (max {limit} at once)" if limit else "each item"


_OPERATORS = {
    "StringEquals": "==", "NumericEquals": "==", "BooleanEquals": "==", "TimestampEquals": "==",
    "StringLessThan": "<", "NumericLessThan": "<", "TimestampLessThan": "<",
    "StringGreaterThan": ">", "NumericGreaterThan": ">", "TimestampGreaterThan": ">",
    "StringLessThanEquals": "<=", "NumericLessThanEquals": "<=", "TimestampLessThanEquals": "<=",
    "StringGreaterThanEquals": ">=", "NumericGreaterThanEquals": ">=", "TimestampGreaterThanEquals": ">=",
    "StringMatches": "matches",
}


def choice_label(rule: dict[str, Any], limit: int = 60) -> str:
    """A short text for a Choice rule (JSONPath or JSONata).

    >>> choice_label({"Variable": "$.n", "NumericGreaterThan": 3, "Next": "B"})
    '$.n > 3'
    >>> choice_label({"Condition": "{% $n > 3 %}", "Next": "B"})
    '$n > 3'
    """
    text = _rule_text(rule)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rule_text(rule: dict[str, Any]) -> str:
    if "Condition" in rule:
        cond = rule["Condition"]
        if isinstance(cond, str) and cond.startswith("{%") and cond.endswith("%}"):
            return cond[2:-2].strip()
        return json.dumps(cond)
    for combinator, joiner in (("And", " and "), ("Or", " or ")):
        if combinator in rule:
            return "(" + joiner.join(_rule_text(r) for r in rule[combinator]) + ")"
    if "Not" in rule:
        return "not " + _rule_text(rule["Not"])
    variable = rule.get("Variable", "?")
    for op, value in rule.items():
        if op in ("Variable", "Next", "Comment", "Assign", "Output"):
            continue
        if op == "IsPresent":
            return f"{variable} {'present' if value else 'absent'}"
        if op.startswith("Is"):
            return f"{variable} {'is' if value else 'is not'} {op[2:].lower()}"
        path = op.endswith("Path")
        base = op[:-4] if path else op
        symbol = _OPERATORS.get(base, base)
        shown = value if path else json.dumps(value)
        return f"{variable} {symbol} {shown}"
    return variable
