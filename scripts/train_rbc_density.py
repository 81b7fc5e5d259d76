#!/usr/bin/env python
"""Train the red-cell density network shipped in ``hemoflow/models/``.

    python scripts/train_rbc_density.py DATA_DIR [--cv 5 --folds-dir DIR] [--epochs 120] [--width 24] [--stem 16]
                                        [--threads 1] [--out hemoflow/models/rbc_density.pt]

The shipped weights and the density-aware basin model were made by

    python scripts/train_rbc_density.py ../shared/data/bccd --cv 5 --folds-dir build/rbc_density_folds --threads 1
    python -m hemoflow.stages._rbc_count ../shared/data/bccd --density-folds build/rbc_density_folds

DATA_DIR is a BCCD-layout folder with ``txl_reannotations/`` (class 1 = RBC boxes). The
fitting images are those with ``rbc_txl`` outside the self-holdout quarter (the same
split as ``scripts/evaluate_counts.py``); the self-holdout images are only scored.

Each image goes through the pipeline's own calibration (pooled pixel size, background,
working scale) and :func:`hemoflow.kernels.stain_planes`, so the network sees exactly
the optical-density planes it gets in ``hemoflow analyze``. Targets are unit Gaussians
(sigma ``--sigma-um``) at the TXL box centres. ``--cv K`` first reports K-fold
cross-validation on the fitting images (the density summed per field, rounded, against
``rbc_txl``); ``--folds-dir`` keeps those fold models so the basin model can be fitted on
out-of-fold density masses. Seeded and reproducible on CPU with ``--threads 1``
(byte-identical weights); the command above takes about 3.5 minutes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _score(tag: str, pred, truth) -> dict:
    p = np.rint(np.asarray(pred, float))
    t = np.asarray(truth, float)
    out = {
        "n": int(len(t)),
        "mape_pct": round(float(np.mean(np.abs(p - t) / t) * 100), 2),
        "mae": round(float(np.mean(np.abs(p - t))), 3),
        "r": round(float(np.corrcoef(p, t)[0, 1]), 3) if len(t) > 2 else float("nan"),
        "bias": round(float(np.mean(np.asarray(pred, float) - t)), 3),
    }
    print(f"{tag}: n={out['n']} MAPE {out['mape_pct']:.2f}% MAE {out['mae']:.2f} r {out['r']:.3f} "
          f"bias {out['bias']:+.2f} (density sum vs rbc_txl)", flush=True)
    return out


def _field_sample(rgb, mpp: float, params, centres_of, sigma_um: float):
    """``(od, target, working µm/px)`` of one field as the network sees it in ``hemoflow
    analyze``: the pipeline's calibration and stain planes, zero-padded to the grid (the
    padding is background, OD 0); ``centres_of(f)`` gives the cell centres in working px
    at block factor ``f``."""
    from hemoflow.kernels._smear import stain_planes
    from hemoflow.stages import _rbc_density as R
    from hemoflow.stages import field as F

    cal = F.calibrate(rgb, params=params, mpp=mpp)
    f = cal.work_scale
    _, _, od = stain_planes(rgb, cal.downsample, cal.background, od=True, upsample=cal.upsample)
    od = R.pad4(od)
    return od, R.density_target(centres_of(f), od.shape[1:], sigma_um / (mpp * f)), mpp * f


def _synthetic(n: int, od_shape, params, sigma_um: float) -> list:
    """``n`` synthetic fields (:func:`hemoflow.synth.synth_field` at 0.25 µm/px, seeds
    ``0..n-1``, red-cell cover 0.2-0.55) prepared like the BCCD fields, at the working
    shape ``od_shape``: ``[(od, target)]``. They keep the network's counts true on the
    generator's cells (the demo and the synthetic tests) without taking BCCD fields' place."""
    from hemoflow import synth
    from hemoflow.stages.field import block_factor

    out = []
    mpp = 0.25
    f = block_factor(mpp, params.work_mpp)
    shape = (od_shape[1] * f, od_shape[2] * f)
    for seed in range(n):
        cover = 0.2 + 0.35 * ((seed * 0.618034) % 1.0)
        rgb, truth = synth.synth_field(shape, mpp=mpp, seed=seed, rbc_density=cover)
        rbc = np.asarray(truth["cls"]) == "rbc"
        # pixel-index centroids -> continuous coordinates (pixel i spans [i, i + 1)), working px
        yx = np.stack([np.asarray(truth["y"])[rbc], np.asarray(truth["x"])[rbc]], axis=1) + 0.5
        out.append(_field_sample(rgb, mpp, params, lambda fw, yx=yx: yx / fw, sigma_um)[:2])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="weights file (default: the shipped one)")
    ap.add_argument("--cv", type=int, default=0, help="K-fold cross-validation first (0: none)")
    ap.add_argument("--folds-dir", type=Path, default=None,
                    help="with --cv: keep the fold models there, with folds.json (image -> the model that did "
                    "not see it), for `python -m hemoflow.stages._rbc_count DATA --density-folds DIR`")
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--width", type=int, default=24, help="half the channels of the second stage")
    ap.add_argument("--stem", type=int, default=16, help="channels of the first stage")
    ap.add_argument("--sigma-um", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic", type=int, default=64,
                    help="synthetic fields (hemoflow.synth, 0.25 um/px, seeds 0..N-1) added to every training set")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--mpp", type=float, default=None, help="pixel size (default: pooled estimate)")
    ap.add_argument("--quantize-only", action="store_true",
                    help="no training: add the int8 copy (calibrated on the fitting fields) to the weights at --out")
    args = ap.parse_args(argv)
    if args.width < 1 or args.stem < 1 or args.epochs < 1:
        ap.error("--width, --stem and --epochs must be >= 1")
    if args.synthetic < 0:
        ap.error("--synthetic must be >= 0")
    if args.folds_dir is not None and args.cv < 2:
        ap.error("--folds-dir needs --cv K (K >= 2)")

    import torch

    from hemoflow.analyze import read_image
    from hemoflow.errors import HemoflowError
    from hemoflow.stages import SegmentParams
    from hemoflow.stages import _rbc_density as R
    from hemoflow.stages._rbc_count import _fitting_names, _pooled_mpp, _txl_centres

    root = args.data_dir
    if not (root / "txl_reannotations").is_dir() or not (root / "counts.csv").is_file():
        raise SystemExit(f"{root} is not a BCCD-layout folder with counts.csv and txl_reannotations/")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or R.WEIGHTS
    if args.quantize_only and not out.is_file():
        ap.error(f"--quantize-only needs existing weights at {out}")
    with open(root / "counts.csv", newline="") as fh:
        truth = {r["image"]: int(float(r["rbc_txl"])) for r in csv.DictReader(fh) if (r.get("rbc_txl") or "").strip()}
    fit_names = _fitting_names(root, "rbc_txl")
    hold_names = sorted(set(truth) - set(fit_names))
    mpp = args.mpp if args.mpp is not None else _pooled_mpp(root)
    params = SegmentParams()
    print(f"pixel size {mpp:.5f} um/px; {len(fit_names)} fitting images, {len(hold_names)} self-holdout", flush=True)

    def sample(name):
        rgb = read_image(root / "JPEGImages" / f"{name}.jpg")
        return _field_sample(rgb, mpp, params, lambda f: _txl_centres(root, name, 1, rgb.shape[:2], f), args.sigma_um)

    t0 = time.time()
    data = {n: sample(n) for n in sorted(truth)}
    shapes = {v[0].shape for v in data.values()}
    if len(shapes) != 1:
        raise HemoflowError(f"fields of one size expected, got {sorted(shapes)}")
    work_mpp = next(iter(data.values()))[2]
    od_shape = next(iter(data.values()))[0].shape
    synth_data = _synthetic(args.synthetic, od_shape, params, args.sigma_um)
    # int8 calibration: the fitting fields and the synthetic ones
    calib = [data[n][0] for n in fit_names] + [x for x, _ in synth_data]
    print(f"prepared {len(data)} fields {shapes.pop()} at {work_mpp:.4f} um/px in {time.time() - t0:.0f} s", flush=True)

    if args.quantize_only:
        net, blob = R.read_weights(out)
        meta = {k: v for k, v in blob["meta"].items() if k != "scale"}
        meta["int8_calibration_images"] = len(calib)
        digest = R.save_density_model(net, out, meta, int8_state=R.quantize(net, calib))
        print(f"added the int8 copy to {out} (sha256 {digest[:12]})")
        return 0

    def fit(names, seed):
        def progress(ep, n, loss):
            if ep % 10 == 0 or ep == n:
                print(f"  epoch {ep}/{n} loss {loss:.4f} ({time.time() - t0:.0f} s)", flush=True)

        return R.train_density([data[n][:2] for n in names] + synth_data, width=args.width, stem=args.stem,
                               epochs=args.epochs, seed=seed, progress=progress)

    meta = {"width": args.width, "stem": args.stem, "epochs": args.epochs, "sigma_um": args.sigma_um, "seed": args.seed,
            "bn_recalibrated": True, "input": "fields zero-padded to the grid",
            "work_mpp": round(work_mpp, 5), "pixel_size_um": round(mpp, 5), "grid": R.ALIGN,
            "fitting_images": len(fit_names), "synthetic_fields": args.synthetic,
            "data_sha256": hashlib.sha256("\n".join(fit_names).encode()
                                          + b"".join(data[n][1].tobytes() for n in fit_names)).hexdigest()[:16],
            "source": "BCCD development fields, TXL-PBC RBC boxes (MIT)"}
    if args.cv > 1:
        folds = np.arange(len(fit_names)) % args.cv
        pred = np.zeros(len(fit_names))
        for k in range(args.cv):
            print(f"fold {k + 1}/{args.cv}", flush=True)
            net = fit([n for n, f in zip(fit_names, folds) if f != k], args.seed + k)
            if args.folds_dir is not None:
                R.save_density_model(net, args.folds_dir / f"fold{k}.pt", {**meta, "fold": k})
            for i in np.flatnonzero(folds == k):
                pred[i] = R.predict_total(net, data[fit_names[i]][0])
        meta["cv"] = _score(f"{args.cv}-fold CV on the fitting images", pred, [truth[n] for n in fit_names])
        if args.folds_dir is not None:
            import json

            (args.folds_dir / "folds.json").write_text(json.dumps(
                {n: f"fold{int(f)}.pt" for n, f in zip(fit_names, folds)}, indent=0))
    print("final model on all fitting images", flush=True)
    net = fit(fit_names, args.seed)
    meta["fit"] = _score("fitting images (trained on)", [R.predict_total(net, data[n][0]) for n in fit_names],
                         [truth[n] for n in fit_names])
    if hold_names:
        meta["self_holdout"] = _score("self-holdout (never trained on)",
                                      [R.predict_total(net, data[n][0]) for n in hold_names],
                                      [truth[n] for n in hold_names])
    # int8 copy for inference (3.6x faster on CPU)
    int8_state = R.quantize(net, calib)
    meta["int8_calibration_images"] = len(calib)
    digest = R.save_density_model(net, out, meta, int8_state=int8_state)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB, sha256 {digest[:12]}) in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
