"""Threshold -> label -> measure in one call, without materialising the mask."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numba import njit

from ._label import _label_kernel, _resolve, _scan_runs
from ._measure import PERIMETER_WEIGHTS, measure_kernel, measure_runs_kernel
from ._regionprops import (
    DEFAULT_PROPERTIES,
    _DUMMY_INTENSITY,
    as_intensity,
    parse_properties,
    table_from_stats,
)
from ._validate import describe, parse_connectivity

__all__ = ["threshold_label_measure"]

_IMAGE_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


@njit(cache=True, nogil=True)
def _measure_without_labels(img, thr, above, conn8, inten, use_intensity, want_perimeter, want_hull):
    h, w = img.shape
    row_ptr, rs, re, parent, n = _scan_runs(img, thr, above, conn8)
    runlab, count = _resolve(parent, n)
    stats = measure_runs_kernel(
        row_ptr, rs, re, runlab, count, h, w, inten, use_intensity, want_perimeter, want_hull, PERIMETER_WEIGHTS
    )
    return stats, count


@njit(cache=True, nogil=True)
def _remap(lab, mapping):
    h, w = lab.shape
    for r in range(h):
        row = lab[r]
        for c in range(w):
            v = row[c]
            if v != 0:
                row[c] = mapping[v]


def _check_image_threshold_min_area(image: np.ndarray, threshold: float, min_area: int) -> float:
    """Validate the arguments that need no parsing; returns the threshold as a float."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array; got {describe(image)}")
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W); got {describe(image)}")
    if image.dtype == np.bool_ or not (
        np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    ):
        raise TypeError(f"image must have a real numeric dtype; got {describe(image)}")
    try:
        thr = float(threshold)
    except (TypeError, ValueError):
        raise TypeError(f"threshold must be a real number; got {threshold!r}") from None
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 0:
        raise ValueError(f"min_area must be a non-negative int; got {min_area!r}")
    return thr


def _intensity_input(
    intensity: np.ndarray | None, shape: tuple[int, ...], use_int: bool
) -> tuple[np.ndarray, int | None]:
    """The intensity array the kernels read (a dummy unless ``intensity_mean`` is wanted)
    and its channel count (None for a 2-D or absent intensity image)."""
    n_channels = None
    inten = _DUMMY_INTENSITY
    if intensity is not None:
        inten_checked = as_intensity(intensity, shape)
        if intensity.ndim == 3:
            n_channels = intensity.shape[2]
        if use_int:
            inten = inten_checked
    return inten, n_channels


def _label_and_measure(
    img: np.ndarray,
    thr: float,
    above: bool,
    conn: int,
    inten: np.ndarray,
    use_int: bool,
    props: Iterable[str],
    keep_labels: bool,
) -> tuple[np.ndarray | None, np.ndarray, int]:
    """Label and measure; the label image is built only where it is returned or needed."""
    want_perimeter = "perimeter" in props
    want_hull = "solidity" in props or "area_convex" in props
    if keep_labels or (want_perimeter and conn == 1):
        # the 4-connected perimeter needs labels: diagonal neighbours may be other regions
        lab = np.empty(img.shape, dtype=np.int32)
        nlab = _label_kernel(img, thr, above, conn == 2, lab)
        stats = measure_kernel(lab, nlab, inten, use_int, want_perimeter, want_hull, PERIMETER_WEIGHTS)
        return lab, stats, nlab
    stats, nlab = _measure_without_labels(img, thr, above, conn == 2, inten, use_int, want_perimeter, want_hull)
    return None, stats, nlab


def threshold_label_measure(
    image: np.ndarray,
    threshold: float,
    *,
    above: bool = True,
    connectivity: int = 2,
    min_area: int = 0,
    properties: Iterable[str] = DEFAULT_PROPERTIES,
    intensity: np.ndarray | None = None,
    keep_labels: bool = False,
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """Threshold a 2-D image, label the foreground and measure the regions.

    Equivalent to ``labels, _ = label(image > threshold)`` (or ``image <= threshold``
    with ``above=False``), dropping regions with ``area < min_area`` and renumbering the
    rest consecutively in the same order, then ``regionprops_table(labels, intensity,
    properties)``. The boolean mask is never built.

    Parameters
    ----------
    image : (H, W) ndarray of a real dtype
        NaN pixels are background in both modes.
    threshold : float
    above : bool
        Foreground is ``image > threshold`` (default) or ``image <= threshold``.
    connectivity : {1, 2}
    min_area : int
        Regions with fewer pixels are dropped (from the table and the labels).
    properties : sequence of str
        As :func:`hemoflow.kernels.regionprops_table`.
    intensity : (H, W) or (H, W, C) ndarray, optional
        Needed for ``intensity_mean``.
    keep_labels : bool
        Return the label image (int32) as the first element; otherwise it is ``None``.

    Returns
    -------
    labels : (H, W) int32 ndarray or None
    table : dict of str -> 1-D ndarray

    Examples
    --------
    >>> import numpy as np
    >>> img = np.array([[9, 9, 0, 0], [0, 0, 0, 9]], np.uint8)
    >>> _, t = threshold_label_measure(img, 5, min_area=2, properties=("label", "area"))
    >>> t["label"].tolist(), t["area"].tolist()
    ([1], [2.0])
    """
    thr = _check_image_threshold_min_area(image, threshold, min_area)
    conn = parse_connectivity(connectivity)
    props = parse_properties(properties)
    use_int = "intensity_mean" in props
    if use_int and intensity is None:
        raise ValueError("property 'intensity_mean' needs an intensity image; got intensity=None")
    inten, n_channels = _intensity_input(intensity, image.shape, use_int)
    img = image if image.dtype.type in _IMAGE_DTYPES else image.astype(np.float64)
    img = np.ascontiguousarray(img)
    lab, stats, nlab = _label_and_measure(img, thr, bool(above), conn, inten, use_int, props, keep_labels)
    area = stats[0]
    keep = np.flatnonzero(area[1:] >= max(int(min_area), 1)) + 1
    table = table_from_stats(props, stats, n_channels, select=keep)
    if "label" in table:
        table["label"] = np.arange(1, keep.size + 1, dtype=np.int64)
    if not keep_labels:
        return None, table
    if keep.size != nlab:
        mapping = np.zeros(nlab + 1, dtype=np.int32)
        mapping[keep] = np.arange(1, keep.size + 1, dtype=np.int32)
        _remap(lab, mapping)
    return lab, table
