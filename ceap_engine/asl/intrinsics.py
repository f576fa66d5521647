"""Intrinsic functions of the Amazon States Language (``States.Format(...)`` and friends).

A ``"key.$"`` field in a JSONPath state may hold an intrinsic function call
instead of a path. Calls are parsed once, when the definition is loaded, and
evaluated each time the state runs::

    call = parse_intrinsic("States.Format('Hello, {}!', $.name)")
    call.evaluate(resolve, rng)          # -> "Hello, Ada!"

The interpreter supplies ``resolve``: it turns each path argument, exactly as
written (``$.a.b``, ``$``, ``$$.Execution.Id``, ``$myVar.field``), into its JSON
value and raises its own error for a missing path. Run-time failures of the
functions themselves raise ``StatesError("States.IntrinsicFailure", cause)``.

Argument syntax: string literals in single quotes, where ``\\'``, ``\\{``,
``\\}`` and ``\\\\`` stand for ``'``, ``{``, ``}`` and ``\\`` (an escaped brace
is never a ``States.Format`` placeholder); numbers (``3``, ``-1.5``, ``2e3``);
``true``, ``false``, ``null``; paths starting with ``$``; nested calls.
"""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ceap_engine.asl._intrinsics_functions import (
    FUNCTIONS,
    ArgumentProblem,
    FunctionSpec,
    Invocation,
    copy_json,
)
from ceap_engine.errors import CeapError, StatesError

__all__ = [
    "FUNCTION_NAMES",
    "IntrinsicCall",
    "IntrinsicSyntaxError",
    "is_intrinsic",
    "parse_intrinsic",
]

#: The names of all intrinsic functions, e.g. ``"States.Format"``.
FUNCTION_NAMES: tuple[str, ...] = tuple(FUNCTIONS)

_PREFIX = "States."
# Far beyond any sensible definition (AWS documents 10 nested calls per field);
# the bound only keeps a hostile definition from exhausting Python's stack.
_MAX_NESTING = 100
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z0-9_]+")
_WHITESPACE = " \t\r\n"
_ESCAPABLE = "'{}\\"


class IntrinsicSyntaxError(CeapError, ValueError):
    """An intrinsic function call that cannot be run whatever the input.

    Raised by :func:`parse_intrinsic` for malformed text, an unknown function,
    a wrong number of arguments, or a literal argument the function refuses.
    ``text`` is the whole call, ``position`` the 0-based index where the
    problem was found (None when it concerns the call as a whole).
    """

    def __init__(self, text: str, reason: str, position: int | None = None) -> None:
        self.text = text
        self.reason = reason
        self.position = position
        where = "" if position is None else f" at character {position + 1}"
        super().__init__(f"invalid intrinsic function call {text!r}{where}: {reason}")


# --------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any
    # For a string: its pieces between unescaped "{}" pairs (States.Format placeholders).
    template: tuple[str, ...] | None = None
    # Set for a string with an open escape: AWS documents that as a run-time error.
    problem: str | None = None

    def evaluate(self, resolve: Callable[[str], Any], rng: random.Random) -> Any:
        if self.problem:
            raise StatesError("States.IntrinsicFailure", self.problem)
        return self.value

    def paths(self) -> Iterator[str]:
        return iter(())


@dataclass(frozen=True, slots=True)
class _Path:
    path: str

    def evaluate(self, resolve: Callable[[str], Any], rng: random.Random) -> Any:
        return resolve(self.path)

    def paths(self) -> Iterator[str]:
        yield self.path


@dataclass(frozen=True, slots=True)
class _Call:
    spec: FunctionSpec
    arguments: tuple[_Literal | _Path | _Call, ...]

    def evaluate(self, resolve: Callable[[str], Any], rng: random.Random) -> Any:
        values = [argument.evaluate(resolve, rng) for argument in self.arguments]
        first = self.arguments[0] if self.arguments else None
        template = first.template if isinstance(first, _Literal) else None
        try:
            return self.spec.call(values, Invocation(rng, template))
        except ArgumentProblem as problem:
            raise StatesError("States.IntrinsicFailure", f"{self.spec.name}: {problem}") from None

    def paths(self) -> Iterator[str]:
        for argument in self.arguments:
            yield from argument.paths()


# --------------------------------------------------------------------------- public API


def is_intrinsic(text: str) -> bool:
    """Whether a ``.$`` field value is an intrinsic function call (not a path).

    >>> is_intrinsic("States.Format('x {}', $.a)"), is_intrinsic("$.a")
    (True, False)
    """
    return isinstance(text, str) and text.startswith(_PREFIX)


class IntrinsicCall:
    """A parsed intrinsic function call, ready to evaluate many times.

    >>> call = parse_intrinsic("States.MathAdd($.count, 1)")
    >>> call.evaluate({"$.count": 41}.__getitem__, random.Random(0))
    42
    """

    __slots__ = ("text", "_root")

    def __init__(self, text: str, root: _Call) -> None:
        self.text = text
        self._root = root

    @property
    def function(self) -> str:
        """The outermost function's name, e.g. ``"States.Format"``."""
        return self._root.spec.name

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path argument, nested calls included, in evaluation order.

        Lets a definition check refer to variables before anything runs.
        """
        return tuple(self._root.paths())

    def evaluate(self, resolve: Callable[[str], Any], rng: random.Random) -> Any:
        """Compute the call's JSON value.

        ``resolve(path)`` returns the value of a path argument (its errors
        propagate); ``rng`` feeds ``States.MathRandom`` without a seed and
        ``States.UUID``. Raises ``StatesError("States.IntrinsicFailure", ...)``
        when a function refuses its arguments. The result shares nothing with
        the values ``resolve`` returned, so the caller may change it.
        """
        return copy_json(self._root.evaluate(resolve, rng))

    def __repr__(self) -> str:
        return f"IntrinsicCall({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IntrinsicCall) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def parse_intrinsic(text: str) -> IntrinsicCall:
    """Parse an intrinsic function call; raise IntrinsicSyntaxError if it can never run.

    Checked here: the syntax, the function names, the number of arguments,
    literal arguments (``States.Hash($.x, 'SHA-3')`` is refused), and for a
    literal ``States.Format`` template, that its ``{}`` count matches.

    >>> parse_intrinsic("States.ArrayLength($.items)").function
    'States.ArrayLength'
    """
    if not isinstance(text, str):
        raise IntrinsicSyntaxError(repr(text), "an intrinsic function call must be a string")
    parser = _Parser(text)
    root = parser.call(depth=1)
    parser.skip_whitespace()
    if parser.pos != len(text):
        raise parser.error("unexpected text after the closing ')' of the call; remove it")
    return IntrinsicCall(text, root)


# --------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over the call text, one character position at a time."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, reason: str, position: int | None = -1) -> IntrinsicSyntaxError:
        return IntrinsicSyntaxError(self.text, reason, self.pos if position == -1 else position)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_whitespace(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
            self.pos += 1

    def call(self, depth: int) -> _Call:
        start = self.pos
        if depth > _MAX_NESTING:
            raise self.error(f"more than {_MAX_NESTING} nested intrinsic function calls")
        if not self.text.startswith(_PREFIX, self.pos):
            raise self.error("expected a function call starting with 'States.'")
        self.pos += len(_PREFIX)
        match = _NAME.match(self.text, self.pos)
        name = _PREFIX + (match.group() if match else "")
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise self.error(_unknown_function(name), start)
        self.pos = match.end() if match else self.pos
        self.skip_whitespace()
        if self.peek() != "(":
            raise self.error(f"expected '(' after {name}")
        self.pos += 1
        arguments: list[_Literal | _Path | _Call] = []
        argument_starts: list[int] = []
        self.skip_whitespace()
        if self.peek() == ")":
            self.pos += 1
        else:
            while True:
                self.skip_whitespace()
                argument_starts.append(self.pos)
                arguments.append(self.argument(depth))
                self.skip_whitespace()
                separator = self.peek()
                if separator == ",":
                    self.pos += 1
                elif separator == ")":
                    self.pos += 1
                    break
                elif not separator:
                    raise self.error(f"missing ')' to close {name}(")
                else:
                    raise self.error(
                        f"expected ',' or ')' after argument {len(arguments)} of {name}"
                    )
        return self._checked(_Call(spec, tuple(arguments)), argument_starts, start)

    def _checked(self, call: _Call, argument_starts: list[int], start: int) -> _Call:
        spec = call.spec
        count_problem = spec.count_problem(len(call.arguments))
        if count_problem:
            raise self.error(count_problem, start)
        for position, argument in enumerate(call.arguments):
            if isinstance(argument, _Literal) and argument.problem is None:
                try:
                    spec.check(position, argument.value)
                except ArgumentProblem as problem:
                    raise self.error(f"{spec.name}: {problem}", argument_starts[position]) from None
        if spec.name == "States.Format":
            template = call.arguments[0]
            if isinstance(template, _Literal) and template.template is not None:
                placeholders = len(template.template) - 1
                values = len(call.arguments) - 1
                if placeholders != values:
                    raise self.error(
                        f"the States.Format template has {placeholders} '{{}}' placeholder(s)"
                        f" but {values} value(s) follow it; pass one value per placeholder"
                        " (write \\\\{ and \\\\} in the definition JSON for literal braces)",
                        start,
                    )
        return call

    def argument(self, depth: int) -> _Literal | _Path | _Call:
        char = self.peek()
        if char == "'":
            return self.string()
        if char == "$":
            return self.path()
        if char == "-" or char.isdigit():
            return self.number()
        if self.text.startswith(_PREFIX, self.pos):
            return self.call(depth + 1)
        match = _NAME.match(self.text, self.pos)
        if match:
            word = match.group()
            constants = {"true": True, "false": False, "null": None}
            if word in constants:
                self.pos = match.end()
                return _Literal(constants[word])
            raise self.error(
                f"unexpected word {word!r}: an argument is a 'quoted string', a number,"
                " true, false, null, a path starting with $, or a States.* call"
            )
        if char == '"':
            raise self.error("string literals use single quotes: 'text', not \"text\"")
        if not char:
            raise self.error("the call ends where an argument was expected; add it and ')'")
        raise self.error(
            f"unexpected {char!r}: an argument is a 'quoted string', a number, true, false,"
            " null, a path starting with $, or a States.* call"
        )

    def string(self) -> _Literal:
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        # Indexes into chars of the unescaped '{' of each "{}" placeholder.
        placeholders: list[int] = []
        previous_open_brace = False
        problem = None
        while True:
            if self.pos >= len(self.text):
                raise self.error("string literal is not closed; add the closing '", start)
            char = self.text[self.pos]
            if char == "'":
                self.pos += 1
                break
            if char == "\\":
                escaped = self.text[self.pos + 1 : self.pos + 2]
                if escaped == '"':
                    # AWS refuses the definition (ValidateStateMachineDefinition), unlike other open escapes.
                    raise self.error('a string literal cannot hold \\" (write the double quote as it is)', self.pos)
                if not escaped or escaped not in _ESCAPABLE:
                    # The AWS guide: an open escape backslash is a run-time error, so the
                    # definition loads and evaluating the call fails.
                    problem = problem or (
                        f"open escape at character {self.pos + 1} of {self.text}:"
                        " in a string literal a backslash must be followed by ', {, } or \\"
                        " (write \\\\\\\\ in the definition JSON for a literal backslash)"
                    )
                    escaped = ""
                chars.append(escaped or char)
                self.pos += 1 + len(escaped)
                previous_open_brace = False
                continue
            if char == "}" and previous_open_brace:
                placeholders.append(len(chars) - 1)
            previous_open_brace = char == "{"
            chars.append(char)
            self.pos += 1
        value = "".join(chars)
        pieces: list[str] = []
        cut = 0
        for index in placeholders:
            pieces.append(value[cut:index])
            cut = index + 2
        pieces.append(value[cut:])
        return _Literal(value, tuple(pieces), problem)

    def number(self) -> _Literal:
        match = _NUMBER.match(self.text, self.pos)
        if not match:
            raise self.error("expected a number after '-'")
        end = match.end()
        if end < len(self.text) and self.text[end] not in _WHITESPACE + ",)":
            raise self.error(f"malformed number {self.text[self.pos:end + 1]!r}")
        literal = match.group()
        self.pos = end
        if any(mark in literal for mark in ".eE"):
            return _Literal(float(literal))
        return _Literal(int(literal))

    def path(self) -> _Path:
        start = self.pos
        closers: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if not closers and (char in ",)" or char in _WHITESPACE):
                break
            if char in "'\"" and closers:
                self._skip_quoted(char)
                continue
            if char == "[":
                closers.append("]")
            elif char == "(":
                closers.append(")")
            elif closers and char == closers[-1]:
                closers.pop()
            self.pos += 1
        if closers:
            raise self.error(f"path {self.text[start:]!r} is missing a {closers[-1]!r}", start)
        return _Path(self.text[start : self.pos])

    def _skip_quoted(self, quote: str) -> None:
        start = self.pos
        self.pos += 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\":
                self.pos += 2
                continue
            self.pos += 1
            if char == quote:
                return
        raise self.error(f"quoted name in path is not closed; add the closing {quote}", start)


def _unknown_function(name: str) -> str:
    close = difflib.get_close_matches(name, FUNCTION_NAMES, n=1, cutoff=0.8)
    hint = f"did you mean {close[0]}? " if close else ""
    if name == _PREFIX:
        return f"expected a function name after 'States.'; known functions: {', '.join(FUNCTION_NAMES)}"
    return f"unknown intrinsic function {name}; {hint}known functions: {', '.join(FUNCTION_NAMES)}"
