"""Mock results of TestState checked against the service's API shapes, as AWS does.

A ``mock.result`` of a Task on an AWS SDK or optimized integration must match the output
shape of that API (botocore's service model): STRICT refuses unknown fields and wrong types,
PRESENT only wrong types of the fields present, NONE checks nothing.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, ClassVar

from ceap_engine.errors import TestStateRejected
from ceap_engine.runtime.tasks import parse_resource

__all__ = ["ServiceModels", "validate_mock_result"]


class ServiceModels:
    """AWS API output shapes, read from botocore-format service models (``service-2.json[.gz]``).

    Used to check a mocked Task result as AWS does (``mock.fieldValidationMode``).
    :meth:`from_botocore` finds the models of an installed botocore (the ``aws``
    extra) without importing it; without models, results are not checked.
    """

    _ALIASES: ClassVar[dict[str, str]] = {"sfn": "stepfunctions", "states": "stepfunctions", "eventbridge": "events",
                "cloudwatchlogs": "logs", "elasticloadbalancingv2": "elbv2"}

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._models: dict[str, dict[str, Any] | None] = {}

    @classmethod
    def from_botocore(cls) -> ServiceModels | None:
        import importlib.util

        spec = importlib.util.find_spec("botocore")
        if spec is None or spec.origin is None:
            return None
        data = Path(spec.origin).parent / "data"
        return cls(data) if data.is_dir() else None

    def _model(self, service: str) -> dict[str, Any] | None:
        if service in self._models:
            return self._models[service]
        model = None
        folder = self.directory / service
        if folder.is_dir():
            versions = sorted(p for p in folder.iterdir() if p.is_dir())
            for version in reversed(versions):
                for name in ("service-2.json", "service-2.json.gz"):
                    path = version / name
                    if path.is_file():
                        raw = path.read_bytes()
                        model = json.loads(gzip.decompress(raw) if name.endswith(".gz") else raw)
                        break
                if model is not None:
                    break
        self._models[service] = model
        return model

    def output_shape(self, service: str, operation: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(the operation's output shape, all shapes of the service), or None if unknown."""
        model = self._model(self._ALIASES.get(service, service))
        if model is None:
            return None
        op = model.get("operations", {}).get(operation)
        if op is None or "output" not in op:
            return None
        shapes = model.get("shapes", {})
        return shapes.get(op["output"]["shape"], {}), shapes


def _api_of(resource: str) -> tuple[str, str] | None:
    """(service, operation) of a Task resource whose result is the API's output, else None."""
    info = parse_resource(resource)
    if info is None or info.kind != "service" or info.pattern:
        return None
    service, action = info.resource_type, info.resource
    if service.startswith("aws-sdk:"):
        service = service.split(":", 1)[1]
    return service, action[:1].upper() + action[1:]


class _SchemaError(Exception):
    pass


def _check_shape(value: Any, shape: dict[str, Any], shapes: dict[str, Any], name: str, strict: bool,
                 skip: frozenset[str]) -> None:
    kind = shape.get("type")
    if kind == "structure":
        if not isinstance(value, dict):
            raise _SchemaError(f"Field '{name}' must be an object")
        # Step Functions names every member in PascalCase (botocore keeps some in camelCase).
        if strict:
            for required in shape.get("required", []):
                if _pascal(required) not in value:
                    raise _SchemaError(f"Required field '{_pascal(required)}' is missing")
        for raw_member, ref in shape.get("members", {}).items():
            member = _pascal(raw_member)
            if member in value and member not in skip:
                _check_shape(value[member], shapes.get(ref["shape"], {}), shapes, member, strict, skip)
    elif kind == "list":
        if not isinstance(value, list):
            raise _SchemaError(f"Field '{name}' must be an array")
        member = shapes.get(shape.get("member", {}).get("shape", ""), {})
        for item in value:
            _check_shape(item, member, shapes, name, strict, skip)
    elif kind == "map":
        if not isinstance(value, dict):
            raise _SchemaError(f"Field '{name}' must be an object")
        item_shape = shapes.get(shape.get("value", {}).get("shape", ""), {})
        for item in value.values():
            _check_shape(item, item_shape, shapes, name, strict, skip)
    elif kind in ("string", "blob"):
        if not isinstance(value, str):
            raise _SchemaError(f"Field '{name}' must be a string")
        if "enum" in shape and value not in shape["enum"]:
            raise _SchemaError(f"Field '{name}' is not an expected value")
        if "min" in shape and len(value) < shape["min"]:
            raise _SchemaError(f"Field '{name}' is smaller than the minimum length")
        if "max" in shape and len(value) > shape["max"]:
            raise _SchemaError(f"Field '{name}' exceeds the maximum length")
    elif kind in ("integer", "long", "float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _SchemaError(f"Field '{name}' must be a number")
        if "min" in shape and value < shape["min"]:
            raise _SchemaError(f"Field '{name}' is less than the minimum value")
        if "max" in shape and value > shape["max"]:
            raise _SchemaError(f"Field '{name}' exceeds the maximum value")
    elif kind == "boolean" and not isinstance(value, bool):
        raise _SchemaError(f"Field '{name}' must be a boolean")
    elif kind == "timestamp" and not isinstance(value, str):
        raise _SchemaError(f"Field '{name}' must be a string")


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def validate_mock_result(resource: str, result: Any, mode: str, models: ServiceModels | None) -> None:
    """Check a mocked Task result against the API's output shape (STRICT also needs required fields)."""
    if mode == "NONE" or models is None or not isinstance(result, dict):
        return
    api = _api_of(resource)
    if api is None:
        return
    found = models.output_shape(*api)
    if found is None:
        return
    shape, shapes = found
    # The Lambda integration returns the function's JSON payload, not the API's blob.
    skip = frozenset({"Payload"}) if api == ("lambda", "Invoke") else frozenset()
    try:
        _check_shape(result, shape, shapes, "", mode == "STRICT", skip)
    except _SchemaError as exc:
        raise TestStateRejected(f"Mock result schema validation error: {exc}") from None
