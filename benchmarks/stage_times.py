"""Where a tile's stage time goes: ``analyze_field`` on one synthetic field, per stage.

Renders a ``--size`` x ``--size`` field with :func:`hemoflow.synth.synth_field` at
``--mpp`` (default 0.25 µm/px, the benchmark slide's pixel size), calibrates it once, warms up, then times
``--runs`` calls of :func:`hemoflow.stages.field.analyze_field` in this process (one
thread for torch/BLAS) with a timer around each stage function that ``field.py`` calls.
Prints the median total and the mean milliseconds per call of each stage, largest first
(nested stages are also inside ``_segment``).

Usage::

    python benchmarks/stage_times.py [--size 4096] [--runs 7] [--seed 7]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

STAGES = ("_segment", "_planes", "open_disk", "close_disk", "fill_small_holes", "segment_wbc", "segment_platelets",
          "_within", "platelet_features", "_keep_platelets", "rbc_basins", "filter_small", "basin_features",
          "basin_mass", "kept_mass", "rbc_density", "expected_weights", "predict_proba", "split_basins", "crop_cells",
          "measure_cells", "regionprops_table")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--mpp", type=float, default=0.25, help="scan pixel size of the synthetic field (µm/px)")
    args = ap.parse_args(argv)
    if args.size < 256 or args.runs < 1 or not args.mpp > 0:
        ap.error("--size must be >= 256, --runs >= 1 and --mpp > 0")
    import torch

    from hemoflow import synth
    from hemoflow.kernels._malloc import tune_malloc
    from hemoflow.stages import SegmentParams
    from hemoflow.stages import field as F

    torch.set_num_threads(1)
    tuned = tune_malloc()  # as on a worker
    rgb, _ = synth.synth_field((args.size, args.size), mpp=args.mpp, seed=args.seed)
    params = SegmentParams()
    cal = F.calibrate(rgb, params=params, mpp=args.mpp)
    acc: dict[str, float] = collections.defaultdict(float)

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[name] += time.perf_counter() - t0
        return wrapper

    for name in STAGES:
        if hasattr(F, name):
            setattr(F, name, timed(name, getattr(F, name)))
    F.analyze_field(rgb, calibration=cal, params=params)  # warm-up (kernels, model)
    acc.clear()
    totals = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        res = F.analyze_field(rgb, calibration=cal, params=params)
        totals.append(time.perf_counter() - t0)
    mp = args.size * args.size / 1e6
    med = float(np.median(totals))
    print(f"{args.size}^2 field at {args.mpp} um/px (working pixel {cal.work_scale:g} px), {len(res.table['cls'])} cells, allocator tuned: {tuned}")
    print(f"analyze_field: median {med:.3f} s over {args.runs} runs ({mp / med:.1f} MP/s)")
    for name, sec in sorted(acc.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<18} {1000 * sec / args.runs:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
