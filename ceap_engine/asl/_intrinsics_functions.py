"""The 18 ``States.*`` intrinsic functions: their argument rules and results.

Each function is described by a :class:`FunctionSpec`: its parameters (each with
a kind that checks and converts one argument value) and the code that computes
the result. The parser in :mod:`ceap_engine.asl.intrinsics` uses the same specs
to check argument counts and literal arguments when a definition is loaded, and
the evaluator uses them to check the values that paths resolve to at run time.

The behaviour follows what AWS Step Functions does (the recorded executions in
the conformance corpus and the AWS developer guide). Where AWS is silent, the
choice is commented.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

#: Base64Encode, Base64Decode and Hash refuse longer input (AWS developer guide).
MAX_TEXT_CHARS = 10_000
#: ArrayRange refuses to build a longer array (AWS developer guide).
MAX_RANGE_ITEMS = 1_000
#: MathAdd takes 32-bit signed integers (AWS developer guide).
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

HASH_ALGORITHMS: dict[str, str] = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


class ArgumentProblem(Exception):
    """An argument value a function cannot accept.

    The message completes the sentence "States.X: ..." and says what to pass instead.
    """


@dataclass(frozen=True, slots=True)
class Invocation:
    """What a function may need besides its argument values.

    ``format_template`` holds the pieces of a literal ``States.Format`` template
    between its unescaped ``{}`` placeholders (escaped braces are already plain
    text there); it is None when the template comes from a path.
    """

    rng: random.Random
    format_template: tuple[str, ...] | None = None


# --------------------------------------------------------------------------- values


def describe(value: Any) -> str:
    """Name a JSON value's type and show it, for error messages.

    >>> describe("abc")
    'a string "abc"'
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, (int, float)):
        kind = "a number"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list):
        kind = "an array"
    elif isinstance(value, dict):
        kind = "an object"
    else:  # not JSON at all: the caller handed us something odd, say so plainly
        return f"a {type(value).__name__} ({value!r})"
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _normalised(value: Any) -> Any:
    # JSON does not tell 1 from 1.0, so neither do equality and uniqueness here.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    if isinstance(value, dict):
        return {key: _normalised(item) for key, item in value.items()}
    return value


def json_identity(value: Any) -> str:
    """A text that is equal for two JSON values exactly when the values are equal.

    Objects compare without regard to key order, numbers by value (``1 == 1.0``),
    and booleans never equal numbers (unlike Python, where ``True == 1``).
    """
    return json.dumps(_normalised(value), sort_keys=True, ensure_ascii=False)


def round_half_up(number: int | float) -> int:
    """Round to the nearest integer, halves towards +infinity (Java's Math.round).

    AWS rounds non-integer arguments of MathAdd this way (recorded: -1.5 -> -1,
    2.5 -> 3), and the guide says ArrayPartition, ArrayRange and MathRandom do too.

    >>> round_half_up(-2.5), round_half_up(2.5), round_half_up(1.49)
    (-2, 3, 1)
    """
    if isinstance(number, int):
        return number
    # Fraction is exact, so 0.49999999999999994 does not round up as floor(x + 0.5) would.
    return math.floor(Fraction(number) + Fraction(1, 2))


def format_text(value: Any) -> str:
    """How ``States.Format`` writes a value into its template.

    Strings go in as they are; objects and arrays are written the way AWS
    writes them (Java's map and list notation, recorded in the corpus).

    >>> format_text({"Arg1": 1, "Arg2": [None, "x"]})
    '{Arg1=1, Arg2=[null, x]}'
    """
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(format_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={format_text(item)}" for key, item in value.items()) + "}"
    return json.dumps(value)


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (faster than copy.deepcopy for plain data)."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


# --------------------------------------------------------------------------- argument kinds
# A kind checks one argument value and returns it in the form the function uses,
# or raises ArgumentProblem completing "must be ...".

ArgumentKind = Callable[[Any], Any]


def any_value(value: Any) -> Any:
    return value


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ArgumentProblem(f"must be a string, got {describe(value)}")
    return value


def limited_string(value: Any) -> str:
    text = string(value)
    if len(text) > MAX_TEXT_CHARS:
        raise ArgumentProblem(
            f"must be a string of at most {MAX_TEXT_CHARS} characters, got {len(text)} characters;"
            " process the data in smaller pieces"
        )
    return text


def array(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ArgumentProblem(f"must be an array, got {describe(value)}")
    return value


def json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ArgumentProblem(f"must be a JSON object, got {describe(value)}")
    return value


def integer(value: Any) -> int:
    if not _is_number(value):
        raise ArgumentProblem(f"must be an integer, got {describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ArgumentProblem(f"must be a finite number, got {value}")
    return round_half_up(value)


def int32(value: Any) -> int:
    number = integer(value)
    if not INT32_MIN <= number <= INT32_MAX:
        raise ArgumentProblem(
            f"must be an integer from {INT32_MIN} to {INT32_MAX}, got {describe(value)}"
        )
    return number


def array_index(value: Any) -> int:
    # The guide only says "index"; a fractional index is refused rather than rounded
    # (2.0 is accepted: JSON does not tell it from 2).
    if not _is_number(value) or (isinstance(value, float) and not value.is_integer()):
        raise ArgumentProblem(f"must be a non-negative integer, got {describe(value)}")
    index = int(value)
    if index < 0:
        raise ArgumentProblem(f"must be a non-negative integer, got {index}")
    return index


def hash_algorithm(value: Any) -> str:
    if not isinstance(value, str) or value not in HASH_ALGORITHMS:
        names = ", ".join(HASH_ALGORITHMS)
        raise ArgumentProblem(f"must be one of {names} (spelled exactly so), got {describe(value)}")
    return value


def shallow_merge_flag(value: Any) -> bool:
    if value is True:
        raise ArgumentProblem(
            "must be false: Step Functions only supports a shallow merge (deep merge is not supported)"
        )
    if value is not False:
        raise ArgumentProblem(f"must be the boolean false (shallow merge), got {describe(value)}")
    return False


@dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter of an intrinsic function: its name in messages and its kind."""

    name: str
    kind: ArgumentKind


# --------------------------------------------------------------------------- functions


def _format(args: list[Any], call: Invocation) -> str:
    template = call.format_template
    if template is None:
        template = tuple(args[0].split("{}"))
    values = args[1:]
    placeholders = len(template) - 1
    if placeholders != len(values):
        raise ArgumentProblem(
            f"the template has {placeholders} '{{}}' placeholder(s) but {len(values)} value(s)"
            " follow it; pass exactly one value per placeholder"
        )
    pieces = [template[0]]
    for value, text in zip(values, template[1:]):
        pieces.append(format_text(value))
        pieces.append(text)
    return "".join(pieces)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _string_to_json(args: list[Any], call: Invocation) -> Any:
    text = args[0]
    # Recorded on AWS: "" and " " give null instead of failing.
    if not text.strip(" \t\r\n"):
        return None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise ArgumentProblem(
            f"the argument is not valid JSON text ({reason}): {describe(text)}"
        ) from None


def _json_to_string(args: list[Any], call: Invocation) -> str:
    # Compact, as recorded on AWS: {"Arg1":1,"Arg2":[]}.
    return json.dumps(args[0], ensure_ascii=False, separators=(",", ":"))


def _array(args: list[Any], call: Invocation) -> list[Any]:
    return list(args)


def _array_partition(args: list[Any], call: Invocation) -> list[list[Any]]:
    items, size = args
    if size <= 0:
        raise ArgumentProblem(f"the chunk size must be a positive integer, got {size}")
    return [items[start : start + size] for start in range(0, len(items), size)]


def _array_contains(args: list[Any], call: Invocation) -> bool:
    items, wanted = args
    identity = json_identity(wanted)
    return any(json_identity(item) == identity for item in items)


def _array_range(args: list[Any], call: Invocation) -> list[int]:
    start, end, step = args
    if step == 0:
        raise ArgumentProblem("the step (third argument) must not be 0")
    if (step > 0 and end < start) or (step < 0 and end > start):
        count = 0
    else:
        count = (end - start) // step + 1
    if count > MAX_RANGE_ITEMS:
        raise ArgumentProblem(
            f"the range from {start} to {end} in steps of {step} has {count} items,"
            f" more than the limit of {MAX_RANGE_ITEMS}; use a larger step or a shorter range"
        )
    return [start + i * step for i in range(count)]


def _array_get_item(args: list[Any], call: Invocation) -> Any:
    items, index = args
    if index >= len(items):
        raise ArgumentProblem(
            f"the index {index} is out of bounds for an array of {len(items)} item(s)"
            + (f" (valid indexes are 0 to {len(items) - 1})" if items else "")
        )
    return items[index]


def _array_length(args: list[Any], call: Invocation) -> int:
    return len(args[0])


def _array_unique(args: list[Any], call: Invocation) -> list[Any]:
    seen: set[str] = set()
    unique = []
    for item in args[0]:
        identity = json_identity(item)
        if identity not in seen:
            seen.add(identity)
            unique.append(item)
    return unique


def _base64_encode(args: list[Any], call: Invocation) -> str:
    return base64.b64encode(args[0].encode("utf-8")).decode("ascii")


_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _base64_decode(args: list[Any], call: Invocation) -> str:
    text = args[0]
    digits = text.rstrip("=")
    padded = len(text) != len(digits)
    # Like Java's Base64 decoder: padding may be left out, but if present it must be right.
    if (
        not _BASE64_TEXT.fullmatch(text)
        or len(digits) % 4 == 1
        or (padded and len(text) % 4 != 0)
    ):
        raise ArgumentProblem(f"the argument is not valid base64 text: {describe(text)}")
    data = base64.b64decode(digits + "=" * (-len(digits) % 4), validate=True)
    # Bytes that are not UTF-8 become U+FFFD, as a Java String built from them would.
    return data.decode("utf-8", errors="replace")


def _hash(args: list[Any], call: Invocation) -> str:
    data, algorithm = args
    return hashlib.new(HASH_ALGORITHMS[algorithm], data.encode("utf-8")).hexdigest()


def _json_merge(args: list[Any], call: Invocation) -> dict[str, Any]:
    first, second, _deep = args
    merged = dict(first)
    merged.update(second)  # on a shared key the second object wins (recorded on AWS)
    return merged


def _math_random(args: list[Any], call: Invocation) -> int:
    start, end = args[0], args[1]
    # The guide says "between start and end". We draw from [start, end): a value
    # AWS might never produce (end itself) is then never produced locally either.
    if end <= start:
        raise ArgumentProblem(
            f"the end ({end}) must be greater than the start ({start})"
        )
    generator = random.Random(args[2]) if len(args) == 3 else call.rng
    return generator.randrange(start, end)


def _math_add(args: list[Any], call: Invocation) -> int:
    return args[0] + args[1]


def _string_split(args: list[Any], call: Invocation) -> list[str]:
    text, delimiters = args
    # Every character of the second argument is a delimiter and empty pieces are
    # dropped (recorded: ",,,," -> [], "a.b+c" with ".+" -> ["a", "b", "c"]).
    tokens: list[str] = []
    current: list[str] = []
    for char in text:
        if char in delimiters:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        tokens.append("".join(current))
    return tokens


def _uuid(args: list[Any], call: Invocation) -> str:
    raw = call.rng.getrandbits(128).to_bytes(16, "big")
    return str(uuid.UUID(bytes=raw, version=4))


# --------------------------------------------------------------------------- table


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """An intrinsic function: its parameters and how it computes its result.

    ``optional`` trailing parameters may be left out; ``rest`` (if set) accepts
    any number of further arguments of that kind.
    """

    name: str
    parameters: tuple[Parameter, ...]
    compute: Callable[[list[Any], Invocation], Any]
    optional: int = 0
    rest: Parameter | None = None

    def count_problem(self, count: int) -> str | None:
        """Say what is wrong with passing ``count`` arguments, or None if it is fine."""
        required = len(self.parameters) - self.optional
        names = ", ".join(p.name for p in self.parameters)
        if self.rest is not None:
            if count >= required:
                return None
            return (
                f"{self.name} takes at least {required} argument(s) ({names}, then"
                f" any number of {self.rest.name}s), got {count}"
            )
        if required <= count <= len(self.parameters):
            return None
        if self.optional:
            wanted = f"{required} or {len(self.parameters)} arguments ({names})"
        elif self.parameters:
            wanted = f"exactly {required} argument(s) ({names})"
        else:
            wanted = "no arguments"
        return f"{self.name} takes {wanted}, got {count}"

    def parameter(self, position: int) -> Parameter:
        """The parameter that the argument at ``position`` (0-based) fills."""
        if position < len(self.parameters):
            return self.parameters[position]
        assert self.rest is not None, "count_problem() rejects surplus arguments first"
        return self.rest

    def check(self, position: int, value: Any) -> Any:
        """Check one argument; ArgumentProblem's message names the argument."""
        parameter = self.parameter(position)
        try:
            return parameter.kind(value)
        except ArgumentProblem as problem:
            raise ArgumentProblem(
                f"argument {position + 1} ({parameter.name}) {problem}"
            ) from None

    def call(self, values: Sequence[Any], invocation: Invocation) -> Any:
        """Check all argument values and compute the result."""
        checked = [self.check(position, value) for position, value in enumerate(values)]
        return self.compute(checked, invocation)


def _spec(name: str, compute: Callable[[list[Any], Invocation], Any], *parameters: Parameter,
          optional: int = 0, rest: Parameter | None = None) -> FunctionSpec:
    return FunctionSpec(f"States.{name}", tuple(parameters), compute, optional, rest)


P = Parameter
FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: spec
    for spec in (
        _spec("Format", _format, P("template", string), rest=P("value", any_value)),
        _spec("StringToJson", _string_to_json, P("JSON text", string)),
        _spec("JsonToString", _json_to_string, P("value", any_value)),
        _spec("Array", _array, rest=P("value", any_value)),
        _spec("ArrayPartition", _array_partition, P("array", array), P("chunk size", integer)),
        _spec("ArrayContains", _array_contains, P("array", array), P("value", any_value)),
        _spec("ArrayRange", _array_range, P("start", integer), P("end", integer), P("step", integer)),
        _spec("ArrayGetItem", _array_get_item, P("array", array), P("index", array_index)),
        _spec("ArrayLength", _array_length, P("array", array)),
        _spec("ArrayUnique", _array_unique, P("array", array)),
        _spec("Base64Encode", _base64_encode, P("data", limited_string)),
        _spec("Base64Decode", _base64_decode, P("base64 data", limited_string)),
        _spec("Hash", _hash, P("data", limited_string), P("algorithm", hash_algorithm)),
        _spec("JsonMerge", _json_merge, P("first object", json_object),
              P("second object", json_object), P("deep merge flag", shallow_merge_flag)),
        _spec("MathRandom", _math_random, P("start", integer), P("end", integer),
              P("seed", integer), optional=1),
        _spec("MathAdd", _math_add, P("first number", int32), P("second number", int32)),
        _spec("StringSplit", _string_split, P("string", string), P("delimiters", string)),
        _spec("UUID", _uuid),
    )
}
