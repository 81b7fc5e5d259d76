"""Agreement of a WBC classifier with the truth of synthetic fields (``hemoflow.synth``).

The demo's slides are synthetic, so this is the figure that says whether the demo's
differential still matches its generator. Labels are compared through ``group`` (the
generator's ``neutrophil`` is the model's band or segmented neutrophil).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hemoflow.classify.metrics import classification_metrics
from hemoflow.classify.taxonomy import LABELS, group_of

__all__ = ["synthetic_agreement"]


def synthetic_agreement(clf, *, n_fields: int = 6, seed: int = 500_000, shape=(768, 768), mpp: float = 0.25,
                        tta: bool = False, **synth_kwargs: Any) -> dict[str, Any]:
    """Share of synthetic WBCs whose predicted group equals the generator's type.

    Fields come from :func:`hemoflow.synth.synth_field` with seeds ``seed, seed+1, ...``;
    crops are cut at the true centroids as the pipeline cuts them.
    """
    from hemoflow import synth
    from hemoflow.stages.crops import CropSpec, crop_cells

    spec = CropSpec(size=clf.io.input_size, mpp=clf.io.mpp)
    truth_all, pred_all = [], []
    for k in range(n_fields):
        rgb, truth = synth.synth_field(shape, mpp=mpp, seed=seed + k, **synth_kwargs)
        sel = np.asarray(truth["cls"]) == "wbc"
        if not sel.any():
            continue
        ys, xs = np.asarray(truth["y"], float)[sel], np.asarray(truth["x"], float)[sel]
        crops = crop_cells(rgb, ys, xs, mpp=mpp, crop=spec)
        labels, _ = clf.predict(crops, tta=tta)
        truth_all += [str(t) for t in np.asarray(truth["type"])[sel]]
        pred_all += [group_of(lab) if lab in LABELS else lab for lab in labels]
    classes = sorted(set(truth_all) | set(pred_all))
    m = classification_metrics(truth_all, pred_all, classes=classes)
    m["agreement"] = m["accuracy"]
    return m
