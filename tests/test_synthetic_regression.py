"""scripts/synthetic_regression.py: per-seed figures, their spread, and the baseline check."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import synthetic_regression as sr  # noqa: E402


def _summary(mean, sd, n=8):
    return {m: {"mean": mean, "sd": sd, "min": mean, "max": mean, "n": n} for m in sr.METRICS}


def test_compare_flags_only_moves_beyond_the_spread():
    before = _summary(0.97, 0.01)
    assert sr.compare(_summary(0.975, 0.01), before) == []
    moved = sr.compare(_summary(0.95, 0.01), before)
    assert len(moved) == len(sr.METRICS) and "0.9700 -> 0.9500" in moved[0]
    # no spread at all: a move below half a point is not flagged, above it is
    assert sr.compare(_summary(1.0, 0.0), _summary(0.997, 0.0)) == []
    assert sr.compare(_summary(1.0, 0.0), _summary(0.99, 0.0))


def test_two_seeds_run_and_compare_with_themselves(tmp_path):
    out = tmp_path / "syn.json"
    cmd = [sys.executable, str(REPO / "scripts" / "synthetic_regression.py"), "--seeds", "2", "--size", "384"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    first = subprocess.run(cmd + ["--json", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["seeds"] == [sr.FIRST_SEED, sr.FIRST_SEED + 1] and len(data["rows"]) == 2
    assert "not an accuracy" in first.stdout and "mean ± sd" in first.stdout
    rbc = data["summary"]["rbc_count_ratio"]
    assert 0.9 < rbc["mean"] < 1.05 and rbc["n"] == 2 and rbc["min"] <= rbc["mean"] <= rbc["max"]
    again = subprocess.run(cmd + ["--baseline", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "no mean moved" in again.stdout, again.stdout + again.stderr[-2000:]
