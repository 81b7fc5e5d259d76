"""scripts/results_table.py: the schema check, the table, and the README block rewrite."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import results_table as rt  # noqa: E402


def _rec(name="BCCD RBC count MAPE (validation)", **kw):
    r = {"name": name, "value": 7.1234, "ci_low": 5.3, "ci_high": 9.04, "unit": "%", "digits": 1, "n": 34,
         "data": "BCCD validation fields", "kind": "validation", "model": "rbc_density.pt@34941af921c0 (int8)",
         "command": "python scripts/evaluate_counts.py ../shared/data/bccd"}
    r.update(kw)
    return r


def test_render_states_kind_interval_and_hides_the_hash():
    table = rt.render([_rec(), _rec("r", value=0.712, ci_low=None, ci_high=None, unit="", digits=3,
                                    kind="trained")])
    lines = table.splitlines()
    assert len(lines) == 4
    assert "| 7.1 % (5.3–9.0) | 34 |" in lines[2] and "used for choices (validation)" in lines[2]
    assert "| 0.712 | 34 |" in lines[3] and "trained on" in lines[3]
    assert "rbc_density.pt (int8)" in table and "34941af921c0" not in table


def test_schema_is_checked():
    with pytest.raises(rt.ResultsError, match="kind"):
        rt.check([_rec(kind="test")])
    with pytest.raises(rt.ResultsError, match="lacks ci_low"):
        rt.check([{k: v for k, v in _rec().items() if k != "ci_low"}])
    with pytest.raises(rt.ResultsError, match="twice"):
        rt.check([_rec(), _rec()])


def test_upsert_replaces_by_name_and_keeps_order(tmp_path):
    p = tmp_path / "results.json"
    rt.upsert(p, [_rec("a"), _rec("b")])
    rt.upsert(p, [_rec("b", value=1.0), _rec("c")])
    got = json.loads(p.read_text())
    assert [r["name"] for r in got] == ["a", "b", "c"] and got[1]["value"] == 1.0


def test_write_replaces_only_the_marked_block(tmp_path):
    res = tmp_path / "results.json"
    rt.upsert(res, [_rec()])
    md = tmp_path / "README.md"
    md.write_text("intro\n<!-- results:begin -->\nold table\n<!-- results:end -->\noutro\n")
    cmd = [sys.executable, str(REPO / "scripts" / "results_table.py"), str(res), "--write", str(md)]
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    text = md.read_text()
    assert text.startswith("intro\n<!-- results:begin -->\n| figure |") and text.endswith("<!-- results:end -->\noutro\n")
    assert "old table" not in text and "7.1 %" in text
    md.write_text("no markers\n")
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode == 2 and "results:begin" in bad.stderr and md.read_text() == "no markers\n"


def test_shipped_results_file_is_valid():
    records = rt.load(REPO / "docs" / "results" / "results.json")
    assert records and all(r["ci_low"] <= r["value"] <= r["ci_high"] for r in records if r["ci_low"] is not None)
