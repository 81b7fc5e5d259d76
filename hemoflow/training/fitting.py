"""Shared pieces of the count-model fitting commands: BCCD-layout data, the logistic fit,
and the writer of :mod:`hemoflow.models` coefficient files.

The fitting images are always :func:`hemoflow.training.splits.bccd_split`'s training
split; the pixel size is the one ``hemoflow analyze`` pools over the folder.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit", "fitting_names", "pooled_mpp", "txl_centres", "write_model", "fitting_cli", "N_CLASSES"]

N_CLASSES = 4


def fit(features: np.ndarray, targets: np.ndarray, *, l2: float = 1e-3, iters: int = 2000, n_classes: int = N_CLASSES):
    """Multinomial logistic regression by Newton-free gradient descent (numpy only).

    Targets above ``n_classes - 1`` count as the last class. Returns
    ``(coef float64[F, C], mean, std)``; features are standardised with
    ``(x - mean) / std`` (the bias column keeps mean 0, std 1).
    """
    x = np.asarray(features, np.float64)
    y = np.minimum(np.asarray(targets, np.int64), n_classes - 1)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    mean[0], std[0] = 0.0, 1.0
    std[std < 1e-9] = 1.0
    z = (x - mean) / std
    onehot = np.eye(n_classes)[y]
    # class weights: the count error of a basin is what matters, all classes equally
    coef = np.zeros((z.shape[1], n_classes))
    lr = 0.5
    for _ in range(iters):
        s = z @ coef
        s -= s.max(axis=1, keepdims=True)
        pr = np.exp(s)
        pr /= pr.sum(axis=1, keepdims=True)
        g = z.T @ (pr - onehot) / len(z) + l2 * coef
        coef -= lr * g
    return coef, mean, std


def fitting_names(data_dir, column: str) -> list[str]:
    """Images of ``counts.csv`` with a value in ``column``, less the validation quarter
    (:func:`hemoflow.training.splits.in_bccd_validation`), which is never used for fitting."""
    import csv
    from pathlib import Path

    with open(Path(data_dir) / "counts.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if (r.get(column) or "").strip()]
    from hemoflow.training.splits import in_bccd_validation

    return [r["image"] for r in rows if not in_bccd_validation(r["image"])]


def pooled_mpp(data_dir) -> float:
    """The pixel size `hemoflow analyze` would pool over every image of the folder."""
    from pathlib import Path

    from hemoflow.analyze import estimate_shared_mpp

    every = sorted((Path(data_dir) / "JPEGImages").glob("*.jpg"))  # pixels only, no labels
    return estimate_shared_mpp(every)[0]


def txl_centres(data_dir, name: str, cls: int, shape: tuple[int, int], factor: int) -> list[tuple[float, float]]:
    """(y, x) centres, in working px, of the TXL boxes of class ``cls`` in image ``name``."""
    from pathlib import Path

    h, w = shape
    out = []
    for line in open(Path(data_dir) / "txl_reannotations" / f"{name}.txt"):
        c, xc, yc, _bw, _bh = (float(v) for v in line.split())
        if int(c) == cls:
            out.append((yc * h / factor, xc * w / factor))
    return out


def write_model(path, doc: str, mean, std, coef, *, features, command: str) -> None:
    """Write a fitted model as a coefficient file of :mod:`hemoflow.models`."""
    import json

    rec = {"kind": "multinomial logistic regression on standardised features", "features": list(features),
           "mean": np.round(mean, 8).tolist(), "std": np.round(std, 8).tolist(), "coef": np.round(coef, 8).tolist(),
           "provenance": {"description": " ".join(doc.split()), "command": command,
                          "data": "BCCD development fields with TXL re-annotations, training split of "
                                  "hemoflow.training.splits.bccd_split"}}
    with open(path, "w") as fh:
        fh.write(json.dumps(rec, indent=1) + "\n")


def fitting_cli(argv, *, description: str, out_name: str, l2: float, column: str, density: bool = False):
    """Arguments of a count-model fitting command: ``(args, fitting image names, mpp)``."""
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("data_dir", type=Path, help="BCCD-layout folder with txl_reannotations/")
    from hemoflow.models import MODELS_DIR

    ap.add_argument("--out", type=Path, default=MODELS_DIR / out_name)
    ap.add_argument("--l2", type=float, default=l2)
    ap.add_argument("--mpp", type=float, default=None,
                    help="pixel size of every image (default: the median estimate over all the folder's "
                    "images, as `hemoflow analyze` and scripts/evaluate_counts.py pool it)")
    if density:
        ap.add_argument("--density-folds", type=Path, default=None,
                        help="fold models from `scripts/train_rbc_density.py --folds-dir`: fit the density-aware "
                        "model (written to rbc_count_density.json) instead of the shape-only one")
    args = ap.parse_args(argv)
    folds = getattr(args, "density_folds", None)
    if folds is not None and not (folds / "folds.json").is_file():
        ap.error(f"{folds} has no folds.json: write it with `scripts/train_rbc_density.py --cv 5 --folds-dir {folds}`")
    for need in ("counts.csv", "txl_reannotations", "JPEGImages"):
        if not (args.data_dir / need).exists():
            ap.error(f"{args.data_dir} is not a BCCD-layout folder: {need} is missing")
    names = fitting_names(args.data_dir, column)
    mpp = args.mpp if args.mpp is not None else pooled_mpp(args.data_dir)
    print(f"pixel size {mpp:.5f} um/px")
    return args, names, mpp
