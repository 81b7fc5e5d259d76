"""Fit the per-basin red-cell count model (``hemoflow/models/rbc_count_*.json``).

    python -m hemoflow.training.rbc_count DATA_DIR [--density-folds FOLDS] [--mpp UM] [--out FILE]

Each basin of the fitting fields (the training split of the BCCD development fields with
TXL re-annotations) gets the number of TXL red-cell box centres it holds as its target;
the model is a multinomial logistic regression on :data:`hemoflow.stages._rbc_count.FEATURES`
(plus :data:`~hemoflow.stages._rbc_count.MASS_FEATURES` with ``--density-folds``, masses
from the cross-validation fold network that did not see the field).
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import ndimage as ndi

from hemoflow.stages._rbc_count import FEATURES, MASS_FEATURES, N_CLASSES, basin_features, mass_features, predict_counts
from hemoflow.kernels._stain import stain_planes
from hemoflow.stages._rbc_density import basin_mass, rbc_density
from hemoflow.stages.calibration import calibrate
from hemoflow.stages.field import red_cell_basins, stained_objects
from hemoflow.training.fitting import fit, fitting_cli, txl_centres, write_model

__all__ = ["main"]


def _basins(rgb, cal, params, *, px_um: float):
    """The red-cell basins the shipped count model sees in a field, and their shape
    features: ``(labels, n, features)``."""
    s = stained_objects(rgb, cal, params, px_um)
    rbc, n, dist = red_cell_basins(s, params)
    return rbc, n, basin_features(rbc, n, dist, rbc_area_px=s.rbc_area)


def _collect(data_dir, names, params, mpp=None, density_folds=None):
    """Basin features and box-centre counts of the named images of a BCCD-layout folder.

    ``density_folds``: a folder written by ``scripts/train_rbc_density.py --folds-dir``;
    each image's basins then also get :data:`MASS_FEATURES` from the density model of
    the fold that did not train on that image (out-of-fold, as on unseen fields).
    """
    import json
    from pathlib import Path

    from hemoflow.analyze import read_image

    fold_of = json.loads((Path(density_folds) / "folds.json").read_text()) if density_folds else None

    xs, ys, per_image = [], [], []
    root = Path(data_dir)
    for name in names:
        rgb = read_image(root / "JPEGImages" / f"{name}.jpg")
        h, w = rgb.shape[:2]
        cal = calibrate(rgb, params=params, mpp=mpp)
        f = cal.work_scale
        rbc, n, feats = _basins(rgb, cal, params, px_um=cal.mpp * f)
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
            for yc, xc in txl_centres(root, name, 1, (h, w), f):
                y = min(int(yc), rbc.shape[0] - 1)
                x = min(int(xc), rbc.shape[1] - 1)
                if d[y, x] <= radius:
                    counts[rbc[iy[y, x], ix[y, x]]] += 1
        xs.append(feats)
        ys.append(counts[1:])
        per_image.append(name)
    return xs, ys, per_image


def main(argv=None) -> int:
    """Fit the basin-count model on the development split and write ``hemoflow/models/rbc_count_*.json``."""
    from hemoflow.stages import SegmentParams

    args, names, mpp = fitting_cli(argv, description=main.__doc__, out_name="rbc_count_shape.json", l2=1e-3,
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
    write_model(
        args.out,
        f"RBC basin-count model. Fitted on {len(names)} development images ({len(x)} basins) at {mpp:.5f} um/px;\n"
        + (f"with out-of-fold density masses from {folds.name}/;\n" if folds is not None else "")
        + f"classes 0..{N_CLASSES - 1} cells.",
        mean, std, coef, features=FEATURES + (MASS_FEATURES if folds is not None else ()),
        command="python -m hemoflow.training.rbc_count DATA_DIR"
        + (" --density-folds FOLDS" if folds is not None else ""),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
