"""Numba kernels: connected-component labelling and per-region statistics.

This is the bottom layer of hemoflow: it imports nothing from the rest of the package.
Every public function is a thin validating wrapper in front of an ``@njit(cache=True)``
loop on C-contiguous arrays, tested against the scipy / scikit-image function it replaces.

- :func:`label` -- like ``skimage.measure.label`` for a 2-D mask (same numbering).
- :func:`regionprops_table` -- like ``skimage.measure.regionprops_table`` (same names).
- :func:`threshold_label_measure` -- threshold, label and measure in one call.
- :func:`circularity`, :func:`centroid_um` -- derived columns.
- :func:`warmup` -- compile / load every kernel (call once per worker process).
"""

from __future__ import annotations

from ._derived import centroid_um, circularity
from ._fused import threshold_label_measure
from ._label import label
from ._regionprops import ALL_PROPERTIES, DEFAULT_PROPERTIES, regionprops_table
from ._warmup import warmup

__all__ = [
    "ALL_PROPERTIES",
    "DEFAULT_PROPERTIES",
    "centroid_um",
    "circularity",
    "label",
    "regionprops_table",
    "threshold_label_measure",
    "warmup",
]
