"""The package's shape: small modules, imports pointing one way, light plan/ and schedule/.

The layers, lowest first; a module may import its own layer and the ones below, never above.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "atso_nnunet"
MAX_LINES = 400

# sub-package (or top-level module) -> layer; the data flows up this list
LAYERS: Dict[str, int] = {
    "errors": 0, "io": 0, "limits": 0, "paths": 0, "views": 0, "__init__": 0,
    "data": 1, "execution": 1,
    "schedule": 2, "monitors": 2,
    "methods": 3,
    "plan": 4,
    # one layer: ingestion preprocesses with nnU-Net's planner, the semi trainer ingests what the
    # driver did not (the module graph still has no cycle)
    "nnunet": 5, "pseudolabels": 5,
    "evaluation": 7,
    "run": 8,
    "comparison": 9,
    "cli": 10,
}
# The run folder's layout is the file format every later stage reads (evaluation, diagnosis,
# comparison): it sits below them, with nothing but the schedule's artefacts beneath it.
MODULE_LAYERS: Dict[str, float] = {"atso_nnunet.run.rundir": 6.5}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> Dict[str, Path]:
    """Every module of the package (the nnUNet_extTrainer folder's module included)."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: Set[str]) -> Set[str]:
    """Modules of the package that ``name`` imports, at module level or inside functions (imports
    for type checkers only are left out)."""
    out = set()
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in known and m != name}


def import_graph() -> Dict[str, Set[str]]:
    modules = package_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def layer(module: str) -> float:
    if module in MODULE_LAYERS:
        return MODULE_LAYERS[module]
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_is_small():
    big = {name: n for name, path in package_modules().items()
           if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by concern): {big}"


def test_every_sub_package_has_a_layer():
    tops = {name.split(".")[1] for name in package_modules() if name.count(".")} | {"__init__"}
    assert tops <= set(LAYERS), f"add {sorted(tops - set(LAYERS))} to LAYERS"


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_imports_point_down_the_layers():
    upward = sorted(f"{a} -> {b}" for a, deps in import_graph().items() for b in deps if layer(b) > layer(a))
    assert upward == []


def test_the_checks_see_a_cycle_and_an_upward_import():
    graph = {"atso_nnunet.plan.a": {"atso_nnunet.plan.b"}, "atso_nnunet.plan.b": {"atso_nnunet.plan.a"}}
    assert cycles(graph) == [["atso_nnunet.plan.a", "atso_nnunet.plan.b"]]
    assert layer("atso_nnunet.cli.run") > layer("atso_nnunet.plan.load") > layer("atso_nnunet.errors")
    assert layer("atso_nnunet.run.driver") > layer("atso_nnunet.evaluation.report") > layer("atso_nnunet.run.rundir")


@pytest.mark.parametrize("package", ["atso_nnunet.plan", "atso_nnunet.schedule"])
def test_light_packages_import_no_nnunet_torch_simpleitk_or_submitit(package):
    """plan/ and schedule/ load and check a plan in milliseconds, on machines without a GPU stack."""
    code = (f"import sys, importlib, pkgutil, {package} as p\n"
            "for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.'):\n"
            "    importlib.import_module(m.name)\n"
            "from atso_nnunet.plan import find_plan, load_plan\n"
            "load_plan(find_plan('synthetic', '10pct'))\n"
            "print([m for m in ('nnunetv2', 'torch', 'SimpleITK', 'submitit') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
