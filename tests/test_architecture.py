"""Enforced layering: the import-linter contract of pyproject.toml holds, and the top-level
packages import each other without a cycle (function-level imports included)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def _top_level_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph("bids_hrf")
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        top = ".".join(module.split(".")[:2])
        for imported in graph.find_modules_directly_imported_by(module):
            other = ".".join(imported.split(".")[:2])
            if other != top and other != "bids_hrf":
                edges.setdefault(top, set()).add(other)
    return edges


def test_layers_contract_holds():
    local = Path(sys.executable).parent / "lint-imports"
    exe = str(local) if local.exists() else shutil.which("lint-imports")
    assert exe, "lint-imports missing: pip install '.[test]'"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_no_import_cycle_between_packages():
    edges = _top_level_graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])


def test_numerical_core_imports_nothing_above_it():
    core = ("bids_hrf.hrf", "bids_hrf.glm", "bids_hrf.confounds", "bids_hrf.atlas",
            "bids_hrf.timeseries", "bids_hrf.connectivity", "bids_hrf.stats",
            "bids_hrf.hrf_comparison", "bids_hrf.conditions")
    above = ("bids_hrf.cli", "bids_hrf.api", "bids_hrf.workflows", "bids_hrf.interfaces",
             "bids_hrf.steps", "bids_hrf.io", "bids_hrf.reports")
    edges = _top_level_graph()
    bad = sorted((a, b) for a in core for b in edges.get(a, ()) if b in above)
    assert not bad, bad


def test_steps_and_interfaces_take_few_arguments():
    """No function in steps/ or interfaces/ takes more than 6 arguments (issue 10): what
    travels together is one typed object (stage options, a run record, a small dataclass)."""
    import ast

    package = Path(__file__).resolve().parents[1] / "bids_hrf"
    offenders = []
    for folder in ("steps", "interfaces"):
        for path in sorted((package / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    args = node.args
                    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
                    count = len(names) - (1 if names[:1] in (["self"], ["cls"]) else 0)
                    if count > 6:
                        offenders.append(f"{folder}/{path.name}:{node.name} ({count})")
    assert not offenders, offenders
