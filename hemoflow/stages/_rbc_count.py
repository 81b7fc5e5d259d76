"""How many red cells each watershed basin holds, and splitting basins accordingly.

The distance-transform watershed (:func:`hemoflow.stages.segment.segment_rbc`) leaves two
kinds of error on real smears: heavily overlapping cells stay one basin (no saddle in
the distance map), and pale cells with an open central pallor break into C-shaped
pieces. A small multinomial logistic model looks at each basin's shape (area relative
to a typical RBC, solidity, eccentricity, circularity, depth of its distance peak,
whether it touches the array edge) and predicts 0, 1, 2 or 3 cells. Basins predicted to
hold 0 are dropped; those predicted to hold k >= 2 are split into k parts by k-means on
their pixel coordinates (deterministic farthest-point start, coordinates relative to the
basin's bounding box, so the split does not depend on where the window starts).

The coefficients (``hemoflow/models/rbc_count_*.json``) were fitted on the development
split of the development images' box annotations; see :func:`fit` and
``python -m hemoflow.stages._rbc_count --help``. Everything here is per basin, so the
result stays local.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from hemoflow.kernels import regionprops_table
from hemoflow.kernels._kmeans import split_labels
from hemoflow.kernels._smear import label_bboxes, label_max, lut_gather, renumber_raster

__all__ = ["basin_features", "predict_proba", "predict_counts", "expected_weights", "split_basins", "fit", "FEATURES"]

FEATURES = (
    "bias",
    "log_area",
    "log_area_sq",
    "solidity",
    "eccentricity",
    "circularity",
    "depth",
    "border",
    "border_log_area",
)
N_CLASSES = 4
#: Extra features of the density-aware model: the basin's red-cell density mass
#: (:mod:`hemoflow.stages._rbc_density`) and its log.
MASS_FEATURES = ("mass", "log_mass")


def mass_features(mass: np.ndarray) -> np.ndarray:
    """``float64[n, 2]``: the basins' density mass and ``log(mass + 0.05)``."""
    m = np.maximum(np.asarray(mass, np.float64), 0.0)
    return np.stack([m, np.log(m + 0.05)], axis=1)


#: What :func:`basin_features` measures of each basin (a ``props`` argument must hold these).
BASIN_PROPERTIES = ("label", "area", "perimeter", "solidity", "eccentricity", "bbox")


def basin_features(labels: np.ndarray, n: int, dist: np.ndarray, *, rbc_area_px: float,
                   props: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Feature matrix ``float64[n, len(FEATURES)]`` of basins ``1..n`` (working px).

    ``dist`` is the chamfer distance (1/5 px units) of the RBC mask; ``rbc_area_px`` the
    area of a typical RBC in working px. ``props``: ``regionprops_table`` of ``labels``
    with at least :data:`BASIN_PROPERTIES`, when the caller has it already.
    """
    if n == 0:
        return np.zeros((0, len(FEATURES)))
    p = props if props is not None else regionprops_table(np.ascontiguousarray(labels, np.int32),
                                                          properties=BASIN_PROPERTIES)
    order = np.argsort(p["label"], kind="stable")
    p = {k: np.asarray(v)[order] for k, v in p.items()}
    area = p["area"].astype(np.float64)
    perim = np.maximum(p["perimeter"].astype(np.float64), 1.0)
    peak = label_max(labels, dist, n)[1:].astype(np.float64) / 5.0
    h, w = labels.shape
    border = ((p["bbox-0"] == 0) | (p["bbox-1"] == 0) | (p["bbox-2"] == h) | (p["bbox-3"] == w)).astype(np.float64)
    la = np.log(area / rbc_area_px)
    radius = math.sqrt(rbc_area_px / math.pi)
    return np.stack(
        [
            np.ones(n),
            la,
            la * la,
            p["solidity"].astype(np.float64),
            p["eccentricity"].astype(np.float64),
            np.minimum(4.0 * math.pi * area / (perim * perim), 1.5),
            peak / radius,
            border,
            border * la,
        ],
        axis=1,
    )


def predict_proba(features: np.ndarray, *, density: bool = False) -> np.ndarray:
    """``float64[n, 4]``: probability of 0..3 cells per basin under the shipped model
    (``density``: the density-aware one, whose features end with :data:`MASS_FEATURES`)."""
    from hemoflow import models

    m = models.coefficients("rbc_count_density" if density else "rbc_count_shape")
    if len(features) == 0:
        return np.zeros((0, N_CLASSES))
    s = ((features - m["mean"]) / m["std"]) @ m["coef"]
    s -= s.max(axis=1, keepdims=True)
    p = np.exp(s)
    return p / p.sum(axis=1, keepdims=True)


def predict_counts(features: np.ndarray, coef: np.ndarray | None = None, *, density: bool = False) -> np.ndarray:
    """Most probable cell count (0..3) per basin under the shipped model (see
    :func:`predict_proba`), or under ``coef`` for features already standardised."""
    if len(features) == 0:
        return np.zeros(0, np.int64)
    scores = predict_proba(features, density=density) if coef is None else features @ coef
    return np.argmax(scores, axis=1).astype(np.int64)


def expected_weights(proba: np.ndarray, labels: np.ndarray, *, reach_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Most probable counts and count weights of basins ``1..n`` (``proba`` from
    :func:`predict_proba`): ``(counts int64[n], weight float64[n])``.

    A kept basin (most probable count k >= 1) weighs its expected count ``sum_j j p_j``
    plus the expected counts of the dropped basins (most probable count 0, typically
    fragments of pale cells) whose bounding-box centre lies within ``reach_px`` of its
    own, nearest first; each of its k parts carries ``weight / k``. Summed over a field,
    the weights give the expected number of red cells, which argmax counts underestimate
    (fragments that are each probably nothing are together often a cell). Everything is
    local (reach_px), so tiles agree with the whole field.
    """
    n = len(proba)
    counts = np.argmax(proba, axis=1).astype(np.int64) if n else np.zeros(0, np.int64)
    expect = proba @ np.arange(proba.shape[1], dtype=np.float64) if n else np.zeros(0)
    total = np.where(counts > 0, expect, 0.0)
    kept = np.flatnonzero(counts > 0)
    dropped = np.flatnonzero((counts == 0) & (expect > 0))
    if len(kept) and len(dropped):
        from scipy.spatial import cKDTree

        b = label_bboxes(labels, n)[1:].astype(np.float64)
        centre = np.stack([(b[:, 0] + b[:, 2]) / 2.0, (b[:, 1] + b[:, 3]) / 2.0], axis=1)
        dist, idx = cKDTree(centre[kept]).query(centre[dropped], k=1, distance_upper_bound=reach_px)
        ok = np.isfinite(dist)
        np.add.at(total, kept[idx[ok]], expect[dropped[ok]])
    weight = np.where(counts > 0, total / np.maximum(counts, 1), 0.0)
    return counts, weight


def split_basins(labels: np.ndarray, counts: np.ndarray, boxes: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Drop basins with count 0, split those with count k >= 2 into k parts (k-means on
    the pixel coordinates; the first part keeps the basin). ``boxes``: the basins' boxes
    as :func:`hemoflow.kernels._smear.label_bboxes` gives them, when the caller has them.

    Returns ``(labels int32, n)`` numbered in raster order of each part's first pixel.
    """
    n = len(counts)
    if n == 0:
        return np.zeros(labels.shape, np.int32), 0
    counts = np.asarray(counts, np.int64)
    keep = np.zeros(n + 1, np.int32)
    keep[1:] = np.where(counts > 0, np.arange(1, n + 1), 0)
    if not (counts >= 2).any():
        return renumber_raster(labels, keep)
    out = lut_gather(keep, labels)
    ks = np.zeros(n + 1, np.int64)
    ks[1:] = counts
    split_labels(labels, out, label_bboxes(labels, n) if boxes is None else boxes, ks, n + 1)
    return renumber_raster(out)


# --------------------------------------------------------------------------- fitting


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


def _collect(data_dir, names, params, mpp=None, density_folds=None):
    """Basin features and box-centre counts of the named images of a BCCD-layout folder.

    ``density_folds``: a folder written by ``scripts/train_rbc_density.py --folds-dir``;
    each image's basins then also get :data:`MASS_FEATURES` from the density model of
    the fold that did not train on that image (out-of-fold, as on unseen fields).
    """
    import json
    from pathlib import Path

    from hemoflow.analyze import read_image
    from hemoflow.kernels._smear import stain_planes
    from hemoflow.stages import field as F
    from hemoflow.stages._rbc_density import basin_mass, rbc_density

    fold_of = json.loads((Path(density_folds) / "folds.json").read_text()) if density_folds else None

    xs, ys, per_image = [], [], []
    captured = {}

    def capture(rbc, n, dist, rbc_area):
        captured["v"] = (rbc, n, basin_features(rbc, n, dist, rbc_area_px=rbc_area))
        return np.ones(n, np.int64)

    root = Path(data_dir)
    for name in names:
        rgb = read_image(root / "JPEGImages" / f"{name}.jpg")
        h, w = rgb.shape[:2]
        cal = F.calibrate(rgb, params=params, mpp=mpp)
        f = cal.work_scale
        F._segment(rgb, cal, params, px_um=cal.mpp * f, count_basins=capture)
        rbc, n, feats = captured["v"]
        if fold_of is not None:
            if name not in fold_of:
                raise KeyError(f"{name} has no out-of-fold density model in {density_folds}")
            _, _, od = stain_planes(rgb, cal.downsample, cal.background, od=True, upsample=cal.upsample)
            dens = rbc_density(od, path=str(Path(density_folds) / fold_of[name]))
            reach = params.rbc_density_reach_um / (cal.mpp * f)
            feats = np.hstack([feats, mass_features(basin_mass(rbc, n, dens, reach_px=reach))])
        counts = np.zeros(n + 1, np.int64)
        if n:
            d, (iy, ix) = ndi.distance_transform_edt(rbc == 0, return_indices=True)
            radius = 0.5 * params.rbc_diameter_um / (cal.mpp * f)
            for yc, xc in _txl_centres(root, name, 1, (h, w), f):
                y = min(int(yc), rbc.shape[0] - 1)
                x = min(int(xc), rbc.shape[1] - 1)
                if d[y, x] <= radius:
                    counts[rbc[iy[y, x], ix[y, x]]] += 1
        xs.append(feats)
        ys.append(counts[1:])
        per_image.append(name)
    return xs, ys, per_image


def _fitting_names(data_dir, column: str) -> list[str]:
    """Images of ``counts.csv`` with a value in ``column``, less the self-holdout quarter
    (first SHA-256 byte of the name < 64), which is never used for fitting."""
    import csv
    import hashlib
    from pathlib import Path

    with open(Path(data_dir) / "counts.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if (r.get(column) or "").strip()]
    from hemoflow.training.splits import in_bccd_validation

    return [r["image"] for r in rows if not in_bccd_validation(r["image"])]


def _pooled_mpp(data_dir) -> float:
    """The pixel size `hemoflow analyze` would pool over every image of the folder."""
    from pathlib import Path

    from hemoflow.analyze import estimate_shared_mpp

    every = sorted((Path(data_dir) / "JPEGImages").glob("*.jpg"))  # pixels only, no labels
    return estimate_shared_mpp(every)[0]


def _txl_centres(data_dir, name: str, cls: int, shape: tuple[int, int], factor: int) -> list[tuple[float, float]]:
    """(y, x) centres, in working px, of the TXL boxes of class ``cls`` in image ``name``."""
    from pathlib import Path

    h, w = shape
    out = []
    for line in open(Path(data_dir) / "txl_reannotations" / f"{name}.txt"):
        c, xc, yc, _bw, _bh = (float(v) for v in line.split())
        if int(c) == cls:
            out.append((yc * h / factor, xc * w / factor))
    return out


def _write_model(path, doc: str, mean, std, coef, *, features, command: str) -> None:
    """Write a fitted model as a coefficient file of :mod:`hemoflow.models`."""
    import json

    rec = {"kind": "multinomial logistic regression on standardised features", "features": list(features),
           "mean": np.round(mean, 8).tolist(), "std": np.round(std, 8).tolist(), "coef": np.round(coef, 8).tolist(),
           "provenance": {"description": " ".join(doc.split()), "command": command,
                          "data": "BCCD development fields with TXL re-annotations, training split of "
                                  "hemoflow.training.splits.bccd_split"}}
    with open(path, "w") as fh:
        fh.write(json.dumps(rec, indent=1) + "\n")


def _fitting_cli(argv, *, description: str, out_name: str, l2: float, column: str, density: bool = False):
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
    names = _fitting_names(args.data_dir, column)
    mpp = args.mpp if args.mpp is not None else _pooled_mpp(args.data_dir)
    print(f"pixel size {mpp:.5f} um/px")
    return args, names, mpp


def _main(argv=None) -> int:
    """Fit the basin-count model on the development split and write ``hemoflow/models/rbc_count_*.json``."""
    from hemoflow.stages import SegmentParams

    args, names, mpp = _fitting_cli(argv, description=_main.__doc__, out_name="rbc_count_shape.json", l2=1e-3,
                                    column="rbc_txl", density=True)
    folds = args.density_folds
    if folds is not None and args.out.name == "rbc_count_shape.json":
        args.out = args.out.with_name("rbc_count_density.json")
    xs, ys, _ = _collect(args.data_dir, names, SegmentParams(rbc_count_model=True), mpp=mpp, density_folds=folds)
    x, y = np.concatenate(xs), np.concatenate(ys)
    coef, mean, std = fit(x, y, l2=args.l2)
    pred = [predict_counts((a - mean) / std, coef).sum() for a in xs]
    truth = [int(t.sum()) for t in ys]
    print(f"{len(names)} images, {len(x)} basins, class counts {np.bincount(np.minimum(y, 3)).tolist()}")
    print("per-image count error on the fitting images (mean abs):", float(np.mean(np.abs(np.subtract(pred, truth)))))
    _write_model(
        args.out,
        f"RBC basin-count model. Fitted on {len(names)} development images ({len(x)} basins) at {mpp:.5f} um/px;\n"
        + (f"with out-of-fold density masses from {folds.name}/;\n" if folds is not None else "")
        + f"classes 0..{N_CLASSES - 1} cells.",
        mean, std, coef, features=FEATURES + (MASS_FEATURES if folds is not None else ()),
        command="python -m hemoflow.stages._rbc_count DATA_DIR"
        + (" --density-folds FOLDS" if folds is not None else ""),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
