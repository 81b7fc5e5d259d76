"""RBC counts against the generator's truth over scan pixel sizes (synthetic fields).

For each pixel size, renders one ``--size`` x ``--size`` field with
:func:`hemoflow.synth.synth_field` (seed ``--seed``), analyses it with the default
parameters at that pixel size and prints the block factor, the working pixel, the RBC
count (sum of ``count_weight``), the true number of red cells and the relative error.
It shows where the block factor (an integer, or a ratio p/q where no integer comes within
10 % of the working pixel) puts the working scale and what that does to the counts
(``hemoflow.stages.field.working_ratio``).

Usage::

    python benchmarks/pixel_size_sweep.py [--mpp 0.2 0.25 0.2527 ...] [--size 2400] [--seed 5]
"""

from __future__ import annotations

import argparse

import numpy as np

DEFAULT_MPP = (0.0708, 0.1, 0.17, 0.2, 0.25, 0.2527, 0.263, 0.3, 0.33, 0.345, 0.36, 0.4, 0.43, 0.5, 0.55, 0.6)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mpp", type=float, nargs="+", default=list(DEFAULT_MPP))
    ap.add_argument("--size", type=int, default=2400)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    if args.size < 256 or any(m <= 0 for m in args.mpp):
        ap.error("--size must be >= 256 and every --mpp positive")
    from hemoflow import synth
    from hemoflow.stages import analyze_field
    from hemoflow.stages.features import rbc_count

    print(f"{'mpp':>7} {'factor':>6} {'working':>8} {'rbc':>6} {'truth':>6} {'error':>7}")
    for mpp in args.mpp:
        rgb, truth = synth.synth_field((args.size, args.size), mpp=mpp, seed=args.seed)
        res = analyze_field(rgb, mpp=mpp)
        true_rbc = int(np.sum(np.asarray(truth["cls"]) == "rbc"))
        got = rbc_count(res.table)
        cal = res.calibration
        p, q = int(cal.downsample), int(getattr(cal, "upsample", 1))
        ratio = f"{p}" if q == 1 else f"{p}/{q}"
        err = f"{100.0 * (got / true_rbc - 1):+.1f}%" if true_rbc else "n/a"
        print(f"{mpp:7.4f} {ratio:>6} {p / q * mpp:8.3f} {got:6d} {true_rbc:6d} {err:>7}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
