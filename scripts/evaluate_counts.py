#!/usr/bin/env python
"""Count accuracy of ``hemoflow analyze`` on a BCCD-layout folder.

    python scripts/evaluate_counts.py DATA_DIR [--limit N] [--split train|validation|all]
                                      [--param NAME=VALUE ...] [--per-image CSV]
                                      [--preprocess equalize|flatfield]
                                      [--mpp UM_PER_PX | --mpp-per-image] [--density-folds DIR]
                                      [--results RESULTS_JSON]

DATA_DIR holds ``JPEGImages/*.jpg`` and ``counts.csv`` (``image, wbc_voc, rbc_voc,
platelets_voc, wbc_txl, rbc_txl, platelets_txl, ...``). Each image goes through
:func:`hemoflow.analyze.analyze_image` (the code path of ``hemoflow analyze``) and the
script prints, per split:

* WBC exact-count rate vs ``wbc_voc`` (and vs ``wbc_txl`` where present, a second opinion);
* RBC MAPE, MAE and Pearson r vs ``rbc_txl`` (images that have it; VOC RBC boxes are
  about half missing);
* platelet MAE vs ``platelets_txl``;
* throughput in megapixels per second, single-threaded;

``--network-count`` also scores the red-cell density network alone (density summed over the
field, rounded; the int8 copy the product runs) against ``rbc_txl``.

Each figure comes with its 95 % interval (Wilson for the exact-count rate, a percentile bootstrap over
fields, 2,000 resamples, for the others). The models scored are the shipped ones, as
``hemoflow analyze`` runs them (the int8 red-cell density network where the CPU has the
x86 int8 engine); their files and SHA-256 prefixes are printed.

``--preprocess`` applies an extra whole-field step before analysis, for the
preprocessing ablation (``docs/experiments/ablation_counts.md``): ``equalize`` = per-channel histogram
equalisation, ``flatfield`` = division by a heavily blurred copy (illumination
correction). Neither is part of hemoflow: both need whole-field statistics, which a
tile cannot have.

Pixel size: like ``hemoflow analyze`` given several images, one pixel size for the folder,
the median of the per-image estimates (a field's own estimate scatters by ~15 %);
``--mpp-per-image`` estimates each image alone, ``--mpp`` gives it. The time of the pooled
estimate is included in the throughput.

``--density-folds DIR`` scores each development field with the cross-validation fold model
of the red-cell density network that was trained without it (fp32; the fold models of
``scripts/train_rbc_density.py --cv 5 --folds-dir DIR``): the honest figure for the dev
fields, which the shipped network was trained on.

Splits (:mod:`hemoflow.training.splits`): ``validation`` is the deterministic quarter of the
images (first byte of the SHA-256 of the image name < 64) that no model was fitted on; the
parameters and models were chosen by their figures on it, so it is a validation set, not a
test set. ``train`` is the rest: the density network and the count models were fitted on it.

``--results PATH`` adds (or replaces) this run's headline figures in a results file
(``docs/results/results.json``; schema in ``docs/results/README.md``); only for a default
run over all fields.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from hemoflow.analyze import analyze_image, estimate_shared_mpp, read_image  # noqa: E402
from hemoflow.training.ablation import AblationParams  # noqa: E402
from PIL import Image  # noqa: E402


from hemoflow.training.splits import bccd_split  # noqa: E402

#: Bootstrap resamples for the intervals, and their seed (the intervals are reproducible).
BOOT, BOOT_SEED = 2000, 0


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of the proportion k / n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def bootstrap(stat, *cols) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of ``stat(*cols)``, resampling fields."""
    cols = [np.asarray(c, np.float64) for c in cols]
    n = len(cols[0])
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(BOOT_SEED)
    vals = []
    for _ in range(BOOT):
        i = rng.integers(0, n, n)
        v = stat(*(c[i] for c in cols))
        if np.isfinite(v):
            vals.append(v)
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def _mape(p, t):
    return float(np.mean(np.abs(p - t) / t))


def _mae(p, t):
    return float(np.mean(np.abs(p - t)))


def _r(p, t):
    return float(np.corrcoef(p, t)[0, 1]) if np.std(p) > 0 and np.std(t) > 0 else float("nan")


def figures(rows: list[dict]) -> dict:
    """The headline figures of a group of fields, each ``(value, ci_low, ci_high, n)``."""
    out = {}
    n = len(rows)
    if n:
        k = sum(r["wbc"] == r["wbc_voc"] for r in rows)
        out["wbc_exact_voc"] = (k / n, *wilson(k, n), n)
    tx = [r for r in rows if r["wbc_txl"] is not None]
    if tx:
        k = sum(r["wbc"] == r["wbc_txl"] for r in tx)
        out["wbc_exact_txl"] = (k / len(tx), *wilson(k, len(tx)), len(tx))
    rb = [r for r in rows if r["rbc_txl"] is not None]
    if rb:
        p, t = np.array([r["rbc"] for r in rb], float), np.array([r["rbc_txl"] for r in rb], float)
        for key, f in (("rbc_mape", _mape), ("rbc_mae", _mae), ("rbc_r", _r)):
            out[key] = (f(p, t), *bootstrap(f, p, t), len(rb))
        out["rbc_bias"] = (float(np.mean(p - t)), *bootstrap(lambda a, b: float(np.mean(a - b)), p, t), len(rb))
    nw = [r for r in rb if r.get("net_rbc") is not None]
    if nw:
        p, t = np.array([r["net_rbc"] for r in nw], float), np.array([r["rbc_txl"] for r in nw], float)
        for key, f in (("net_rbc_mape", _mape), ("net_rbc_r", _r)):
            out[key] = (f(p, t), *bootstrap(f, p, t), len(nw))
    pl = [r for r in rows if r["platelets_txl"] is not None]
    if pl:
        p, t = np.array([r["platelets"] for r in pl], float), np.array([r["platelets_txl"] for r in pl], float)
        out["platelet_mae"] = (_mae(p, t), *bootstrap(_mae, p, t), len(pl))
    return out


def network_count(rgb, mpp: float, params) -> float:
    """The density network's own count of a field: its density summed, rounded."""
    from hemoflow.kernels._smear import stain_planes
    from hemoflow.stages import calibrate
    from hemoflow.stages._rbc_density import rbc_density

    cal = calibrate(rgb, params=params, mpp=mpp)
    _, _, od = stain_planes(rgb, cal.downsample, cal.background, od=True, upsample=cal.upsample)
    return float(np.rint(rbc_density(od).sum()))


def shipped_models() -> str:
    """The shipped model files with their SHA-256 prefixes, and which density network runs."""
    from hemoflow.models import model_files
    from hemoflow.stages._rbc_density import load_density_model

    files = ", ".join(f"{p.name}@{hashlib.sha256(p.read_bytes()).hexdigest()[:12]}" for p in model_files())
    _, meta = load_density_model()
    return f"{files} (density network {'int8' if meta['int8'] else 'fp32'})"


def _num(v: str):
    v = (v or "").strip()
    return float(v) if v else None


def _preprocess(rgb: np.ndarray, how: str | None) -> np.ndarray:
    if not how:
        return rgb
    img = rgb[..., :3].astype(np.float64)
    if how == "equalize":
        from skimage.exposure import equalize_hist

        out = np.stack([equalize_hist(img[..., c]) for c in range(3)], axis=-1) * 255.0
    elif how == "flatfield":
        from scipy import ndimage as ndi

        sigma = max(img.shape[:2]) / 8.0
        flat = np.stack([ndi.gaussian_filter(img[..., c], sigma, mode="reflect") for c in range(3)], axis=-1)
        out = img / np.maximum(flat, 1.0) * flat.mean(axis=(0, 1))
    else:
        raise SystemExit(f"unknown --preprocess {how!r}")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _parse_params(items: list[str]) -> AblationParams:
    d = {}
    for it in items:
        k, _, v = it.partition("=")
        try:
            d[k] = tuple(float(x) for x in v.split(",")) if "," in v else float(v)
        except ValueError:
            d[k] = v
    return AblationParams(**d)


def summarize(rows: list[dict]) -> list[str]:
    out = []
    n = len(rows)
    if n == 0:
        return ["  (no images)"]
    f = figures(rows)

    def ci(key, fmt):
        v, lo, hi, _ = f[key]
        return f"{v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"

    wbc_ok = sum(r["wbc"] == r["wbc_voc"] for r in rows)
    out.append(f"  images: {n}  (95 % intervals in brackets)")
    out.append(f"  WBC exact vs wbc_voc:      {ci('wbc_exact_voc', '.1%')}  ({wbc_ok}/{n})")
    if "wbc_exact_txl" in f:
        out.append(f"  WBC exact vs wbc_txl:      {ci('wbc_exact_txl', '.1%')}  (n={f['wbc_exact_txl'][3]})")
    if "rbc_mape" in f:
        out.append(
            f"  RBC vs rbc_txl (n={f['rbc_mape'][3]}):   MAPE {ci('rbc_mape', '.1%')}  MAE {ci('rbc_mae', '.2f')}"
            f"  r {ci('rbc_r', '.3f')}  bias {f['rbc_bias'][0]:+5.2f}"
        )
    if "net_rbc_mape" in f:
        out.append(f"  density network alone vs rbc_txl (n={f['net_rbc_mape'][3]}): MAPE {ci('net_rbc_mape', '.1%')}"
                   f"  r {ci('net_rbc_r', '.3f')}")
    if "platelet_mae" in f:
        out.append(f"  platelets vs platelets_txl (n={f['platelet_mae'][3]}): MAE {ci('platelet_mae', '.3f')}")
    mp = sum(r["pixels"] for r in rows) / 1e6
    sec = sum(r["seconds"] for r in rows)
    out.append(f"  throughput: {mp / sec:5.2f} MP/s single-threaded ({sec / n * 1000:.0f} ms/image)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--split", choices=("train", "validation", "all"), default="all",
                    help="fields by hemoflow.training.splits.bccd_split (default all, reported per split)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    scale = ap.add_mutually_exclusive_group()
    scale.add_argument("--mpp", type=float, default=None,
                       help="pixel size of every image (default: the median estimate over the evaluated images)")
    scale.add_argument("--mpp-per-image", action="store_true",
                       help="estimate each image's pixel size on its own (ablation)")
    ap.add_argument("--per-image", type=Path, default=None, help="write per-image counts to this CSV")
    ap.add_argument("--density-folds", type=Path, default=None,
                    help="cross-validation: score each field named in DIR/folds.json with the fold model that did "
                    "not see it (`scripts/train_rbc_density.py --cv 5 --folds-dir DIR`); other fields use the shipped "
                    "network")
    ap.add_argument("--preprocess", choices=("equalize", "flatfield"), default=None,
                    help="extra whole-field step before analysis (ablation only)")
    ap.add_argument("--network-count", action="store_true",
                    help="also score the red-cell density network alone (the shipped int8 copy)")
    ap.add_argument("--results", type=Path, default=None, metavar="RESULTS_JSON",
                    help="add this run's headline figures to a results file (default runs over all fields only)")
    args = ap.parse_args(argv)
    if args.results and (args.split != "all" or args.limit or args.param or args.preprocess or args.mpp
                         or args.mpp_per_image or args.density_folds):
        ap.error("--results records the default run over all fields only")

    params = _parse_params(args.param)
    folds = {}
    if args.density_folds is not None:
        import json

        fj = args.density_folds / "folds.json"
        if not fj.is_file():
            raise SystemExit(f"{fj} not found: write it with `scripts/train_rbc_density.py --cv 5 --folds-dir DIR`")
        folds = {k: args.density_folds / v for k, v in json.loads(fj.read_text()).items()}

    with open(args.data_dir / "counts.csv", newline="") as fh:
        truth = list(csv.DictReader(fh))
    if args.split != "all":
        truth = [t for t in truth if bccd_split(t["image"]) == args.split]
    if args.limit:
        truth = truth[: args.limit]

    mpp, how, est_s = args.mpp, "given", 0.0
    if mpp is None and not args.mpp_per_image:
        # the fields of one folder come from one microscope: one pixel size, estimated as
        # the median of the per-image estimates (what `hemoflow analyze` does with several images)
        t0 = time.perf_counter()
        paths = [args.data_dir / "JPEGImages" / f"{t['image']}.jpg" for t in truth]
        mpp, n_est = estimate_shared_mpp(_preprocess(read_image(p), args.preprocess) for p in paths)
        est_s = time.perf_counter() - t0
        how = f"median estimate over {n_est} images, {est_s:.1f} s"
    elif mpp is None:
        how = "estimated per image"

    # Compile / load the kernels once, outside the timing.
    first = args.data_dir / "JPEGImages" / f"{truth[0]['image']}.jpg"
    analyze_image(_preprocess(read_image(first), args.preprocess), params=params)

    rows = []
    for t in truth:
        path = args.data_dir / "JPEGImages" / f"{t['image']}.jpg"
        fold = folds.get(t["image"])
        t0 = time.perf_counter()
        if args.preprocess:
            res = analyze_image(_preprocess(read_image(path), args.preprocess), params=params, name=t["image"],
                                mpp=mpp, density_weights=fold)
        else:
            res = analyze_image(path, params=params, mpp=mpp, density_weights=fold)
        dt = time.perf_counter() - t0 + est_s / len(truth)
        net_rbc = None
        if args.network_count and _num(t["rbc_txl"]) is not None:
            if args.density_folds or args.preprocess or mpp is None:
                raise SystemExit("--network-count scores the shipped network at the folder's pixel size only")
            net_rbc = network_count(read_image(path), mpp, params)
        with Image.open(path) as im:
            w_, h_ = im.size
        rows.append(
            {
                "image": t["image"],
                "split": bccd_split(t["image"]),
                "net_rbc": net_rbc,
                "wbc": res["wbc"],
                "rbc": res["rbc"],
                "platelets": res["platelets"],
                "mpp": res["mpp"],
                "wbc_voc": int(float(t["wbc_voc"])),
                "wbc_txl": None if _num(t["wbc_txl"]) is None else int(_num(t["wbc_txl"])),
                "rbc_txl": _num(t["rbc_txl"]),
                "platelets_txl": _num(t["platelets_txl"]),
                "pixels": w_ * h_,
                "seconds": dt,
            }
        )
    if args.per_image:
        with open(args.per_image, "w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)

    extra = f", preprocess={args.preprocess}" if args.preprocess else ""
    if folds:
        extra += f", {len(folds)} fields scored by the fold model that did not see them ({args.density_folds})"
    print(f"hemoflow count evaluation on {args.data_dir} (split={args.split}, params={args.param or 'default'}{extra})")
    print(f"pixel size: {'%.4f um/px' % mpp if mpp else 'per image'} ({how})")
    models = shipped_models()
    print(f"models: {models}")
    groups = [(args.split, rows)]
    if args.split == "all":
        groups = [
            ("train (models fitted on these fields)", [r for r in rows if r["split"] == "train"]),
            ("validation (never fitted on; models and parameters chosen by these figures)",
             [r for r in rows if r["split"] == "validation"]),
            ("all", rows),
        ]
    for name, grp in groups:
        print(f"[{name}]")
        for line in summarize(grp):
            print(line)
    if args.results:
        from results_table import upsert

        recs = [rec for split in ("validation", "train")
                for rec in result_records([r for r in rows if r["split"] == split], split, models)]
        upsert(args.results, recs)
        print(f"{len(recs)} records written to {args.results}")
    return 0


#: Headline figures: key of :func:`figures` -> (name, unit, scale, digits, reference).
HEADLINE = {
    "wbc_exact_voc": ("WBC count exact per field", "%", 100.0, 1, "VOC boxes"),
    "rbc_mape": ("RBC count MAPE", "%", 100.0, 1, "TXL re-annotation"),
    "rbc_r": ("RBC count Pearson r", "", 1.0, 3, "TXL re-annotation"),
    "platelet_mae": ("Platelet count MAE", "cells", 1.0, 3, "TXL re-annotation"),
    "net_rbc_mape": ("RBC density network alone (int8), count MAPE", "%", 100.0, 1, "TXL re-annotation"),
    "net_rbc_r": ("RBC density network alone (int8), Pearson r", "", 1.0, 3, "TXL re-annotation"),
}


def result_records(rows: list[dict], split: str, models: str) -> list[dict]:
    """Records of :data:`HEADLINE` for one split, in the schema of docs/results/README.md."""
    f = figures(rows)
    kind = "trained" if split == "train" else "validation"
    out = []
    for key, (name, unit, scale, digits, ref) in HEADLINE.items():
        if key not in f:
            continue
        v, lo, hi, n = f[key]
        out.append({
            "name": f"BCCD {name} ({split})", "value": round(v * scale, 4), "ci_low": round(lo * scale, 4),
            "ci_high": round(hi * scale, 4), "unit": unit, "digits": digits, "n": n,
            "data": f"BCCD {split} fields (hemoflow.training.splits), against the {ref}",
            "kind": kind, "model": models,
            "command": "python scripts/evaluate_counts.py ../shared/data/bccd"
                       + (" --network-count" if key.startswith("net_") else ""),
        })
    return out


if __name__ == "__main__":
    raise SystemExit(main())
