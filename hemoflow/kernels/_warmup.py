"""Compile (or load from Numba's on-disk cache) every kernel signature used in practice."""

from __future__ import annotations

import numpy as np

__all__ = ["warmup"]


def warmup() -> None:
    """Trigger compilation / cache loading of every kernel on tiny arrays.

    Called once per worker process so that no task pays for compilation. Covers the mask
    dtype of :func:`label`, the image dtypes (uint8, uint16, float32, float64) of
    :func:`threshold_label_measure` and the intensity dtypes of
    :func:`regionprops_table`.
    """
    from ._fused import threshold_label_measure
    from ._label import label
    from ._regionprops import ALL_PROPERTIES, regionprops_table

    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 1:3] = True
    mask[3, 4] = True
    for conn in (1, 2):
        lab, _ = label(mask, connectivity=conn)
    for dt in (np.uint8, np.uint16, np.float32, np.float64):
        inten = mask.astype(dt)
        regionprops_table(lab, inten, ALL_PROPERTIES)
        regionprops_table(lab, np.stack([inten] * 3, axis=-1), ALL_PROPERTIES)
        for above in (True, False):
            for keep in (True, False):
                threshold_label_measure(
                    inten, 0.5, above=above, properties=ALL_PROPERTIES, intensity=inten, min_area=2, keep_labels=keep
                )
    regionprops_table(lab, None, ("label", "area"))
