"""Per-cell features and the regular/irregular rule.

Measurements come from :func:`hemoflow.kernels.regionprops_table` (Numba) on a label
image; this module converts them to the µm-based cell table of
:data:`hemoflow.schema.CELL_COLUMNS`.

Irregularity rule
-----------------
A cell is **irregular** when any of these holds (defaults in
:class:`~hemoflow.stages.SegmentParams`):

* ``solidity < 0.90`` — concave outline (spicules of echinocytes/acanthocytes, bites,
  fragments/schistocytes);
* ``circularity < 0.75`` — ragged or elongated outline (``4*pi*A/P^2``, 1 for a disc);
* ``eccentricity > 0.70`` — elongated cell (elliptocytes, tear-drop cells, sickle cells;
  0.7 is a minor/major axis ratio of about 0.71).

A round disc (the normal discocyte seen from above) passes all three. The same rule is
applied to every class; it is meant for RBCs (the morphology the aggregate reports) and
for WBCs and platelets it only describes the outline.
"""

from __future__ import annotations

import numpy as np

from hemoflow.kernels import circularity as _circularity
from hemoflow.kernels import regionprops_table
from hemoflow.kernels._labelops import lut_gather
from hemoflow.schema import CELL_COLUMNS

__all__ = ["PROPERTIES", "irregular_rule", "measure_cells", "empty_table", "rbc_count"]

PROPERTIES = (
    "label",
    "area",
    "centroid",
    "bbox",
    "perimeter",
    "eccentricity",
    "solidity",
)


def irregular_rule(
    solidity,
    circularity,
    eccentricity,
    *,
    min_solidity: float = 0.90,
    min_circularity: float = 0.75,
    max_eccentricity: float = 0.70,
) -> np.ndarray:
    """Vectorised irregularity rule (see module docstring).

    >>> irregular_rule([0.98, 0.8], [0.95, 0.9], [0.2, 0.2]).tolist()
    [False, True]
    """
    s = np.asarray(solidity, dtype=np.float64)
    c = np.asarray(circularity, dtype=np.float64)
    e = np.asarray(eccentricity, dtype=np.float64)
    return (s < min_solidity) | (c < min_circularity) | (e > max_eccentricity)


def rbc_count(table) -> int:
    """The red-cell count of a cell table: the rounded sum of the RBC rows'
    ``count_weight`` (the number of RBC rows when the column is absent)."""
    cls = np.asarray(table["cls"])
    is_rbc = cls == "rbc"
    if "count_weight" not in table:
        return int(is_rbc.sum())
    w = np.asarray(table["count_weight"], np.float64)[is_rbc]
    return int(np.rint(np.nansum(w)))


def empty_table() -> dict[str, np.ndarray]:
    """A cell table with zero rows and the dtypes of :data:`CELL_COLUMNS`."""
    out = {}
    for name, kind in CELL_COLUMNS.items():
        out[name] = np.zeros(0, dtype="U8" if kind == "U" else kind)
    return out


def _scaled(v, scale, rounding) -> np.ndarray:
    """Working-pixel box edges in level-0 pixels: ``v * scale``, exact for an integer
    scale, else rounded by ``rounding`` (np.floor for starts, np.ceil for ends; a product
    within 1e-9 of an integer is that integer)."""
    v = np.asarray(v, np.int64)
    if float(scale) == int(scale):
        return v * int(scale)
    x = v * float(scale)
    near = np.rint(x)
    return np.where(np.abs(x - near) < 1e-9, near, rounding(x)).astype(np.int64)


def measure_cells(
    labels: np.ndarray,
    classes: np.ndarray,
    *,
    mpp: float,
    scale: float = 1,
    min_solidity: float = 0.90,
    min_circularity: float = 0.75,
    max_eccentricity: float = 0.70,
    weights: np.ndarray | None = None,
    known: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Measure every labelled cell and return a cell table (rows in label order).

    Parameters
    ----------
    labels : int32[H, W]
        Cells numbered 1..n (0 = background), in working-scale pixels.
    classes : array of str, length n
        Class of label ``i + 1``.
    mpp : float
        Microns per level-0 pixel.
    scale : int or float
        Working-scale pixel = ``scale`` level-0 pixels; coordinates, areas and lengths are
        reported in level-0 units (a working pixel's centre is at ``scale*i + (scale-1)/2``).
        A non-integer scale (a ratio ``p/q``, see :func:`hemoflow.stages.working_ratio`)
        rounds boxes outwards to whole level-0 pixels.
    weights : float array, length n, optional
        ``count_weight`` of label ``i + 1`` (default 1).
    known : dict, optional
        :func:`hemoflow.kernels.regionprops_table` columns of :data:`PROPERTIES` already
        measured for some labels (``known["label"]``), each on exactly the pixel set it
        has in ``labels`` (e.g. red cells that are whole watershed basins, measured for the
        count model); only the other labels are measured again. The properties depend only
        on a region's own pixels, so the table is the same.

    >>> lab = np.zeros((9, 9), np.int32); lab[2:7, 2:7] = 1
    >>> t = measure_cells(lab, np.array(["rbc"]), mpp=0.5)
    >>> float(t["area_um2"][0]), float(t["y"][0])
    (6.25, 4.0)
    """
    classes = np.asarray(classes)
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return empty_table()
    labels = np.ascontiguousarray(labels, np.int32)
    if known is not None and len(known["label"]):
        have = np.asarray(known["label"], np.int64)
        if have.min() < 1 or have.max() > n:
            raise ValueError(f"known labels must lie in 1..{n}")
        lut = np.arange(n + 1, dtype=np.int32)
        lut[have] = 0
        props = regionprops_table(lut_gather(lut, labels), properties=PROPERTIES)
        props = {k: np.concatenate([np.asarray(v), np.asarray(known[k], np.asarray(v).dtype)]) for k, v in props.items()}
    else:
        props = regionprops_table(labels, properties=PROPERTIES)
    order = np.argsort(props["label"], kind="stable")
    p = {k: np.asarray(v)[order] for k, v in props.items()}
    s = float(scale)
    off = (s - 1.0) / 2.0
    area_px = np.asarray(p["area"], np.float64) * s * s
    perim_px = np.asarray(p["perimeter"], np.float64) * s
    circ = np.asarray(_circularity(np.asarray(p["area"], np.float64), np.asarray(p["perimeter"], np.float64)), np.float64)
    solidity = np.asarray(p["solidity"], np.float64)
    ecc = np.asarray(p["eccentricity"], np.float64)
    table = {
        "y": np.asarray(p["centroid-0"], np.float64) * s + off,
        "x": np.asarray(p["centroid-1"], np.float64) * s + off,
        "cls": classes[np.asarray(p["label"], np.int64) - 1].astype("U8"),
        "area_px": np.round(area_px).astype(np.int64),
        "area_um2": area_px * mpp * mpp,
        "perimeter_um": perim_px * mpp,
        "equivalent_diameter_um": np.sqrt(4.0 * area_px / np.pi) * mpp,
        "circularity": circ,
        "solidity": solidity,
        "eccentricity": ecc,
        "irregular": irregular_rule(
            solidity,
            circ,
            ecc,
            min_solidity=min_solidity,
            min_circularity=min_circularity,
            max_eccentricity=max_eccentricity,
        ),
        "bbox_y0": _scaled(p["bbox-0"], scale, np.floor),
        "bbox_x0": _scaled(p["bbox-1"], scale, np.floor),
        "bbox_y1": _scaled(p["bbox-2"], scale, np.ceil),
        "bbox_x1": _scaled(p["bbox-3"], scale, np.ceil),
        "count_weight": (np.ones(len(order)) if weights is None
                         else np.asarray(weights, np.float64)[np.asarray(p["label"], np.int64) - 1]),
    }
    return table
