"""The examples in docs/testing.md run as written (docs stay true to the code)."""

import inspect
import re
from pathlib import Path

import pytest

from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.testing import StageTestEnvironment, WorkflowTestEnvironment

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing.md"


def doc_tests() -> dict:
    namespace: dict = {}
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    for block in blocks:
        if "def test_" in block:
            exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    return {name: fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)}


TESTS = doc_tests()


def test_the_doc_has_examples():
    assert len(TESTS) >= 3


@pytest.mark.parametrize("name", sorted(TESTS))
async def test_doc_example(name, monkeypatch, tmp_path):
    # From a user's own project folder, not the repo root: nothing may depend on this checkout's files.
    project = tmp_path / "my-project"
    project.mkdir()
    monkeypatch.chdir(project)
    clock = VirtualClock(start=1_767_225_600.0)
    fixtures = {
        "ceap_clock": clock,
        "ceap_stage_env": StageTestEnvironment(clock=clock),
        "ceap_workflow_env": WorkflowTestEnvironment(clock=clock),
        "tmp_path": project,
    }
    fn = TESTS[name]
    await fn(**{p: fixtures[p] for p in inspect.signature(fn).parameters})
