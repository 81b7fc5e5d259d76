#!/usr/bin/env python
"""Synthetic fields as a regression check of the counts and WBC types (not an accuracy).

    python scripts/synthetic_regression.py [--seeds 8] [--size 1024] [--json OUT]
                                           [--baseline PREVIOUS_JSON]

Runs the code path of ``hemoflow analyze`` (segmentation, the shipped count models, the
int8 red-cell density network and the shipped WBC classifier) on ``--seeds`` synthetic
fields of :func:`hemoflow.synth.synth_field` (0.25 µm/px, seeds from 100000, none of which
any model was trained on) and prints, per seed and as mean ± standard deviation over the
seeds (and the range):

* WBC, RBC and platelet count / the generator's count (RBC: the reported count, the sum of
  ``count_weight``);
* WBC type agreement: detected WBCs within 4 µm of a generated one whose type matches.

The generator draws idealised cells: these figures say whether a change moved hemoflow's
behaviour, by how much against the spread between seeds, not how accurate hemoflow is on
blood. ``--baseline`` compares with the ``--json`` of an earlier run and exits 1 when a
mean moved by more than 3 standard errors of the difference (and more than 0.5 points).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MPP = 0.25
FIRST_SEED = 100_000
MATCH_UM = 4.0
METRICS = ("wbc_count_ratio", "rbc_count_ratio", "platelet_count_ratio", "wbc_type_agreement")


def one_field(seed: int, size: int, clf) -> dict:
    """The four figures of one synthetic field."""
    from scipy.spatial import cKDTree

    from hemoflow import synth
    from hemoflow.analyze import analyze_image

    rgb, truth = synth.synth_field((size, size), mpp=MPP, seed=seed, n_wbc=max(4, size * size // 130_000))
    res = analyze_image(rgb, mpp=MPP, classifier=clf, name=f"seed{seed}")
    cls = np.asarray(truth["cls"])
    n = {c: int((cls == c).sum()) for c in ("wbc", "rbc", "platelet")}
    wbc_t = cls == "wbc"
    ty, tx, ttype = (np.asarray(truth[k])[wbc_t] for k in ("y", "x", "type"))
    found = [c for c in res["cells"] if c["cls"] == "wbc"]
    agree = 0
    if found and len(ty):
        d, j = cKDTree(np.c_[ty, tx]).query([(c["y"], c["x"]) for c in found])
        agree = sum(dd * MPP <= MATCH_UM and c["wbc_type"] == ttype[jj] for c, dd, jj in zip(found, d, j))
    return {
        "seed": seed,
        "wbc_true": n["wbc"], "rbc_true": n["rbc"], "platelet_true": n["platelet"],
        "wbc_count_ratio": res["wbc"] / n["wbc"],
        "rbc_count_ratio": res["rbc"] / n["rbc"],
        "platelet_count_ratio": res["platelets"] / n["platelet"] if n["platelet"] else float("nan"),
        "wbc_type_agreement": agree / n["wbc"],
    }


def summary(rows: list[dict]) -> dict:
    """Mean, sample standard deviation, min and max of each metric over the seeds."""
    out = {}
    for m in METRICS:
        v = np.array([r[m] for r in rows], float)
        v = v[np.isfinite(v)]
        out[m] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                  "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}
    return out


def compare(now: dict, before: dict) -> list[str]:
    """Metrics whose mean moved beyond 3 standard errors of the difference (and 0.005)."""
    moved = []
    for m in METRICS:
        a, b = now[m], before.get(m)
        if not b:
            continue
        se = math.sqrt(a["sd"] ** 2 / a["n"] + b["sd"] ** 2 / b["n"])
        delta = a["mean"] - b["mean"]
        if abs(delta) > max(3 * se, 0.005):
            moved.append(f"{m}: {b['mean']:.4f} -> {a['mean']:.4f} (3 SE = {3 * se:.4f})")
    return moved


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=8, help="number of synthetic fields (default 8)")
    ap.add_argument("--size", type=int, default=1024, help="field side in px at 0.25 µm/px (default 1024)")
    ap.add_argument("--json", type=Path, default=None, help="write per-seed figures and the summary here")
    ap.add_argument("--baseline", type=Path, default=None, help="an earlier --json to compare with")
    args = ap.parse_args(argv)
    if args.seeds < 2:
        ap.error("--seeds must be >= 2 (the spread needs two)")
    if args.size < 256:
        ap.error("--size must be >= 256")

    from hemoflow.classify.model import load_default_model

    clf = load_default_model()
    rows = []
    print(f"{'seed':>7} {'WBC':>5} {'RBC':>5} {'PLT':>4}  {'WBC n/true':>10} {'RBC n/true':>10} "
          f"{'PLT n/true':>10} {'WBC type':>9}")
    for k in range(args.seeds):
        r = one_field(FIRST_SEED + k, args.size, clf)
        rows.append(r)
        print(f"{r['seed']:>7} {r['wbc_true']:>5} {r['rbc_true']:>5} {r['platelet_true']:>4}  "
              f"{r['wbc_count_ratio']:>10.3f} {r['rbc_count_ratio']:>10.3f} {r['platelet_count_ratio']:>10.3f} "
              f"{r['wbc_type_agreement']:>9.3f}", flush=True)
    s = summary(rows)
    print(f"regression check over {args.seeds} synthetic {args.size}² fields (not an accuracy): mean ± sd (range)")
    for m in METRICS:
        v = s[m]
        print(f"  {m:<22} {v['mean']:.4f} ± {v['sd']:.4f}  ({v['min']:.4f}–{v['max']:.4f})")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "seeds": [r["seed"] for r in rows], "rows": rows,
                                         "summary": s}, indent=1) + "\n")
    if args.baseline:
        moved = compare(s, json.loads(args.baseline.read_text())["summary"])
        for line in moved:
            print(f"MOVED {line}")
        if moved:
            return 1
        print(f"no mean moved beyond 3 standard errors of {args.baseline}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
