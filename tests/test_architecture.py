"""The package's layers, checked from its import graph (read from the source, not a hand-kept list).

Layers, bottom to top: the model core (kanlib's own modules), kanlib.analysis, kanlib.workflow.
A module may import its own layer and the ones below, never one above; the graph (module-level
and function-level imports alike) has no cycle; the core imports no mlflow, snakemake or pandas;
the analysis layer never loads torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kanlib"
LAYERS = {"core": 0, "analysis": 1, "workflow": 2}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("analysis", "workflow") else "core"


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names), at any depth of the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    # kanlib/__init__.py re-exports lazily by name; its _EXPORTS strings are edges too
    edges = {}
    for name, path in modules.items():
        targets = {target for target in imports_of(path) if target in modules}
        if name == "kanlib":
            targets |= {
                node.value
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules
            }
        edges[name] = targets - {name}
    return edges


def test_the_graph_is_read_from_every_module(graph):
    assert {"kanlib.model", "kanlib.training", "kanlib.analysis.report", "kanlib.workflow.train_job"} <= set(graph)
    assert "kanlib.training" in graph["kanlib.model"]  # a known edge: the parser sees relative imports


def test_no_module_imports_a_higher_layer(graph):
    upward = [
        (source, target)
        for source, targets in graph.items()
        for target in targets
        if LAYERS[layer_of(target)] > LAYERS[layer_of(source)]
    ]
    assert not upward, upward


def test_the_import_graph_has_no_cycle(graph):
    # package __init__ modules are entered by every import of a submodule: leave out edges into them
    edges = {
        source: {t for t in targets if t not in ("kanlib", "kanlib.analysis", "kanlib.workflow")}
        for source, targets in graph.items()
    }
    state: dict[str, int] = {}
    cycles = []

    def visit(node, path):
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_the_core_names_no_workflow_or_table_library(graph):
    forbidden = {"mlflow", "snakemake", "pandas", "matplotlib"}
    for path in PACKAGE.glob("*.py"):
        heavy = {name.split(".")[0] for name in imports_of(path)} & forbidden
        assert not heavy, (path.name, heavy)


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_the_analysis_layer_never_loads_torch():
    modules = sorted(module_name(path) for path in (PACKAGE / "analysis").glob("*.py"))
    loaded = loaded_after("; ".join(f"import {name}" for name in modules))
    assert "torch" not in loaded and "mlflow" not in loaded and "snakemake" not in loaded


def test_the_core_never_loads_mlflow_snakemake_or_pandas():
    loaded = loaded_after("import kanlib; from kanlib import KAN, create_dataset, fit; import kanlib.functions")
    assert "torch" in loaded  # the probe imports what it claims to
    assert not loaded & {"mlflow", "snakemake", "pandas", "matplotlib"}
