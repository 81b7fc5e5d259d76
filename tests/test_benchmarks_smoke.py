"""Smoke test of ``benchmarks/slide_throughput.py``: its smallest configuration runs end
to end and prints the summary line in the documented format. Timings are not checked."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "slide_throughput.py"

#: A generous bound on the smallest run (about 40 s on an idle 2-core machine): past it
#: something hangs, and that must fail, not skip.
SMOKE_TIMEOUT_S = 300

LINE = re.compile(
    r"^mp_per_s_per_core=(?P<rate>\S+) ratio_vs_skimage=(?P<sk>\S+) ratio_vs_skimage_same_scale=(?P<same>\S+) "
    r"ratio_vs_io_floor=(?P<io>\S+) "
    r"scaling_2_workers=(?P<scale>\S+) peak_worker_rss_mb=(?P<rss>\S+)$"
)


@pytest.mark.slow
def test_slide_throughput_smallest_mode(tmp_path):
    # smallest mode: a 1024^2 slide, 512-px tiles, one worker, no classifier
    cmd = [sys.executable, str(SCRIPT), "--size", "1024", "--tile-size", "512", "--workers", "1",
           "--no-classify", "--skimage-tiles", "1", "--workdir", str(tmp_path), "--json", str(tmp_path / "out.json")]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"benchmark smoke run took over {SMOKE_TIMEOUT_S} s; output so far:\n{(e.stdout or b'')[-2000:]!r}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    m = LINE.match(lines[-1])
    assert m, f"last line not in the summary format: {lines[-1]!r}"
    for k in ("rate", "sk", "same", "io", "rss"):
        v = float(m.group(k))
        assert math.isfinite(v) and v > 0, (k, v)
    assert m.group("scale") == "nan"  # one worker count only: no scaling figure
    assert "GPU path: not measured" in proc.stdout
    report = json.loads((tmp_path / "out.json").read_text())
    assert {"io_floor", "pipeline", "skimage", "skimage_same_scale"} <= set(report)
    # the same-scale reference segments hemoflow's working image: the block factor at 0.25 µm/px
    assert report["skimage"]["downsample"] == 1 and report["skimage_same_scale"]["downsample"] == 2
    assert report["skimage_same_scale"]["mp"] == pytest.approx(report["skimage"]["mp"])
    (run,) = report["pipeline"]
    assert run["n_tiles"] == 4 and run["cells"] > 0 and run["mp"] == pytest.approx(1024 * 1024 / 1e6)
    # the slide was written through the io layer and opens as an OME-Zarr slide
    from hemoflow.io import open_slide

    (zarr_dir,) = tmp_path.glob("synth-1024-*.ome.zarr")
    slide = open_slide(str(zarr_dir))
    assert slide.shape == (1024, 1024) and slide.is_rgb8


def test_stage_times_runs_and_lists_the_stages():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "stage_times.py"), "--size", "384", "--runs", "1"],
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"analyze_field: median \d+\.\d+ s over 1 runs", out), out
    for stage in ("_segment", "rbc_basins", "rbc_density", "segment_wbc", "crop_cells", "measure_cells"):
        assert re.search(rf"^\s+{stage}\s+\d+\.\d ms$", out, re.M), (stage, out)
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "stage_times.py"), "--size", "10"],
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--size must be >= 256" in bad.stderr


def test_pixel_size_sweep_reports_factor_and_error():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "pixel_size_sweep.py"), "--mpp", "0.25", "0.2527",
                           "--size", "512"], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines()[1:]]
    assert [r[:3] for r in rows] == [["0.2500", "2", "0.500"], ["0.2527", "2", "0.505"]], proc.stdout
    assert all(r[5].endswith("%") for r in rows)
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "pixel_size_sweep.py"), "--mpp", "0"],
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "positive" in bad.stderr
