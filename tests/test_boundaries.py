"""Package boundaries: the codec library stays free of the orchestration stack, and tasks never reach into flows."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["prefect", "distributed", "dask", "mlflow", "tasks", "flows"])
def test_importing_sae_model_loads_no_orchestration_module(module):
    loaded = subprocess.run([sys.executable, "-c", f"import sys, sae_model; print({module!r} in sys.modules)"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False", f"`import sae_model` imported {module}"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module or "")
    return names


@pytest.mark.parametrize("path", sorted((REPO / "tasks").rglob("*.py")), ids=lambda p: p.name)
def test_tasks_never_import_flows(path):
    assert not {name for name in imported_modules(path) if name == "flows" or name.startswith("flows.")}


def test_the_import_scan_sees_imports_anywhere_in_a_module(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from flows.progress import progress\n    import flows\n")
    assert imported_modules(probe) == {"flows.progress", "flows"}
