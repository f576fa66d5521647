"""Payload templates (Parameters, ResultSelector, ItemSelector, Assign) and value paths.

A JSONPath-mode template is JSON in which a key ending in ``.$`` holds a path
(``$.a``, ``$$.Execution.Id``, ``$myVar.x``) or an intrinsic function call; the
key loses its ``.$`` in the result. Templates are compiled once per definition:
static subtrees are returned as they are (the engine never mutates a value), so
evaluating ``{"FunctionName": "f", "Payload": {"id.$": "$$.Execution.Name"}}``
costs one path lookup and two dict builds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._json import compact_json, json_size
from .frame import Frame
from .intrinsics import IntrinsicSyntaxError, is_intrinsic, parse_intrinsic
from .jsonpath import InvalidPath, PathNotFound, compile_path

__all__ = ["RuntimeFailure", "Template", "ValuePath", "compile_dynamic", "compile_template", "to_json",
           "PAYLOAD_LIMIT_BYTES", "data_limit_cause", "payload_size"]

#: Step Functions' limit on any input, output or result: 256 KiB of UTF-8 JSON.
PAYLOAD_LIMIT_BYTES = 262_144


def to_json(value: Any) -> str:
    """Compact JSON as Step Functions prints it in histories and error causes."""
    return compact_json(value)


def payload_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON.

    >>> payload_size({"a": 1})
    7
    """
    if value is None or value is True or value is False:
        return 5
    return json_size(value)


def data_limit_cause(name: str) -> str:
    """AWS's cause of States.DataLimitExceeded for a state or task named ``name``."""
    return f"The state/task '{name}' returned a result with a size exceeding the maximum number of bytes service limit."


class RuntimeFailure(Exception):
    """A ``States.Runtime`` failure inside a state; the interpreter adds the
    "An error occurred while executing the state ..." prefix."""

    def __init__(self, message: str, error: str = "States.Runtime") -> None:
        super().__init__(message)
        self.message = message
        self.error = error


class ValuePath:
    """A compiled path of a value: ``$...`` (the document), ``$$...`` (context
    object) or ``$name...`` (a variable)."""

    __slots__ = ("_short", "get_from", "kind", "path", "text", "variable")

    def __init__(self, text: str) -> None:
        self.text = text
        if not isinstance(text, str) or not text.startswith("$"):
            raise InvalidPath(f"a path must start with '$', got {text!r}")
        self.get_from = None
        self._short = None
        if text.startswith("$$"):
            self.kind = "context"
            self.variable = None
            self.path = compile_path("$" + text[2:])
            # $$.Execution.* and $$.StateMachine.* are the same for every state of an
            # execution: read them without building the state's context object.
            for prefix, root in (("$$.Execution", "Execution"), ("$$.StateMachine", "StateMachine")):
                rest = text[len(prefix):]
                if text.startswith(prefix) and rest[:1] in ("", ".", "["):
                    self.get_from = root
                    self._short = compile_path("$" + rest)
        elif text == "$" or text[1:2] in (".", "["):
            self.kind = "input"
            self.variable = None
            self.path = compile_path(text)
        else:
            self.kind = "variable"
            name_end = len(text)
            for i, ch in enumerate(text[1:], start=1):
                if ch in ".[":
                    name_end = i
                    break
            self.variable = text[1:name_end]
            if not self.variable:
                raise InvalidPath(f"invalid path {text!r}")
            self.path = compile_path("$" + text[name_end:])

    def require(self, doc: Any, frame: Frame) -> Any:
        """The value; a missing one is AWS's ``Invalid path '...' : <reason>`` runtime failure."""
        try:
            return self.resolve(doc, frame)
        except PathNotFound as exc:
            raise RuntimeFailure(exc.invalid_path_cause(self.text)) from None

    def resolve(self, doc: Any, frame: Frame) -> Any:
        """The value; raises :class:`PathNotFound` when nothing is there."""
        if self.kind == "input":
            return self.path.get(doc)
        if self.kind == "context":
            root = self.get_from
            if root is not None and frame.context_is_execution:
                execution = frame.execution
                try:
                    return self._short.get(  # type: ignore[union-attr]
                        execution.context_execution if root == "Execution" else execution.context_state_machine
                    )
                except PathNotFound:
                    pass  # the full path gives the error its AWS wording
            return self.path.get(frame.context())
        return self.path.get(frame.variable(self.variable))


_Evaluate = Callable[[Any, "Frame"], Any]


class Template:
    """A compiled payload template; ``evaluate(doc, frame)`` builds the value."""

    __slots__ = ("_evaluate", "field", "picks", "source", "source_size", "static")

    def __init__(self, source: Any, evaluate: _Evaluate | None, field: str) -> None:
        self.source = source
        self._evaluate = evaluate
        self.static = evaluate is None
        self.field = field
        #: When every ``.$`` value is a definite path into the document, the count of them: each
        #: picks a part of the document, so the value's size is at most ``source_size`` plus
        #: ``picks`` times the document's (a bound the payload limit uses instead of a
        #: serialisation). ``None`` otherwise (an intrinsic, a context or variable path).
        self.picks = _picks(source)
        self.source_size = payload_size(source) if self.picks is not None else -1

    def size_bound(self, doc_size: int) -> int:
        """An upper bound of the size of ``evaluate(doc)`` for a document of ``doc_size`` bytes; -1 if none."""
        if self.picks is None or doc_size < 0:
            return -1
        return self.source_size + self.picks * doc_size

    def evaluate(self, doc: Any, frame: Frame) -> Any:
        if self._evaluate is None:
            return self.source
        return self._evaluate(doc, frame)


def _describe_input(doc: Any) -> str:
    return to_json(doc)


def compile_dynamic(key: str, text: Any, field: str = "") -> _Evaluate:
    """Compile the value of a ``.$`` key (a path or an intrinsic call) to ``(doc, frame) -> value``."""
    if not isinstance(text, str):
        raise InvalidPath(f"the value of {key!r} must be a path or an intrinsic function, got {to_json(text)}")
    if is_intrinsic(text):
        call = parse_intrinsic(text)

        def evaluate_intrinsic(doc: Any, frame: Frame) -> Any:
            def resolve(path_text: str) -> Any:
                vp = _cached_value_path(path_text)
                try:
                    return vp.resolve(doc, frame)
                except PathNotFound:
                    raise RuntimeFailure(
                        f"The JsonPath argument for the field '{path_text}' could not be found in the input "
                        f"'{_describe_input(doc)}'"
                    ) from None

            return call.evaluate(resolve, frame.rng)

        return evaluate_intrinsic
    vp = ValuePath(text)

    def evaluate_path(doc: Any, frame: Frame) -> Any:
        try:
            return vp.resolve(doc, frame)
        except PathNotFound as exc:
            shown = frame.context() if vp.kind == "context" else doc
            raise RuntimeFailure(exc.field_cause(key, shown, text)) from None

    return evaluate_path


_value_paths: dict[str, ValuePath] = {}


def _picks(node: Any) -> int | None:
    """How many ``.$`` values ``node`` holds, if all are definite document paths (see Template.picks)."""
    count = 0
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(key, str) and key.endswith(".$"):
                    if not isinstance(value, str) or is_intrinsic(value):
                        return None
                    try:
                        path = ValuePath(value)
                    except (InvalidPath, IntrinsicSyntaxError):
                        return None
                    if path.kind != "input" or not path.path.is_definite:
                        return None
                    count += 1
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _cached_value_path(text: str) -> ValuePath:
    vp = _value_paths.get(text)
    if vp is None:
        vp = _value_paths[text] = ValuePath(text)
    return vp


def _compile_node(node: Any, field: str) -> _Evaluate | None:
    if isinstance(node, dict):
        parts: list[tuple[str, Any, bool]] = []  # (key, literal-or-evaluator, dynamic)
        dynamic = False
        for key, value in node.items():
            if isinstance(key, str) and key.endswith(".$"):
                parts.append((key[:-2], compile_dynamic(key, value, field), True))
                dynamic = True
            else:
                sub = _compile_node(value, field)
                if sub is None:
                    parts.append((key, value, False))
                else:
                    parts.append((key, sub, True))
                    dynamic = True
        if not dynamic:
            return None
        frozen = tuple(parts)

        def evaluate_object(doc: Any, frame: Frame) -> Any:
            out = {}
            for key, value, is_dynamic in frozen:
                out[key] = value(doc, frame) if is_dynamic else value
            return out

        return evaluate_object
    if isinstance(node, list):
        items = [_compile_node(v, field) for v in node]
        if all(i is None for i in items):
            return None
        pairs = tuple((v, e) for v, e in zip(node, items, strict=True))

        def evaluate_array(doc: Any, frame: Frame) -> Any:
            return [e(doc, frame) if e is not None else v for v, e in pairs]

        return evaluate_array
    return None


def compile_template(source: Any, field: str = "Parameters") -> Template:
    """Compile a JSONPath-mode payload template.

    Raises :class:`InvalidPath` or :class:`IntrinsicSyntaxError` for a bad
    path or function (definition validation reports them with their JSON path).

    >>> t = compile_template({"a.$": "$.x", "b": 1})
    >>> t.static
    False
    """
    return Template(source, _compile_node(source, field), field)


def template_problems(source: Any, pointer: str) -> list[tuple[str, str]]:
    """Every bad path or intrinsic in a template, as (json pointer, message)."""
    problems: list[tuple[str, str]] = []

    def walk(node: Any, at: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                where = f"{at}/{key}"
                if isinstance(key, str) and key.endswith(".$"):
                    try:
                        compile_dynamic(key, value, "")
                    except (InvalidPath, IntrinsicSyntaxError) as exc:
                        problems.append((where, f"The value for the field '{key}' must be a valid JSONPath or a valid intrinsic function call: {exc}"))
                else:
                    walk(value, where)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{at}/{i}")

    walk(source, pointer)
    return problems
