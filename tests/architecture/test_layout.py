"""The house rules, checked on the source: import graph, who may import whom, module sizes.

Every import counts - module level, inside functions, and under ``if TYPE_CHECKING:`` - because
each one is a dependency a reader has to follow. ``from package import name`` depends on the
submodule ``package.name`` when there is one, else on the package itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("ceap_engine", "adapters", "stages", "glue_jobs")
MAX_LINES = 600
MAX_LINES_EXCEPT = {"ceap_engine/asl/jsonpath.py"}  # one recursive-descent parser, read top to bottom


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(module: str, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _owner(dotted: str) -> str | None:
    """The product module that ``dotted`` names, or the closest package above it."""
    while dotted:
        if dotted in MODULES:
            return dotted
        dotted = dotted.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """Every product module ``module`` imports, anywhere in its source."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                owner = _owner(alias.name)
                if owner:
                    targets.add(owner)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node.level, node.module)
            for alias in node.names:
                owner = _owner(f"{base}.{alias.name}") if f"{base}.{alias.name}" in MODULES else _owner(base)
                if owner:
                    targets.add(owner)
    targets.discard(module)
    return targets


GRAPH = {module: imports_of(module) for module in MODULES}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted.

    >>> import_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}})
    [['a', 'b']]
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_the_graph_is_read_from_the_source():
    # The checks below are only as good as the graph: make sure it sees what is there.
    assert "ceap_engine.ports" in GRAPH["ceap_engine.runtime.clock"]
    assert "ceap_engine.pipeline.stage" in GRAPH["stages.etl"]
    assert "adapters.aws.session" in GRAPH["adapters.aws.handler"]


def test_no_product_module_imports_another_in_a_circle():
    cycles = import_cycles(GRAPH)
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_engine_never_imports_adapters_or_stages_outside_the_cli():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module.startswith("ceap_engine") and not module.startswith("ceap_engine.cli")
        for target in targets
        if target.split(".")[0] in ("adapters", "stages")
    )
    assert wrong == []


def test_adapters_never_import_stages():
    wrong = sorted(f"{m} imports {t}" for m, ts in GRAPH.items() if m.startswith("adapters") for t in ts
                   if t.startswith("stages"))
    assert wrong == []


def test_stages_see_the_engine_only_through_the_stage_contract():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module.startswith("stages")
        for target in targets
        if target.startswith("ceap_engine") and target != "ceap_engine.pipeline.stage"
    )
    assert wrong == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("ceap_engine")))
def test_engine_modules_stay_readable(module):
    path = MODULES[module]
    relative = path.relative_to(ROOT).as_posix()
    lines = len(path.read_text(encoding="utf-8").splitlines())
    if relative in MAX_LINES_EXCEPT:
        return
    assert lines <= MAX_LINES, f"{relative} has {lines} lines: split it by meaning"
