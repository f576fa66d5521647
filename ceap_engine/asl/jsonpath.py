"""JSONPath exactly as AWS Step Functions evaluates it.

Step Functions evaluates the JSONPath fields of a state (``InputPath``,
``OutputPath``, ``ItemsPath``, the ``.$`` keys of ``Parameters`` /
``ResultSelector`` / ``ItemSelector``, Choice ``Variable`` and ``*Path``
operands, ``SecondsPath``, ``ErrorPath`` ...) with Jayway JsonPath, and writes
``ResultPath`` through a *reference path* (only ``$``, ``.name``,
``['name']`` and ``[index]``).

The rules here follow Jayway's own evaluator, checked against executions
recorded on real AWS (``shared/conformance``):

* A *definite* path (single names and single indexes only, or a merge of
  several names at the end such as ``$['a','b']``) yields one value.  When
  nothing is there, :class:`PathNotFound` carries Jayway's reason, which AWS
  quotes in its error causes (``No results for path: $['x']``,
  ``Missing property in path $['no']``).
* Any other path yields a list of every match, ``[]`` when nothing matches
  (AWS returns ``[]`` for ``$.items[*]`` on ``{}``).
* Quoted names in brackets are taken verbatim: a backslash is kept, as AWS
  does (``$['a\\"b']`` names the key ``a\\"b``).
* Slices follow Jayway: ``[start:end:step]`` ignores the step, ``[1:-1]`` is
  empty, ``[-2:]`` counts from the end.
* Path functions such as ``length()`` compile (AWS accepts the definition)
  but never match, as on AWS.

Example::

    >>> compile_path("$.orders[?(@.total > 10)].id").get(
    ...     {"orders": [{"id": 1, "total": 5}, {"id": 2, "total": 12}]})
    [2]
    >>> set_path({"a": 1}, compile_reference_path("$.result.value"), 42)
    {'a': 1, 'result': {'value': 42}}
"""

from __future__ import annotations

import functools
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from ceap_engine.errors import CeapError, StatesError

__all__ = [
    "REFERENCE_PATH_CONFLICT",
    "InvalidPath",
    "JsonPath",
    "PathNotFound",
    "compile_path",
    "compile_reference_path",
    "set_path",
]

#: Error name AWS raises when ResultPath cannot be written into the input
#: (the input, or a node on the way, is not a JSON object).
REFERENCE_PATH_CONFLICT = "States.ReferencePathConflict"


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class InvalidPath(CeapError, ValueError):
    """Path text that is not a JSONPath Step Functions accepts.

    ``path`` is the offending text and ``position`` the 0-based character
    where the problem is, when known.
    """

    def __init__(self, message: str, *, path: str | None = None, position: int | None = None) -> None:
        self.path = path
        self.position = position
        super().__init__(message)


class PathNotFound(CeapError, LookupError):
    """A definite path with no match in the document.

    ``path`` is the path text, ``reason`` the explanation in Jayway's words,
    as AWS quotes it after ``Invalid path '<path>' :`` (InputPath,
    OutputPath).
    """

    def __init__(self, path: str, reason: str | Callable[[], str]) -> None:
        self.path = path
        # A callable reason is worked out when first read: a path that is only
        # tested (IsPresent, a Map's optional field) must not pay for the words.
        self._reason = reason
        super().__init__(path)

    @property
    def reason(self) -> str:
        reason = self._reason
        if not isinstance(reason, str):
            reason = self._reason = reason()
        return reason

    def __str__(self) -> str:
        return f"the JSONPath '{self.path}' has no match: {self.reason}"

    def invalid_path_cause(self, shown_path: str | None = None) -> str:
        """The cause AWS gives for ``InputPath`` / ``OutputPath``.

        >>> PathNotFound("$.x", "No results for path: $['x']").invalid_path_cause()
        "Invalid path '$.x' : No results for path: $['x']"
        """
        return f"Invalid path '{shown_path or self.path}' : {self.reason}"

    def field_cause(self, field: str, document: Any, shown_path: str | None = None) -> str:
        """The cause AWS gives for ``.$`` keys, ``ErrorPath`` and ``CausePath``.

        ``shown_path`` replaces the path text, e.g. the original
        ``$$.Execution.Input.x`` of a context path compiled as ``$.Execution.Input.x``.

        >>> print(PathNotFound("$.x", "").field_cause("value.$", {"a": 1}))
        The JSONPath '$.x' specified for the field 'value.$' could not be found in the input '{"a":1}'
        """
        return (
            f"The JSONPath '{shown_path or self.path}' specified for the field '{field}' "
            f"could not be found in the input '{_compact_json(document)}'"
        )


class _NoMatch(Exception):
    """Internal: Jayway's PathNotFoundException, with its message."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


# --------------------------------------------------------------------------
# Value helpers shared by evaluation and messages
# --------------------------------------------------------------------------

_MISSING = object()
_UNDEFINED = object()  # a filter operand whose path matched nothing

_JSON_PROVIDER = "com.jayway.jsonpath.spi.json.JsonSmartJsonProvider"


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _java_double_text(d: float) -> str:
    """``Double.toString`` of a float (shortest digits, Java's layout)."""
    if d != d:
        return "NaN"
    if d in (float("inf"), float("-inf")):
        return "Infinity" if d > 0 else "-Infinity"
    magnitude = abs(d)
    if magnitude == 0 or 1e-3 <= magnitude < 1e7:
        return repr(d)
    sign = "-" if d < 0 else ""
    digits_tuple = Decimal(repr(magnitude)).as_tuple()
    exponent = int(digits_tuple.exponent)
    digits = "".join(map(str, digits_tuple.digits))
    adjusted = len(digits) + exponent - 1
    digits = digits.rstrip("0") or "0"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{adjusted}"


def _number_text(n: int | float) -> str:
    """A number as Jayway's filter turns it into text (``BigDecimal.toString``)."""
    if isinstance(n, int):
        return str(n)
    return str(Decimal(_java_double_text(n)))


def _java_class(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "java.lang.Boolean"
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return "java.lang.Integer"
        return "java.lang.Long" if -(2**63) <= value < 2**63 else "java.math.BigInteger"
    if isinstance(value, float):
        return "java.lang.Double"
    if isinstance(value, str):
        return "java.lang.String"
    if isinstance(value, list):
        return "net.minidev.json.JSONArray"
    return type(value).__name__


def _java_text(value: Any) -> str:
    """``toString()`` of a JSON value as Jayway's JSON provider prints it."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, dict, list)):
        return _compact_json(value)
    if isinstance(value, float):
        return _java_double_text(value)
    return str(value)


# --------------------------------------------------------------------------
# Tokens and evaluation (Jayway's PathToken tree, flattened to a tuple)
# --------------------------------------------------------------------------


class _Run:
    """One evaluation of a token tuple against a document."""

    __slots__ = ("last", "out", "require", "root", "root_char", "tokens")

    def __init__(self, tokens: tuple[_Token, ...], root: Any, require: bool, root_char: str) -> None:
        self.tokens = tokens
        self.last = len(tokens)
        self.root = root
        self.require = require  # Jayway's REQUIRE_PROPERTIES, used by filter exists-checks
        self.root_char = root_char
        self.out: list[Any] = []

    def visit(self, i: int, node: Any) -> None:
        if i == self.last:
            self.out.append(node)
        else:
            self.tokens[i].select(self, i, node)

    def prefix(self, i: int) -> str:
        return self.root_char + "".join(t.fragment() for t in self.tokens[:i])

    def rest(self, i: int) -> str:
        return "".join(t.fragment() for t in self.tokens[i:])


class _Token:
    __slots__ = ("is_leaf", "upstream_definite")
    definite = True

    def __init__(self) -> None:
        self.is_leaf = False
        self.upstream_definite = True

    def fragment(self) -> str:  # pragma: no cover - every token overrides
        raise NotImplementedError

    def select(self, run: _Run, i: int, node: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    def scan_accepts(self, run: _Run, node: Any) -> bool:
        return False


class _Property(_Token):
    __slots__ = ("names", "quote")

    def __init__(self, names: tuple[str, ...], quote: str = "'") -> None:
        super().__init__()
        self.names = names
        self.quote = quote

    @property
    def definite(self) -> bool:  # type: ignore[override]
        # several names at the end merge into one object, so that stays definite
        return len(self.names) == 1 or self.is_leaf

    def fragment(self) -> str:
        q = self.quote
        return "[" + ",".join(q + name + q for name in self.names) + "]"

    def select(self, run: _Run, i: int, node: Any) -> None:
        if not isinstance(node, dict):
            if self.upstream_definite:
                raise _NoMatch(
                    f"Expected to find an object with property {self.fragment()} in path {run.prefix(i)} "
                    f"but found '{_java_class(node)}'. This is not a json object according to the "
                    f"JsonProvider: '{_JSON_PROVIDER}'."
                )
            return
        names = self.names
        if len(names) > 1 and self.is_leaf:
            merged = {}
            for name in names:
                value = node.get(name, _MISSING)
                if value is _MISSING:
                    if run.require:
                        raise _NoMatch(f"Missing property in path {run.prefix(i)}['{name}']")
                    continue
                merged[name] = value
            run.out.append(merged)
            return
        for name in names:
            value = node.get(name, _MISSING)
            if value is _MISSING:
                if self.is_leaf:
                    if run.require:
                        raise _NoMatch(f"No results for path: {run.prefix(i)}['{name}']")
                    continue
                if run.require or (self.definite and self.upstream_definite):
                    raise _NoMatch(f"Missing property in path {run.prefix(i)}['{name}']")
                continue
            run.visit(i + 1, value)

    def scan_accepts(self, run: _Run, node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        if run.require or not self.definite:
            return True
        return all(name in node for name in self.names)


class _ArrayToken(_Token):
    __slots__ = ()

    def accepts_model(self, run: _Run, i: int, node: Any) -> bool:
        if isinstance(node, list):
            return True
        if self.upstream_definite:
            if node is None:
                raise _NoMatch(f"The path {run.prefix(i)} is null")
            raise _NoMatch(
                f"Filter: {run.rest(i)} can only be applied to arrays. Current context is: {_java_text(node)}"
            )
        return False

    def scan_accepts(self, run: _Run, node: Any) -> bool:
        return isinstance(node, list)

    @staticmethod
    def visit_index(run: _Run, i: int, node: list[Any], index: int) -> None:
        # Jayway wraps a negative index once; anything still out of range is skipped
        if index < 0:
            index += len(node)
        if 0 <= index < len(node):
            run.visit(i + 1, node[index])


class _Index(_ArrayToken):
    __slots__ = ("indexes",)

    def __init__(self, indexes: tuple[int, ...]) -> None:
        super().__init__()
        self.indexes = indexes

    @property
    def definite(self) -> bool:  # type: ignore[override]
        return len(self.indexes) == 1

    def fragment(self) -> str:
        return "[" + ",".join(map(str, self.indexes)) + "]"

    def select(self, run: _Run, i: int, node: Any) -> None:
        if self.accepts_model(run, i, node):
            for index in self.indexes:
                self.visit_index(run, i, node, index)


class _Slice(_ArrayToken):
    __slots__ = ("start", "end")
    definite = False

    def __init__(self, start: int | None, end: int | None) -> None:
        super().__init__()
        self.start = start
        self.end = end

    def fragment(self) -> str:
        start = "" if self.start is None else str(self.start)
        end = "" if self.end is None else str(self.end)
        return f"[{start}:{end}]"

    def select(self, run: _Run, i: int, node: Any) -> None:
        if not self.accepts_model(run, i, node):
            return
        length = len(node)
        if length == 0:
            return
        start, end = self.start, self.end
        if end is None:  # [start:]
            assert start is not None
            first = max(0, length + start if start < 0 else start)
            indexes: range = range(first, length)
        elif start is None:  # [:end]
            stop = length + end if end < 0 else end
            indexes = range(0, min(length, stop))
        else:  # [start:end]: Jayway does not wrap negative bounds here
            indexes = range(start, min(length, end))
        for index in indexes:
            self.visit_index(run, i, node, index)


class _Wildcard(_Token):
    __slots__ = ()
    definite = False

    def fragment(self) -> str:
        return "[*]"

    def select(self, run: _Run, i: int, node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                run.visit(i + 1, value)
        elif isinstance(node, list):
            for value in node:
                try:
                    run.visit(i + 1, value)
                except _NoMatch:
                    if run.require:
                        raise

    def scan_accepts(self, run: _Run, node: Any) -> bool:
        return True


class _Scan(_Token):
    """``..``: visit the next token on every node of the subtree, Jayway's order."""

    __slots__ = ()
    definite = False

    def fragment(self) -> str:
        return ".."

    def select(self, run: _Run, i: int, node: Any) -> None:
        self._walk(run, i + 1, run.tokens[i + 1], node)

    def _walk(self, run: _Run, j: int, target: _Token, node: Any) -> None:
        if isinstance(node, dict):
            if target.scan_accepts(run, node):
                target.select(run, j, node)
            for value in node.values():
                self._walk(run, j, target, value)
        elif isinstance(node, list):
            if target.scan_accepts(run, node):
                if target.is_leaf:
                    target.select(run, j, node)
                else:
                    # Jayway hands each element to the token *after* the target here
                    for value in node:
                        run.visit(j + 1, value)
            for value in node:
                self._walk(run, j, target, value)


class _Filter(_Token):
    __slots__ = ("predicate",)
    definite = False

    def __init__(self, predicate: _Predicate) -> None:
        super().__init__()
        self.predicate = predicate

    def fragment(self) -> str:
        return "[?]"

    def accepts(self, run: _Run, item: Any) -> bool:
        return self.predicate.test(item, run.root)

    def select(self, run: _Run, i: int, node: Any) -> None:
        if isinstance(node, dict):
            # Jayway applies a filter on an object to the object itself
            if self.accepts(run, node):
                run.visit(i + 1, node)
        elif isinstance(node, list):
            for item in node:
                if self.accepts(run, item):
                    run.visit(i + 1, item)
        elif self.upstream_definite:
            raise _NoMatch(
                f"Filter: {run.rest(i)} can not be applied to primitives. Current context is: {_java_text(node)}"
            )

    def scan_accepts(self, run: _Run, node: Any) -> bool:
        return self.accepts(run, node)


class _Function(_Token):
    """``.length()`` and friends: AWS accepts them in a definition but they never match."""

    __slots__ = ("name", "arguments")

    def __init__(self, name: str, arguments: str) -> None:
        super().__init__()
        self.name = name
        self.arguments = arguments

    def fragment(self) -> str:
        return f".{self.name}({self.arguments})"

    def select(self, run: _Run, i: int, node: Any) -> None:
        raise _NoMatch(f"Function {self.name}() is not supported by AWS Step Functions JSONPath")


def _link(tokens: list[_Token]) -> tuple[_Token, ...]:
    """Fix each token's leaf and upstream-definite flags once, at compile time."""
    for token in tokens:
        token.is_leaf = False
    if tokens:
        tokens[-1].is_leaf = True  # set first: a property's definiteness depends on it
    upstream = True
    for token in tokens:
        token.upstream_definite = upstream
        upstream = upstream and token.definite
    return tuple(tokens)


def _evaluate(tokens: tuple[_Token, ...], definite: bool, doc: Any, root: Any, *, require: bool = False,
              root_char: str = "$") -> Any:
    """Jayway's evaluation: a value (definite) or a list; raises :class:`_NoMatch`."""
    run = _Run(tokens, root, require, root_char)
    run.visit(0, doc)
    if definite:
        if not run.out:
            raise _NoMatch("No results for path: " + run.prefix(len(tokens)))
        return run.out[0]
    return run.out


# --------------------------------------------------------------------------
# Filter expressions  [?( ... )]
# --------------------------------------------------------------------------


class _Predicate:
    __slots__ = ()

    def test(self, item: Any, root: Any) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError


class _Or(_Predicate):
    __slots__ = ("operands",)

    def __init__(self, operands: list[_Predicate]) -> None:
        self.operands = operands

    def test(self, item: Any, root: Any) -> bool:
        return any(op.test(item, root) for op in self.operands)


class _And(_Predicate):
    __slots__ = ("operands",)

    def __init__(self, operands: list[_Predicate]) -> None:
        self.operands = operands

    def test(self, item: Any, root: Any) -> bool:
        return all(op.test(item, root) for op in self.operands)


class _Not(_Predicate):
    __slots__ = ("operand",)

    def __init__(self, operand: _Predicate) -> None:
        self.operand = operand

    def test(self, item: Any, root: Any) -> bool:
        return not self.operand.test(item, root)


class _PathOperand:
    """``@.x`` or ``$.x`` inside a filter."""

    __slots__ = ("definite", "negated", "root_char", "tokens")

    def __init__(self, root_char: str, tokens: tuple[_Token, ...], negated: bool) -> None:
        self.root_char = root_char
        self.tokens = tokens
        self.definite = all(t.definite for t in tokens)
        self.negated = negated  # written as !@.x

    def value(self, item: Any, root: Any) -> Any:
        doc = root if self.root_char == "$" else item
        try:
            return _evaluate(self.tokens, self.definite, doc, root, root_char=self.root_char)
        except _NoMatch:
            return _UNDEFINED

    def exists(self, item: Any, root: Any) -> bool:
        doc = root if self.root_char == "$" else item
        try:
            _evaluate(self.tokens, self.definite, doc, root, require=True, root_char=self.root_char)
        except _NoMatch:
            return False
        return True


class _Literal:
    __slots__ = ("literal",)

    def __init__(self, literal: Any) -> None:
        self.literal = literal

    def value(self, item: Any, root: Any) -> Any:
        return self.literal


class _Exists(_Predicate):
    __slots__ = ("expected", "path")

    def __init__(self, path: _PathOperand) -> None:
        self.path = path
        self.expected = not path.negated

    def test(self, item: Any, root: Any) -> bool:
        return self.path.exists(item, root) == self.expected


class _Comparison(_Predicate):
    __slots__ = ("compare", "left", "right")

    def __init__(self, left: _PathOperand | _Literal, compare: Callable[[Any, Any], bool],
                 right: _PathOperand | _Literal) -> None:
        self.left = left
        self.compare = compare
        self.right = right

    def test(self, item: Any, root: Any) -> bool:
        return self.compare(self.left.value(item, root), self.right.value(item, root))


# Operand kinds, as Jayway's ValueNode subclasses
_K_UNDEFINED, _K_NULL, _K_BOOL, _K_NUMBER, _K_STRING, _K_JSON, _K_PATTERN = range(7)


def _kind(value: Any) -> int:
    if value is _UNDEFINED:
        return _K_UNDEFINED
    if value is None:
        return _K_NULL
    if isinstance(value, bool):
        return _K_BOOL
    if isinstance(value, (int, float)):
        return _K_NUMBER
    if isinstance(value, str):
        return _K_STRING
    if isinstance(value, (list, dict)):
        return _K_JSON
    if isinstance(value, re.Pattern):
        return _K_PATTERN
    return _K_UNDEFINED


_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _text_as_number(text: str) -> Decimal | None:
    """``new BigDecimal(text)`` or None when Java would refuse it."""
    if not _NUMBER_TEXT.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern already filtered
        return None


def _as_decimal(n: int | float) -> Decimal:
    return Decimal(n) if isinstance(n, int) else Decimal(_java_double_text(n))


def _json_equal(a: Any, b: Any) -> bool:
    """Java ``equals`` of parsed JSON: 1 and 1.0 differ, so do true and 1."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _equal(left: Any, right: Any) -> bool:
    """Jayway's ``==``: numbers and numeric strings meet, the left side decides how."""
    kl, kr = _kind(left), _kind(right)
    if kl == _K_UNDEFINED or kr == _K_UNDEFINED:
        return False
    if kl == _K_JSON or kr == _K_JSON:
        return kl == kr and _json_equal(left, right)
    if kl == _K_NUMBER:
        if kr == _K_NUMBER:
            return bool(left == right)
        if kr == _K_STRING:
            number = _text_as_number(right)
            return number is not None and _as_decimal(left) == number
        return False
    if kl == _K_STRING:
        if kr == _K_STRING:
            return bool(left == right)
        if kr == _K_NUMBER:
            return bool(left == _number_text(right))
        return False
    if kl == _K_BOOL:
        return kr == _K_BOOL and left == right
    if kl == _K_NULL:
        return kr == _K_NULL
    if kl == _K_PATTERN:
        return kr == _K_PATTERN and left.pattern == right.pattern and left.flags == right.flags
    return False  # pragma: no cover - every kind is handled above


def _utf16(text: str) -> bytes | str:
    # Java compares strings by UTF-16 code unit; that only differs from
    # Python's code point order once characters beyond U+FFFF appear.
    return text if text.isascii() else text.encode("utf-16-be")


def _ordered(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(left: Any, right: Any) -> bool:
        kl, kr = _kind(left), _kind(right)
        if kl == kr == _K_NUMBER:
            return test(left, right)
        if kl == kr == _K_STRING:
            return test(_utf16(left), _utf16(right))
        return False

    return compare


def _regex(left: Any, right: Any) -> bool:
    kl, kr = _kind(left), _kind(right)
    if (kl == _K_PATTERN) == (kr == _K_PATTERN):
        return False
    pattern, other, kind = (left, right, kr) if kl == _K_PATTERN else (right, left, kl)
    if kind == _K_STRING:
        text = other
    elif kind == _K_NUMBER:
        text = _number_text(other)
    elif kind == _K_BOOL:
        text = "true" if other else "false"
    else:
        text = ""
    return pattern.fullmatch(text) is not None


def _contains_equal(needle: Any, haystack: list[Any]) -> bool:
    return any(_equal(needle, element) for element in haystack)


def _in(left: Any, right: Any) -> bool:
    return isinstance(right, list) and _contains_equal(left, right)


def _not_in(left: Any, right: Any) -> bool:
    if _kind(right) != _K_JSON:
        return False  # Jayway fails the whole filter: no match either way
    return not _in(left, right)


def _contains(left: Any, right: Any) -> bool:
    if isinstance(left, str) and _kind(right) == _K_STRING:
        return right in left
    if isinstance(left, list):
        return any(_equal(right, element) for element in left)
    return False


def _subset_of(left: Any, right: Any) -> bool:
    return isinstance(left, list) and isinstance(right, list) and all(_contains_equal(x, right) for x in left)


def _any_of(left: Any, right: Any) -> bool:
    return isinstance(left, list) and isinstance(right, list) and any(_contains_equal(x, right) for x in left)


def _none_of(left: Any, right: Any) -> bool:
    return isinstance(left, list) and isinstance(right, list) and not any(_contains_equal(x, right) for x in left)


def _all(left: Any, right: Any) -> bool:
    if not isinstance(right, list) or _kind(left) != _K_JSON:
        return False
    if not isinstance(left, list):
        return True  # Jayway's quirk: an object "contains all"
    return all(any(_equal(required, element) for element in left) for required in right)


def _size(left: Any, right: Any) -> bool:
    if _kind(right) != _K_NUMBER:
        return False
    expected = int(right)
    if isinstance(left, str):
        return len(left.encode("utf-16-le")) // 2 == expected
    if isinstance(left, list):
        return len(left) == expected
    if isinstance(left, dict):
        return expected == -1
    return False


def _empty(left: Any, right: Any) -> bool:
    if not isinstance(right, bool):
        return False
    if isinstance(left, (str, list, dict)):
        return (len(left) == 0) == right
    return False


def _exists_operator(left: Any, right: Any) -> bool:
    return isinstance(left, bool) and isinstance(right, bool) and left == right


def _type_safe_equal(left: Any, right: Any) -> bool:
    return _kind(left) == _kind(right) and _equal(left, right)


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": _equal,
    "!=": lambda left, right: not _equal(left, right),
    "===": _type_safe_equal,
    "!==": lambda left, right: not _type_safe_equal(left, right),
    "<": _ordered(lambda a, b: a < b),
    "<=": _ordered(lambda a, b: a <= b),
    ">": _ordered(lambda a, b: a > b),
    ">=": _ordered(lambda a, b: a >= b),
    "=~": _regex,
    "IN": _in,
    "NIN": _not_in,
    "CONTAINS": _contains,
    "ALL": _all,
    "SUBSETOF": _subset_of,
    "ANYOF": _any_of,
    "NONEOF": _none_of,
    "SIZE": _size,
    "EMPTY": _empty,
    "EXISTS": _exists_operator,
}

_OPERATOR_CHARS = frozenset("<>=~!")
_PATTERN_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE,
                  "d": 0, "u": 0, "U": 0}  # d, u, U: Python's defaults already cover them
_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FILTER_NUMBER_CHARS = frozenset("0123456789-.eE")


def _java_unescape(text: str) -> str:
    """Jayway's ``Utils.unescape`` for string literals in filters."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    simple = {"\\": "\\", "'": "'", '"': '"', "r": "\r", "f": "\f", "t": "\t", "n": "\n", "b": "\b"}
    while i < n:
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 == n:
            out.append("\\")
            break
        nxt = text[i + 1]
        if nxt == "u":
            code = text[i + 2 : i + 6]
            try:
                out.append(chr(int(code, 16)))
            except ValueError:
                raise ValueError(f"bad unicode escape \\u{code}") from None
            i += 6
            continue
        out.append(simple.get(nxt, nxt))
        i += 2
    return "".join(out)


def _next_unescaped(s: str, start: int, char: str) -> int:
    """Index of the next ``char`` after ``start`` not preceded by a backslash, or -1."""
    i = start + 1
    escaped = False
    while i < len(s):
        c = s[i]
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == char:
            return i
        i += 1
    return -1


def _matching_close(s: str, start: int, opening: str, closing: str, skip_regex: bool) -> int:
    """Index of the bracket closing ``s[start]``, skipping quoted strings (and /regex/)."""
    depth = 0
    i = start
    while i < len(s):
        c = s[i]
        if c in "'\"":
            i = _next_unescaped(s, i, c)
            if i == -1:
                return -1
        elif skip_regex and c == "/":
            i = _next_unescaped(s, i, "/")
            if i == -1:
                return -1
        elif c == opening:
            depth += 1
        elif c == closing:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


class _LenientJson:
    """The JSON of filter literals (``in ['S', 'M']``): JSON plus single quotes and bare words,
    as Jayway's permissive json-smart parser reads it."""

    _NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
    _WORD = re.compile(r"[^\s,:\[\]{}'\"]+")

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def parse(self) -> Any:
        value = self._value()
        self._skip()
        if self.i != len(self.s):
            raise ValueError(f"unexpected {self.s[self.i]!r}")
        return value

    def _skip(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def _value(self) -> Any:
        self._skip()
        if self.i >= len(self.s):
            raise ValueError("unexpected end")
        c = self.s[self.i]
        if c == "{":
            return self._object()
        if c == "[":
            return self._array()
        if c in "'\"":
            return self._string()
        match = self._NUMBER.match(self.s, self.i)
        if match and (match.end() == len(self.s) or not self._WORD.match(self.s[match.end()])):
            self.i = match.end()
            text = match.group()
            return float(text) if any(ch in text for ch in ".eE") else int(text)
        word = self._WORD.match(self.s, self.i)
        if not word:
            raise ValueError(f"unexpected {c!r}")
        self.i = word.end()
        return {"true": True, "false": False, "null": None}.get(word.group(), word.group())

    def _string(self) -> str:
        quote = self.s[self.i]
        end = _next_unescaped(self.s, self.i, quote)
        if end == -1:
            raise ValueError("string not closed")
        raw = self.s[self.i + 1 : end]
        self.i = end + 1
        return _java_unescape(raw)

    def _array(self) -> list[Any]:
        self.i += 1
        items: list[Any] = []
        self._skip()
        if self.s[self.i : self.i + 1] == "]":
            self.i += 1
            return items
        while True:
            items.append(self._value())
            self._skip()
            c = self.s[self.i : self.i + 1]
            self.i += 1
            if c == "]":
                return items
            if c != ",":
                raise ValueError("expected ',' or ']'")

    def _object(self) -> dict[str, Any]:
        self.i += 1
        members: dict[str, Any] = {}
        self._skip()
        if self.s[self.i : self.i + 1] == "}":
            self.i += 1
            return members
        while True:
            key = self._value()
            if not isinstance(key, str):
                key = _java_text(key)
            self._skip()
            if self.s[self.i : self.i + 1] != ":":
                raise ValueError("expected ':'")
            self.i += 1
            members[key] = self._value()
            self._skip()
            c = self.s[self.i : self.i + 1]
            self.i += 1
            if c == "}":
                return members
            if c != ",":
                raise ValueError("expected ',' or '}'")


class _FilterParser:
    """Jayway's filter grammar: ``||`` < ``&&`` < ``!`` < comparison, with parentheses."""

    def __init__(self, s: str, source: str, offset: int) -> None:
        self.s = s  # "( ... )", the part between "[?" and "]"
        self.source = source
        self.offset = offset
        self.i = 0

    def error(self, problem: str, at: int | None = None) -> InvalidPath:
        position = self.offset + (self.i if at is None else at)
        return InvalidPath(
            f"invalid JSONPath {self.source!r}: {problem} in filter {self.s!r} (position {position})",
            path=self.source,
            position=position,
        )

    def parse(self) -> _Predicate:
        predicate = self._or()
        self._skip()
        if self.i != len(self.s):
            raise self.error(f"unexpected {self.s[self.i]!r}")
        return predicate

    def _skip(self) -> None:
        while self.i < len(self.s) and self.s[self.i] == " ":
            self.i += 1

    def _peek(self) -> str:
        self._skip()
        return self.s[self.i] if self.i < len(self.s) else ""

    def _take(self, text: str) -> bool:
        self._skip()
        if self.s.startswith(text, self.i):
            self.i += len(text)
            return True
        return False

    def _or(self) -> _Predicate:
        operands = [self._and()]
        while self._take("||"):
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else _Or(operands)

    def _and(self) -> _Predicate:
        operands = [self._operand()]
        while self._take("&&"):
            operands.append(self._operand())
        return operands[0] if len(operands) == 1 else _And(operands)

    def _operand(self) -> _Predicate:
        if self._peek() == "!":
            bang = self.i
            self.i += 1
            if self._peek() in ("$", "@"):
                self.i = bang + 1  # "!@.x": an exists-check that expects no match
            else:
                return _Not(self._operand())
        if self._peek() == "(":
            self.i += 1
            predicate = self._or()
            if not self._take(")"):
                raise self.error("expected ')'")
            return predicate
        return self._relation()

    def _relation(self) -> _Predicate:
        start = self.i
        left = self._value()
        save = self.i
        compare = self._operator()
        if compare is None:
            self.i = save
            if not isinstance(left, _PathOperand):
                raise self.error("expected a comparison operator such as == after the value", start)
            return _Exists(left)
        right = self._value()
        return _Comparison(left, compare, right)

    def _operator(self) -> Callable[[Any, Any], bool] | None:
        self._skip()
        begin = self.i
        if self.i < len(self.s) and self.s[self.i] in _OPERATOR_CHARS:
            while self.i < len(self.s) and self.s[self.i] in _OPERATOR_CHARS:
                self.i += 1
            symbol = self.s[begin : self.i]
            if symbol not in _OPERATORS:
                raise self.error(f"unknown operator {symbol!r}; use one of ==, !=, <, <=, >, >=, =~, "
                                 "in, nin, contains, size, empty, subsetof, anyof, noneof", begin)
            return _OPERATORS[symbol]
        while self.i < len(self.s) and self.s[self.i] != " ":
            self.i += 1
        word = self.s[begin : self.i].upper()
        return _OPERATORS.get(word) if word.isalpha() else None

    def _value(self) -> _PathOperand | _Literal:
        c = self._peek()
        if not c:
            raise self.error("expected a value")
        if c in "$@":
            return self._path()
        start = self.i
        if c in "'\"":
            end = _next_unescaped(self.s, self.i, c)
            if end == -1:
                raise self.error(f"string not closed: expected {c}", start)
            self.i = end + 1
            try:
                return _Literal(_java_unescape(self.s[start + 1 : end]))
            except ValueError as exc:
                raise self.error(str(exc), start) from None
        for word, literal in (("true", True), ("false", False), ("null", None)):
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return _Literal(literal)
        if c in "[{":
            end = _matching_close(self.s, self.i, c, "]" if c == "[" else "}", skip_regex=False)
            if end == -1:
                raise self.error(f"JSON literal not closed: expected {']' if c == '[' else '}'}", start)
            self.i = end + 1
            try:
                return _Literal(_LenientJson(self.s[start : end + 1]).parse())
            except ValueError as exc:
                raise self.error(f"invalid JSON literal ({exc})", start) from None
        if c == "/":
            return self._pattern()
        bare = _BARE_WORD.match(self.s, self.i)
        if bare:
            # `[?(@.Name==Receipt)]`: AWS accepts such definitions (two published samples
            # deploy with one); the bare word is read as the string the samples mean.
            self.i = bare.end()
            return _Literal(bare.group())
        while self.i < len(self.s) and self.s[self.i] in _FILTER_NUMBER_CHARS:
            self.i += 1
        text = self.s[start : self.i]
        if not text or not re.fullmatch(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE]-?\d+)?", text):
            self.i = start
            raise self.error(f"expected a value (a path, 'string', number, true, false, null, [..] or /regex/), "
                             f"found {self.s[start:start + 10]!r}", start)
        return _Literal(float(text) if any(ch in text for ch in ".eE") else int(text))

    def _pattern(self) -> _Literal:
        start = self.i
        end = _next_unescaped(self.s, self.i, "/")
        if end == -1:
            raise self.error("regular expression not closed: expected /", start)
        flags = 0
        self.i = end + 1
        while self.i < len(self.s) and self.s[self.i] in _PATTERN_FLAGS:
            flags |= _PATTERN_FLAGS[self.s[self.i]]
            self.i += 1
        try:
            return _Literal(re.compile(self.s[start + 1 : end], flags))
        except re.error as exc:
            raise self.error(f"invalid regular expression ({exc})", start) from None

    def _path(self) -> _PathOperand:
        begin = self.i
        before = self.s[:begin].rstrip(" ")
        negated = before.endswith("!")
        self.i += 1
        # Jayway reads a filter path up to an operator character, a blank or a
        # closing parenthesis that does not close a function call.
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "[":
                end = _matching_close(self.s, self.i, "[", "]", skip_regex=False)
                if end == -1:
                    raise self.error("unbalanced '[' in a path", self.i)
                self.i = end + 1
                continue
            if c in _OPERATOR_CHARS or c == " ":
                break
            if c == ")" and not self._closes_function(begin):
                break
            self.i += 1
        text = self.s[begin : self.i]
        root_char, tokens = _Parser(text, self.source, self.offset + begin, roots="$@").parse()
        return _PathOperand(root_char, tokens, negated)

    def _closes_function(self, begin: int) -> bool:
        opening = self.s[: self.i].rstrip(" ")
        if not opening.endswith("("):
            return False
        return "." in self.s[begin + 1 : len(opening) - 1]


# --------------------------------------------------------------------------
# Path parser (Jayway's PathCompiler)
# --------------------------------------------------------------------------

_INT32 = 2**31


class _Parser:
    def __init__(self, text: str, source: str | None = None, offset: int = 0, roots: str = "$") -> None:
        stripped = text.strip()
        self.offset = offset + (len(text) - len(text.lstrip()))
        self.s = stripped
        self.source = text if source is None else source
        self.roots = roots

    def error(self, problem: str, at: int | None, hint: str = "") -> InvalidPath:
        position = None if at is None else self.offset + at
        where = "" if position is None else f" at position {position}"
        message = f"invalid JSONPath {self.source!r}: {problem}{where}"
        if hint:
            message += f"; {hint}"
        return InvalidPath(message, path=self.source, position=position)

    def parse(self) -> tuple[str, tuple[_Token, ...]]:
        s = self.s
        if not s:
            raise self.error("the path is empty", None, "write '$' for the whole input")
        if s[0] not in self.roots:
            raise self.error(f"a path must start with {' or '.join(repr(r) for r in self.roots)}", 0)
        if s.endswith("."):
            raise self.error("a path must not end with '.' or '..'", len(s) - 1)
        tokens: list[_Token] = []
        if len(s) > 1 and s[1] not in ".[":
            raise self.error(f"unexpected {s[1]!r} after {s[0]!r}; expected '.' or '['", 1)
        pos = 1
        while pos < len(s):
            c = s[pos]
            if c == "[":
                pos = self._bracket(pos, tokens)
            elif c == ".":
                if s.startswith("..", pos):
                    tokens.append(_Scan())
                    pos += 2
                else:
                    pos += 1
                if s[pos] == ".":
                    raise self.error("unexpected '.'", pos)
                if s[pos] not in "[*":
                    pos = self._name(pos, tokens)
            elif c == "*":
                tokens.append(_Wildcard())
                pos += 1
            else:
                pos = self._name(pos, tokens)
        return s[0], _link(tokens)

    def _skip(self, pos: int) -> int:
        while pos < len(self.s) and self.s[pos] == " ":
            pos += 1
        return pos

    def _name(self, pos: int, tokens: list[_Token]) -> int:
        s = self.s
        start = pos
        if s[pos] == " ":
            raise self.error("unexpected blank", pos)
        while pos < len(s):
            c = s[pos]
            if c == " ":
                raise self.error("a name containing a blank needs bracket notation", pos,
                                 "write ['my name'] instead of .my name")
            if c in ".[":
                break
            if c == "(":
                return self._function(start, pos, tokens)
            pos += 1
        tokens.append(_Property((s[start:pos],)))
        return pos

    def _function(self, start: int, open_paren: int, tokens: list[_Token]) -> int:
        close = _matching_close(self.s, open_paren, "(", ")", skip_regex=False)
        name = self.s[start:open_paren]
        if close == -1:
            raise self.error(f"the arguments of function {name}() are not closed", open_paren)
        tokens.append(_Function(name, self.s[open_paren + 1 : close]))
        return close + 1

    def _bracket(self, pos: int, tokens: list[_Token]) -> int:
        s = self.s
        j = self._skip(pos + 1)
        c = s[j] if j < len(s) else ""
        if c in ("'", '"'):
            return self._quoted_names(pos, j, tokens)
        if c and (c in "0123456789-:"):
            return self._array(pos, tokens)
        if c == "*":
            k = self._skip(j + 1)
            if k >= len(s) or s[k] != "]":
                raise self.error("expected ']' after '[*'", k)
            tokens.append(_Wildcard())
            return k + 1
        if c == "?":
            return self._filter(pos, j, tokens)
        if not c:
            raise self.error("'[' is not closed", pos)
        raise self.error(f"unexpected {c!r} after '['", j,
                         "expected a quoted name, an index, a slice, '*' or a filter '?(...)'")

    def _quoted_names(self, pos: int, j: int, tokens: list[_Token]) -> int:
        s = self.s
        quote = s[j]
        names: list[str] = []
        k = j
        while True:
            end = s.find(quote, k + 1)
            if end == -1:
                raise self.error(f"the name is not closed: missing {quote}", k)
            # Taken verbatim: AWS keeps backslashes in bracket names.
            names.append(s[k + 1 : end])
            k = self._skip(end + 1)
            if k >= len(s):
                raise self.error("missing ']' after the quoted name", k)
            if s[k] == "]":
                break
            if s[k] != ",":
                raise self.error(f"unexpected {s[k]!r} after the quoted name; expected ',' or ']'", k)
            k = self._skip(k + 1)
            if k >= len(s) or s[k] != quote:
                raise self.error(f"expected a name in {quote}{quote} after ','", k)
        tokens.append(_Property(tuple(names), quote))
        return k + 1

    def _int(self, text: str, at: int) -> int:
        if not re.fullmatch(r"-?\d+", text):
            raise self.error(f"{text!r} is not an array index", at)
        value = int(text)
        if not -_INT32 <= value < _INT32:
            raise self.error(f"array index {text} is out of range", at)
        return value

    def _array(self, pos: int, tokens: list[_Token]) -> int:
        s = self.s
        close = s.find("]", pos + 1)
        if close == -1:
            raise self.error("'[' is not closed", pos)
        expression = s[pos + 1 : close].replace(" ", "")
        if any(c not in "0123456789,-:" for c in expression):
            raise self.error(f"{s[pos:close + 1]!r} is neither an index list nor a slice", pos)
        if ":" in expression:
            if "," in expression:
                raise self.error(f"{s[pos:close + 1]!r} mixes a slice and an index list", pos)
            parts = expression.split(":")
            while parts and parts[-1] == "":  # Java's String.split drops trailing empties
                parts.pop()
            start = self._int(parts[0], pos) if len(parts) > 0 and parts[0] else None
            end = self._int(parts[1], pos) if len(parts) > 1 and parts[1] else None
            if start is None and end is None:
                raise self.error(f"the slice {s[pos:close + 1]!r} has neither a start nor an end", pos)
            tokens.append(_Slice(start, end))
        else:
            tokens.append(_Index(tuple(self._int(part, pos) for part in expression.split(","))))
        return close + 1

    def _filter(self, pos: int, question: int, tokens: list[_Token]) -> int:
        s = self.s
        open_paren = self._skip(question + 1)
        if open_paren >= len(s) or s[open_paren] != "(":
            raise self.error("a filter must read [?(...)]", question,
                             "placeholder filters '[?]' need predicates that Step Functions cannot pass")
        close_paren = _matching_close(s, open_paren, "(", ")", skip_regex=True)
        if close_paren == -1:
            raise self.error("the filter's '(' is not closed", open_paren)
        close = self._skip(close_paren + 1)
        if close >= len(s) or s[close] != "]":
            raise self.error("expected ']' after the filter", close)
        predicate = _FilterParser(s[open_paren : close_paren + 1], self.source, self.offset + open_paren).parse()
        tokens.append(_Filter(predicate))
        return close + 1


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


class JsonPath:
    """A compiled JSONPath.

    ``get(doc)`` returns the value of a definite path (raising
    :class:`PathNotFound`) or the list of matches of an indefinite one.
    Results share structure with ``doc``: do not mutate them.

    >>> compile_path("$.a.b[0]").get({"a": {"b": [7]}})
    7
    """

    __slots__ = ("_tokens", "is_definite", "is_reference", "is_root", "text")

    def __init__(self, text: str, tokens: tuple[_Token, ...]) -> None:
        self.text = text
        self._tokens = tokens
        self.is_root = not tokens
        self.is_definite = all(t.definite for t in tokens)
        self.is_reference = all(
            (type(t) is _Property and len(t.names) == 1) or (type(t) is _Index and len(t.indexes) == 1)
            for t in tokens
        )

    def get(self, doc: Any) -> Any:
        """Evaluate against ``doc``: a value for a definite path, else a list.

        >>> compile_path("$..id").get({"a": {"id": 1}, "b": [{"id": 2}]})
        [1, 2]
        """
        if self.is_definite:
            try:
                return _evaluate(self._tokens, True, doc, doc)
            except _NoMatch as missing:
                raise PathNotFound(self.text, missing.reason) from None
        try:
            return _evaluate(self._tokens, False, doc, doc)
        except _NoMatch:
            return []

    def _not_found(self, doc: Any) -> PathNotFound:
        """Why a definite path has no match, in Jayway's words (worked out only when read)."""
        return PathNotFound(self.text, lambda: self._explain(doc))

    def _explain(self, doc: Any) -> str:
        try:
            _evaluate(self._tokens, True, doc, doc)
        except _NoMatch as missing:
            return missing.reason
        return "No results for path: " + self.normalized()  # pragma: no cover

    def normalized(self) -> str:
        """Jayway's normalized form, as AWS prints it: ``$.a[0]`` -> ``$['a'][0]``."""
        return "$" + "".join(t.fragment() for t in self._tokens)

    def __repr__(self) -> str:
        return f"JsonPath({self.text!r})"


class _ReferencePath(JsonPath):
    """``$``, ``.name``, ``['name']`` and ``[index]`` only: a tight loop over the steps."""

    __slots__ = ("single_name", "steps")

    def __init__(self, text: str, tokens: tuple[_Token, ...]) -> None:
        super().__init__(text, tokens)
        self.steps: tuple[str | int, ...] = tuple(
            t.names[0] if type(t) is _Property else t.indexes[0] for t in tokens  # type: ignore[attr-defined]
        )
        #: The name of a one-name path (``$.a``), the commonest ResultPath.
        self.single_name = self.steps[0] if len(self.steps) == 1 and type(self.steps[0]) is str else None

    def get(self, doc: Any) -> Any:
        node = doc
        try:
            for step in self.steps:
                # an int subscript would also read characters out of a string
                if type(step) is int and not isinstance(node, list):
                    raise TypeError
                node = node[step]
        except (KeyError, IndexError, TypeError):
            raise self._not_found(doc) from None
        return node


class _NamePath(_ReferencePath):
    """A reference path of names only (``$.a.b``): the hottest case."""

    __slots__ = ()

    def get(self, doc: Any) -> Any:
        node = doc
        try:
            # a str subscript fails with TypeError on lists, strings, numbers,
            # booleans and null, so no type check is needed on the way
            for name in self.steps:
                node = node[name]
        except (KeyError, TypeError):
            raise self._not_found(doc) from None
        return node


@functools.lru_cache(maxsize=8192)
def _compile(text: str) -> JsonPath:
    _, tokens = _Parser(text).parse()
    path = JsonPath(text, tokens)
    if not path.is_reference:
        return path
    if all(type(t) is _Property for t in tokens):
        return _NamePath(text, tokens)
    return _ReferencePath(text, tokens)


def compile_path(text: str) -> JsonPath:
    """Compile a JSONPath (cached); raises :class:`InvalidPath` on malformed text.

    >>> compile_path("$.items[*].id").is_definite
    False
    """
    if not isinstance(text, str):
        raise InvalidPath(f"a JSONPath must be a string starting with '$', got {_compact_json(text)}")
    return _compile(text)


@functools.lru_cache(maxsize=4096)
def _compile_reference(text: str) -> JsonPath:
    path = _compile(text)
    if path.is_reference:
        return path
    offending = next(
        t for t in path._tokens
        if not ((type(t) is _Property and len(t.names) == 1) or (type(t) is _Index and len(t.indexes) == 1))
    )
    raise InvalidPath(
        f"invalid reference path {text!r}: {offending.fragment()!r} is not allowed; a reference path "
        f"(ResultPath) may only use $, .name, ['name'] and [index]",
        path=text,
    )


def compile_reference_path(text: str) -> JsonPath:
    """Compile a reference path (``ResultPath``); raises :class:`InvalidPath` otherwise.

    >>> compile_reference_path("$.a['b'][0]").is_reference
    True
    """
    if not isinstance(text, str):
        raise InvalidPath(f"a reference path must be a string starting with '$', got {_compact_json(text)}")
    return _compile_reference(text)


def set_path(doc: Any, path: JsonPath, value: Any) -> Any:
    """``doc`` with ``value`` placed at ``path`` (ResultPath), as a new document.

    Only the objects and arrays along the path are copied; ``doc`` and every
    value inside it are left untouched.  Missing objects on the way are
    created.  When the input, or a node on the way, is not an object (or an
    array for an ``[index]`` step), raises :class:`StatesError`
    ``States.ReferencePathConflict`` with AWS's cause text.

    >>> doc = {"a": {"keep": 1}}
    >>> set_path(doc, compile_reference_path("$.a.b"), 2)
    {'a': {'keep': 1, 'b': 2}}
    >>> doc
    {'a': {'keep': 1}}
    """
    if not isinstance(path, _ReferencePath):
        if path.is_root:
            return value
        raise InvalidPath(
            f"ResultPath needs a reference path ($, .name, ['name'], [index]); {path.text!r} is not one",
            path=path.text,
        )
    name = path.single_name
    if name is not None and isinstance(doc, dict):
        placed = dict(doc)
        placed[name] = value
        return placed
    steps = path.steps
    if not steps:
        return value
    if not _fits(doc, steps[0]):
        raise StatesError(
            REFERENCE_PATH_CONFLICT, f"Unable to apply ReferencePath {path.text} to input {_compact_json(doc)}"
        )
    new_root = _copy_container(doc)
    node = new_root  # always a fresh copy that fits the current step
    last = len(steps) - 1
    for depth, step in enumerate(steps):
        if isinstance(step, int) and not -len(node) <= step < len(node):
            raise _unable_to_apply(step, node)
        if depth == last:
            node[step] = value
            break
        following = steps[depth + 1]
        child = node[step] if isinstance(step, int) else node.get(step, _MISSING)
        if child is _MISSING and isinstance(following, str):
            child = {}
        elif child is _MISSING or not _fits(child, following):
            raise _unable_to_apply(following, None if child is _MISSING else child)
        else:
            child = _copy_container(child)
        node[step] = child
        node = child
    return new_root


def _unable_to_apply(step: str | int, node: Any) -> StatesError:
    shown = f"[{step}]" if isinstance(step, int) else step
    return StatesError(REFERENCE_PATH_CONFLICT, f'Unable to apply step "{shown}" to input {_compact_json(node)}')


def _fits(node: Any, step: str | int) -> bool:
    return isinstance(node, list) if isinstance(step, int) else isinstance(node, dict)


def _copy_container(node: dict[str, Any] | list[Any]) -> Any:
    return dict(node) if isinstance(node, dict) else list(node)
