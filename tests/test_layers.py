"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and they catch a
forbidden import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")



def _lint(root: Path, *contracts: str) -> subprocess.CompletedProcess:
    # no skip when it is missing: the contracts are part of the test suite (the test extra)
    assert LINT.exists(), f"{LINT} not found: install the test extra (import-linter)"
    env = {**os.environ, "PYTHONPATH": str(root)}
    only = [a for c in contracts for a in ("--contract", c)]
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache", *only], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def test_contracts_hold():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "broken" in r.stdout and "0 broken" in r.stdout


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "hemoflow", tmp_path / "hemoflow", ignore=shutil.ignore_patterns("*.pt", "*.pyc", "*.nbi",
                                                                                             "*.nbc", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize("module, line, contract", [
    ("stages/segment.py", "import hemoflow.training.splits", "runtime-never-trains"),
    ("stages/segment.py", "import hemoflow.training.splits", "layers"),
    ("pipeline/tiles.py", "from hemoflow.jobs import manifest", "layers"),
    ("io/tiff.py", "import hemoflow.stages", "layers"),
    ("kernels/_label.py", "import hemoflow.schema", "kernels-stand-alone"),
    ("stats/aggregate.py", "import hemoflow.cli", "nothing-imports-cli"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    root = _copy(tmp_path)
    assert _lint(root, contract).returncode == 0
    path = root / "hemoflow" / module
    path.write_text(path.read_text() + f"\n{line}  # added by the test\n")
    r = _lint(root, contract)
    assert r.returncode != 0 and "1 broken" in r.stdout, r.stdout
