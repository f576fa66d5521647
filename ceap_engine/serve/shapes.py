"""Request validation from the API's own model (botocore's ``service-2.json``).

AWS checks every request against its model before the service sees it: required members,
string and list lengths, enums, numeric ranges, types. :class:`RequestShapes` does the
same and raises AWS's errors: ``ValidationException`` ("1 validation error detected:
Value null at 'name' failed to satisfy constraint: Member must not be null") or
``SerializationException`` for a wrong JSON type. Unknown members are ignored, as AWS does.

Example::

    shapes = RequestShapes.load("stepfunctions")
    shapes.check("StartExecution", {"stateMachineArn": "arn:..."})
"""

from __future__ import annotations

from typing import Any

from ceap_engine.serve.errors import ServiceError

__all__ = ["RequestShapes"]


class RequestShapes:
    """Input shapes of one service's operations."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.model = model
        self.shapes: dict[str, Any] = model["shapes"]
        self.operations: dict[str, Any] = model["operations"]
        #: Each operation's input members, flattened once (see :meth:`_flatten`).
        self._flat: dict[str, tuple[tuple[str, bool, dict[str, Any], str], ...]] = {}

    @classmethod
    def load(cls, service: str) -> RequestShapes:
        """The model botocore ships for ``service`` (botocore is a dependency of ``ceap serve``)."""
        from botocore.loaders import Loader

        return cls(Loader().load_service_model(service, "service-2"))

    def output_members(self, operation: str) -> set[str]:
        out = self.operations[operation].get("output")
        return set(self.shapes[out["shape"]].get("members", {})) if out else set()

    def check(self, operation: str, body: dict[str, Any]) -> None:
        """Raise ``ValidationException``/``SerializationException`` as AWS would for ``body``."""
        flat = self._flat.get(operation)
        if flat is None:
            flat = self._flat[operation] = self._flatten(operation)
        required, members = flat
        if not isinstance(body, dict):
            raise ServiceError("SerializationException", "Expected an object at '/'")
        problems: list[str] = []
        for name in required:
            if body.get(name) is None:
                problems.append(f"Value null at '{name}' failed to satisfy constraint: Member must not be null")
        for name, shape, plain_string in members:
            value = body.get(name)
            if value is None:
                continue
            if plain_string and type(value) is str:  # the common member, inline: only its length to check
                n = len(value)
                if n < shape.get("min", 0) or n > shape.get("max", n):
                    self._length(shape, n, value, name, problems)
            else:
                self._check(shape, value, name, problems)
        if problems:
            n = len(problems)
            raise ServiceError("ValidationException",
                               f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(problems))

    def _flatten(self, operation: str) -> tuple[tuple[str, ...], tuple[tuple[str, dict[str, Any], bool], ...]]:
        """``operation``'s input, looked up once: its required members, and ``(name, shape, plain string)``
        for every member in model order (a plain string: a string with no enum, checked inline)."""
        spec = self.operations.get(operation)
        if spec is None:
            raise ServiceError("UnknownOperationException", f"Unknown operation {operation!r}")
        if "input" not in spec:
            return (), ()
        top = self.shapes[spec["input"]["shape"]]
        members = []
        for name, member in top.get("members", {}).items():
            shape = self.shapes[member["shape"]]
            members.append((name, shape, shape["type"] == "string" and "enum" not in shape))
        return tuple(top.get("required", ())), tuple(members)

    def _check(self, shape: dict[str, Any], value: Any, where: str, problems: list[str]) -> None:
        kind = shape["type"]
        if kind == "structure":
            if not isinstance(value, dict):
                raise ServiceError("SerializationException", f"Expected an object at '{where or '/'}'")
            for name in shape.get("required", ()):
                if value.get(name) is None:
                    problems.append(f"Value null at '{_join(where, name)}' failed to satisfy constraint: Member must not be null")
            for name, member in shape.get("members", {}).items():
                if value.get(name) is not None:
                    self._check(self.shapes[member["shape"]], value[name], _join(where, name), problems)
        elif kind == "list":
            if not isinstance(value, list):
                raise ServiceError("SerializationException", f"Expected a list at '{where}'")
            self._length(shape, len(value), value, where, problems)
            member = self.shapes[shape["member"]["shape"]]
            for i, item in enumerate(value):
                self._check(member, item, f"{where}.{i + 1}.member", problems)
        elif kind == "map":
            if not isinstance(value, dict):
                raise ServiceError("SerializationException", f"Expected an object at '{where}'")
        elif kind == "string":
            if not isinstance(value, str):
                raise ServiceError("SerializationException", f"Expected a string at '{where}', got {type(value).__name__}")
            if "enum" in shape and value not in shape["enum"]:
                problems.append(f"Value '{value}' at '{where}' failed to satisfy constraint: "
                                f"Member must satisfy enum value set: [{', '.join(shape['enum'])}]")
            self._length(shape, len(value), value, where, problems)
        elif kind in ("integer", "long", "float", "double"):
            integral = kind in ("integer", "long")
            if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
                raise ServiceError("SerializationException", f"Expected {'an integer' if integral else 'a number'} at '{where}'")
            if "min" in shape and value < shape["min"]:
                problems.append(f"Value '{value}' at '{where}' failed to satisfy constraint: "
                                f"Member must have value greater than or equal to {shape['min']}")
            if "max" in shape and value > shape["max"]:
                problems.append(f"Value '{value}' at '{where}' failed to satisfy constraint: "
                                f"Member must have value less than or equal to {shape['max']}")
        elif kind == "boolean" and not isinstance(value, bool):
            raise ServiceError("SerializationException", f"Expected a boolean at '{where}'")

    @staticmethod
    def _length(shape: dict[str, Any], n: int, value: Any, where: str, problems: list[str]) -> None:
        # What a message shows is written only for a message (an input is up to 256 KiB).
        if "min" in shape and n < shape["min"]:
            problems.append(f"Value {_shown(value)} at '{where}' failed to satisfy constraint: "
                            f"Member must have length greater than or equal to {shape['min']}")
        if "max" in shape and n > shape["max"]:
            problems.append(f"Value {_shown(value) if len(str(value)) < 100 else '...'} at '{where}' failed to satisfy "
                            f"constraint: Member must have length less than or equal to {shape['max']}")


def _shown(value: Any) -> str:
    return "null" if not isinstance(value, str) else f"'{value}'"


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
