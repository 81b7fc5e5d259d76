"""Kernels are compiled once and loaded from Numba's on-disk cache afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FIRST_CALL = """
import json, time
import numpy as np
t0 = time.perf_counter()
from hemoflow.kernels import label, regionprops_table, ALL_PROPERTIES
import numba  # imported by the line above; keep its import out of the timing below
t1 = time.perf_counter()
mask = np.zeros((5, 6), bool); mask[1:3, 1:4] = True
labels, n = label(mask)
regionprops_table(labels, np.ones((5, 6), np.uint8), ALL_PROPERTIES)
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first_call": t2 - t1}))
"""


def _run(cache_dir: Path) -> dict:
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_second_process_loads_cache(tmp_path):
    """A fresh process's first call compiles; the next fresh process's loads the cache."""
    cold = _run(tmp_path)
    assert any(tmp_path.rglob("*.nbi")), "numba wrote no cache index"
    warm = _run(tmp_path)
    assert warm["first_call"] < cold["first_call"] / 3, (cold, warm)
