"""Every HEMOFLOW_* environment variable the code, images or chart read is in
docs/configuration.md's table, and the table names no variable nothing reads."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from hemoflow.config import JobConfig

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"HEMOFLOW_[A-Z0-9_]+")


def _used() -> set[str]:
    found: set[str] = set()
    for folder in ("hemoflow", "deploy", "scripts", "benchmarks", "tests"):
        for p in (ROOT / folder).rglob("*"):
            if p.is_file() and p.suffix in (".py", ".yaml", ".json", ".tpl", ".sh", "") and "__pycache__" not in p.parts:
                try:
                    found |= set(NAME.findall(p.read_text(errors="ignore")))
                except OSError:
                    continue
    # names built from JobConfig's fields
    found |= {"HEMOFLOW_" + f.name.upper() for f in dataclasses.fields(JobConfig)}
    return found - {"HEMOFLOW_"}


def test_every_variable_is_in_the_table():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    table = set(re.findall(r"^\| `(HEMOFLOW_[A-Z0-9_]+)` \|", doc, re.M))
    used = _used()
    assert used - table == set(), f"missing from docs/configuration.md: {sorted(used - table)}"
    assert table - used == set(), f"in the table but read nowhere: {sorted(table - used)}"
