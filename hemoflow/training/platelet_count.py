"""Fit the per-candidate platelet model (``hemoflow/models/platelet_count.json``).

    python -m hemoflow.training.platelet_count DATA_DIR [--mpp UM] [--out FILE]

Candidates are those of the shipped model (:func:`hemoflow.stages.field.platelet_candidates`)
on the training split of the BCCD development fields; a TXL platelet box marks the
candidate nearest its centre. The model is a two-class logistic regression on
:data:`hemoflow.stages._platelet_count.FEATURES`.
"""

from __future__ import annotations

import sys

import numpy as np

from hemoflow.stages._platelet_count import FEATURES, predict
from hemoflow.stages.calibration import calibrate
from hemoflow.stages.field import platelet_candidates, stained_objects
from hemoflow.training.fitting import fit, fitting_cli, txl_centres, write_model

__all__ = ["main"]


def _collect(data_dir, names, params, mpp):
    """Candidate features and platelet/not targets of the named BCCD-layout images.

    A TXL platelet box marks the candidate whose centroid is nearest its centre, within
    2.5 µm; unmatched candidates are negatives.
    """
    from pathlib import Path

    from hemoflow.analyze import read_image

    xs, ys = [], []
    root = Path(data_dir)
    for name in names:
        rgb = read_image(root / "JPEGImages" / f"{name}.jpg")
        cal = calibrate(rgb, params=params, mpp=mpp)
        f = cal.work_scale
        um = 1.0 / (cal.mpp * f)
        lab, n, feats = platelet_candidates(stained_objects(rgb, cal, params, cal.mpp * f), cal, params)
        target = np.zeros(n, np.int64)
        if n:
            area = np.bincount(lab.ravel(), minlength=n + 1)[1:].astype(np.float64)
            ys_, xs_ = np.nonzero(lab)
            cy = np.bincount(lab[ys_, xs_], weights=ys_, minlength=n + 1)[1:] / np.maximum(area, 1)
            cx = np.bincount(lab[ys_, xs_], weights=xs_, minlength=n + 1)[1:] / np.maximum(area, 1)
            for by, bx in txl_centres(root, name, 2, rgb.shape[:2], f):
                d = np.hypot(cy - by, cx - bx)
                j = int(np.argmin(d))
                if d[j] <= 2.5 * um:
                    target[j] = 1
        xs.append(feats)
        ys.append(target)
    return xs, ys


def main(argv=None) -> int:
    """Fit the platelet candidate model on the development split and write ``hemoflow/models/platelet_count.json``."""
    from hemoflow.stages import SegmentParams

    args, names, mpp = fitting_cli(argv, description=main.__doc__, out_name="platelet_count.json", l2=1e-2,
                                    column="platelets_txl")
    xs, ys = _collect(args.data_dir, names, SegmentParams(), mpp)
    x, y = np.concatenate(xs), np.concatenate(ys)
    coef, mean, std = fit(x, y, l2=args.l2, n_classes=2)
    pred = [int(predict((a - mean) / std, coef).sum()) for a in xs]
    print(f"{len(names)} images, {len(x)} candidates, {int(y.sum())} matched to a TXL platelet box")
    print("per-image count error on the fitting images (mean abs):",
          float(np.mean(np.abs(np.subtract(pred, [int(t.sum()) for t in ys])))))
    write_model(
        args.out,
        f"Platelet candidate model. Fitted on {len(names)} development images ({len(x)} candidates) at "
        f"{mpp:.5f} um/px; classes 0 (not a platelet), 1 (platelet).",
        mean, std, coef, features=FEATURES, command="python -m hemoflow.training.platelet_count DATA_DIR",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
