#!/usr/bin/env python
"""Count accuracy of ``hemoflow analyze`` on a BCCD-layout folder.

    python scripts/evaluate_counts.py DATA_DIR [--limit N] [--split dev|self-holdout|all]
                                      [--param NAME=VALUE ...] [--per-image CSV]
                                      [--preprocess equalize|flatfield]
                                      [--mpp UM_PER_PX | --mpp-per-image] [--density-folds DIR]

DATA_DIR holds ``JPEGImages/*.jpg`` and ``counts.csv`` (``image, wbc_voc, rbc_voc,
platelets_voc, wbc_txl, rbc_txl, platelets_txl, ...``). Each image goes through
:func:`hemoflow.analyze.analyze_image` (the code path of ``hemoflow analyze``) and the
script prints, per split:

* WBC exact-count rate vs ``wbc_voc`` (and vs ``wbc_txl`` where present, a second opinion);
* RBC MAPE, MAE and Pearson r vs ``rbc_txl`` (images that have it; VOC RBC boxes are
  about half missing);
* platelet MAE vs ``platelets_txl``;
* throughput in megapixels per second, single-threaded.

``--preprocess`` applies an extra whole-field step before analysis, for the
preprocessing ablation (``docs/ablation_counts.md``): ``equalize`` = per-channel histogram
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

``self-holdout`` is a deterministic quarter of the images (first byte of the SHA-256 of
the image name < 64) that parameter choices were never tuned on; ``dev`` is the rest.
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
from hemoflow.stages import SegmentParams  # noqa: E402
from PIL import Image  # noqa: E402


def in_self_holdout(image: str) -> bool:
    """Deterministic ~25% split by image name (:func:`hemoflow.training.splits.in_bccd_validation`)."""
    from hemoflow.training.splits import in_bccd_validation

    return in_bccd_validation(image)


def _num(v: str):
    v = (v or "").strip()
    return float(v) if v else None


def _pearson(a, b) -> float:
    n = len(a)
    if n < 2:
        return float("nan")
    ma, mb = sum(a) / n, sum(b) / n
    sa = math.sqrt(sum((x - ma) ** 2 for x in a))
    sb = math.sqrt(sum((y - mb) ** 2 for y in b))
    if sa == 0 or sb == 0:
        return float("nan")
    return sum((x - ma) * (y - mb) for x, y in zip(a, b)) / (sa * sb)


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


def _parse_params(items: list[str]) -> SegmentParams:
    d = {}
    for it in items:
        k, _, v = it.partition("=")
        try:
            d[k] = tuple(float(x) for x in v.split(",")) if "," in v else float(v)
        except ValueError:
            d[k] = v
    return SegmentParams(**d)


def summarize(rows: list[dict]) -> list[str]:
    out = []
    n = len(rows)
    if n == 0:
        return ["  (no images)"]
    wbc_ok = sum(r["wbc"] == r["wbc_voc"] for r in rows)
    out.append(f"  images: {n}")
    out.append(f"  WBC exact vs wbc_voc:      {wbc_ok / n:7.1%}  ({wbc_ok}/{n})")
    tx = [r for r in rows if r["wbc_txl"] is not None]
    if tx:
        ok = sum(r["wbc"] == r["wbc_txl"] for r in tx)
        out.append(f"  WBC exact vs wbc_txl:      {ok / len(tx):7.1%}  ({ok}/{len(tx)})")
    rb = [r for r in rows if r["rbc_txl"] is not None]
    if rb:
        err = [abs(r["rbc"] - r["rbc_txl"]) for r in rb]
        mape = sum(e / r["rbc_txl"] for e, r in zip(err, rb)) / len(rb)
        bias = sum(r["rbc"] - r["rbc_txl"] for r in rb) / len(rb)
        rr = _pearson([r["rbc"] for r in rb], [r["rbc_txl"] for r in rb])
        out.append(
            f"  RBC vs rbc_txl (n={len(rb)}):   MAPE {mape:6.1%}  MAE {sum(err) / len(rb):5.2f}"
            f"  r {rr:5.3f}  bias {bias:+5.2f}"
        )
    pl = [r for r in rows if r["platelets_txl"] is not None]
    if pl:
        mae = sum(abs(r["platelets"] - r["platelets_txl"]) for r in pl) / len(pl)
        out.append(f"  platelets vs platelets_txl (n={len(pl)}): MAE {mae:5.3f}")
    mp = sum(r["pixels"] for r in rows) / 1e6
    sec = sum(r["seconds"] for r in rows)
    out.append(f"  throughput: {mp / sec:5.2f} MP/s single-threaded ({sec / n * 1000:.0f} ms/image)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--split", choices=("dev", "self-holdout", "all"), default="all")
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
    args = ap.parse_args(argv)

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
    if args.split == "dev":
        truth = [t for t in truth if not in_self_holdout(t["image"])]
    elif args.split == "self-holdout":
        truth = [t for t in truth if in_self_holdout(t["image"])]
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
        with Image.open(path) as im:
            w_, h_ = im.size
        rows.append(
            {
                "image": t["image"],
                "holdout": in_self_holdout(t["image"]),
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
    groups = [("all", rows)]
    if args.split == "all":
        groups = [
            ("dev (tuned on)", [r for r in rows if not r["holdout"]]),
            ("self-holdout (never tuned on)", [r for r in rows if r["holdout"]]),
            ("all", rows),
        ]
    for name, grp in groups:
        print(f"[{name}]")
        for line in summarize(grp):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
