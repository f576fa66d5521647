"""Fixtures of the AWS adapter tests: Lambda-platform wheels, fetched from the package index once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.aws.packaging import LambdaBuild, dependency_pins, fetch_wheels

WheelReport = list[str]


@pytest.fixture(scope="session")
def lambda_wheels(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, WheelReport]]:
    """``lambda_wheels("3.12")``: a folder of manylinux x86_64 wheels for that CPython, and what the download reported."""
    made: dict[str, tuple[Path, WheelReport]] = {}

    def get(python: str) -> tuple[Path, WheelReport]:
        if python not in made:
            folder = tmp_path_factory.mktemp(f"lambda-wheels-{python}")
            lines: WheelReport = []
            build = LambdaBuild(python=python)
            fetch_wheels(dependency_pins(python=python), build, folder, report=lines.append)
            made[python] = (folder, lines)
        return made[python]

    return get


@pytest.fixture(scope="session")
def lambda_wheelhouse(lambda_wheels: Callable[[str], tuple[Path, WheelReport]]) -> Path:
    """Wheels for the default Lambda runtime (python3.12, manylinux x86_64)."""
    return lambda_wheels("3.12")[0]
