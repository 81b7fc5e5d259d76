"""Cell detections as GeoJSON that QuPath imports (File > Import objects).

Each cell becomes one ``Feature``:

- ``geometry``: a ``Polygon`` in level-0 pixel coordinates ``[x, y]`` of the slide:
  a regular polygon of ``n_vertices`` around the centroid with the cell's equivalent
  diameter (``geometry="circle"``, the default), the cell's bounding box
  (``geometry="bbox"``), or a ``Point`` at the centroid (``geometry="point"``).
  Exterior rings are closed and counter-clockwise (RFC 7946 right-hand rule, taken in
  the ``x``-right, ``y``-up sense).
- ``properties``: ``{"objectType": "detection", "classification": {"name", "color"},
  "measurements": {...}}`` as QuPath 0.4+ writes them. WBCs classified by the model get
  the class ``"wbc: <label>"`` (a QuPath derived class); other cells ``"rbc"``,
  ``"wbc"`` or ``"platelet"``. Measurements hold the centroid in level-0 px and µm, area,
  perimeter, equivalent diameter, circularity, solidity, eccentricity, irregular (0/1)
  and classifier confidence, where the table has them.

The centroid is recoverable exactly from every geometry kind: it is stored in the
measurements ``"Centroid X px"`` / ``"Centroid Y px"``, and it is also the vertex mean of a
circle polygon and the position of a point (:func:`geojson_to_cells`).

For slides with millions of cells, :func:`write_geojson` streams features to a file
without building the whole collection in memory.

Examples
--------
>>> import pandas as pd
>>> cells = pd.DataFrame({"y": [10.0], "x": [20.0], "cls": ["rbc"], "equivalent_diameter_um": [2.0]})
>>> fc = cells_to_geojson(cells, mpp=0.5)
>>> fc["features"][0]["geometry"]["type"], fc["features"][0]["properties"]["classification"]["name"]
('Polygon', 'rbc')
>>> geojson_to_cells(fc)[["y", "x"]].to_numpy().tolist()
[[10.0, 20.0]]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from hemoflow.errors import HemoflowError
from hemoflow.report.overlays import cell_color

__all__ = ["cells_to_geojson", "iter_features", "write_geojson", "geojson_to_cells", "class_name"]

Geometry = Literal["circle", "bbox", "point"]

_MEASUREMENTS = {
    "area_um2": "Area µm^2",
    "perimeter_um": "Perimeter µm",
    "equivalent_diameter_um": "Equivalent diameter µm",
    "circularity": "Circularity",
    "solidity": "Solidity",
    "eccentricity": "Eccentricity",
    "irregular": "Irregular",
    "wbc_confidence": "Classifier confidence",
}


def class_name(cls: str, wbc_type: str = "") -> str:
    """QuPath class name of a cell: ``"wbc: <label>"`` for classified WBCs, else ``cls``."""
    return f"wbc: {wbc_type}" if cls == "wbc" and wbc_type else cls


def _check(cells: pd.DataFrame, mpp: float, geometry: str, n_vertices: int) -> float:
    if not isinstance(cells, pd.DataFrame):
        raise HemoflowError(f"cells must be a pandas DataFrame, got {type(cells).__name__}")
    missing = [c for c in ("y", "x", "cls") if c not in cells.columns]
    if missing:
        raise HemoflowError(f"cells lack column(s) {missing}")
    if geometry not in ("circle", "bbox", "point"):
        raise HemoflowError(f"geometry must be 'circle', 'bbox' or 'point', got {geometry!r}")
    if geometry == "bbox":
        need = [c for c in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1") if c not in cells.columns]
        if need:
            raise HemoflowError(f"geometry='bbox' needs column(s) {need}")
    if geometry == "circle" and "equivalent_diameter_um" not in cells.columns and "area_px" not in cells.columns:
        raise HemoflowError("geometry='circle' needs 'equivalent_diameter_um' or 'area_px'")
    if int(n_vertices) < 3:
        raise HemoflowError(f"n_vertices must be at least 3, got {n_vertices!r}")
    m = float(mpp)
    if not math.isfinite(m) or m <= 0:
        raise HemoflowError(f"mpp must be a positive number of µm per level-0 pixel, got {mpp!r}")
    return m


def _finite(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def iter_features(
    cells: pd.DataFrame,
    *,
    mpp: float,
    geometry: Geometry = "circle",
    n_vertices: int = 16,
) -> Iterator[dict[str, Any]]:
    """Yield one GeoJSON ``Feature`` per cell (see the module docstring)."""
    mpp = _check(cells, mpp, geometry, n_vertices)
    n = len(cells)
    y = cells["y"].to_numpy(float)
    x = cells["x"].to_numpy(float)
    cls = cells["cls"].astype(str).to_numpy()
    wt = cells["wbc_type"].fillna("").astype(str).to_numpy() if "wbc_type" in cells.columns else np.full(n, "")
    wt = np.where(cls == "wbc", wt, "")
    if geometry == "circle":
        if "equivalent_diameter_um" in cells.columns:
            radius = cells["equivalent_diameter_um"].to_numpy(float) / (2.0 * mpp)
        else:
            radius = np.sqrt(cells["area_px"].to_numpy(float) / np.pi)
        radius = np.where(np.isfinite(radius) & (radius > 0), radius, 0.5)
        angles = np.linspace(0.0, 2.0 * np.pi, int(n_vertices), endpoint=False)
        unit = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # counter-clockwise
    elif geometry == "bbox":
        by0, bx0, by1, bx1 = (cells[c].to_numpy(float) for c in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"))
    meas_cols = [c for c in _MEASUREMENTS if c in cells.columns]
    meas_vals = {c: cells[c].to_numpy() for c in meas_cols}

    for i in range(n):
        if geometry == "point":
            geom: dict[str, Any] = {"type": "Point", "coordinates": [float(x[i]), float(y[i])]}
        elif geometry == "bbox":
            ring = [
                [bx0[i], by0[i]],
                [bx1[i], by0[i]],
                [bx1[i], by1[i]],
                [bx0[i], by1[i]],
                [bx0[i], by0[i]],
            ]
            geom = {"type": "Polygon", "coordinates": [[[float(a), float(b)] for a, b in ring]]}
        else:
            pts = unit * radius[i] + (x[i], y[i])
            ring = [[float(a), float(b)] for a, b in pts]
            ring.append(ring[0])
            geom = {"type": "Polygon", "coordinates": [ring]}
        measurements: dict[str, float] = {
            "Centroid X px": float(x[i]),
            "Centroid Y px": float(y[i]),
            "Centroid X µm": float(x[i] * mpp),
            "Centroid Y µm": float(y[i] * mpp),
        }
        for c in meas_cols:
            v = _finite(meas_vals[c][i]) if meas_vals[c][i] is not None else None
            if v is not None:
                measurements[_MEASUREMENTS[c]] = v
        yield {
            "type": "Feature",
            "geometry": geom,
            "properties": {
                "objectType": "detection",
                "classification": {
                    "name": class_name(cls[i], wt[i]),
                    "color": list(cell_color(cls[i], wt[i])),
                },
                "measurements": measurements,
            },
        }


def cells_to_geojson(
    cells: pd.DataFrame,
    *,
    mpp: float,
    geometry: Geometry = "circle",
    n_vertices: int = 16,
) -> dict[str, Any]:
    """A GeoJSON ``FeatureCollection`` of the cells, for QuPath.

    Parameters
    ----------
    cells : pandas.DataFrame
        Cell table with ``y``, ``x`` (level-0 px) and ``cls``; ``wbc_type``,
        ``bbox_*``, ``equivalent_diameter_um`` / ``area_px`` and measurement columns are
        used when present.
    mpp : float
        Level-0 microns per pixel (converts µm sizes to pixel geometry).
    geometry : {"circle", "bbox", "point"}, optional
    n_vertices : int, optional
        Vertices of a circle polygon.

    Returns
    -------
    dict
        ``{"type": "FeatureCollection", "features": [...]}``.
    """
    return {
        "type": "FeatureCollection",
        "features": list(iter_features(cells, mpp=mpp, geometry=geometry, n_vertices=n_vertices)),
    }


def write_geojson(
    cells: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    mpp: float,
    geometry: Geometry = "circle",
    n_vertices: int = 16,
) -> Path:
    """Stream the cells' FeatureCollection to ``path`` (one feature per line); returns the path."""
    path = Path(path)
    features = iter_features(cells, mpp=mpp, geometry=geometry, n_vertices=n_vertices)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        for i, feat in enumerate(features):
            if i:
                fh.write(",\n")
            fh.write(json.dumps(feat, ensure_ascii=False))
        fh.write("\n]}\n")
    return path


def _centroid(geom: Mapping[str, Any]) -> tuple[float, float]:
    if geom["type"] == "Point":
        x, y = geom["coordinates"][:2]
        return float(x), float(y)
    ring = np.asarray(geom["coordinates"][0], dtype=float)[:-1]
    return float(ring[:, 0].mean()), float(ring[:, 1].mean())


def geojson_to_cells(collection: Mapping[str, Any] | str | os.PathLike[str]) -> pd.DataFrame:
    """Read detections back: a table with ``y``, ``x`` (level-0 px), ``cls`` and ``wbc_type``.

    The centroid is taken from the ``"Centroid X/Y px"`` measurements when present,
    otherwise from the geometry (a point's position or the vertex mean of the exterior
    ring, exact for circle polygons and the box centre for boxes).

    Parameters
    ----------
    collection : dict or path
        A FeatureCollection, or a file holding one.
    """
    if not isinstance(collection, Mapping):
        with open(collection, encoding="utf-8") as fh:
            collection = json.load(fh)
    if collection.get("type") != "FeatureCollection":
        raise HemoflowError(f"expected a GeoJSON FeatureCollection, got type {collection.get('type')!r}")
    rows = []
    for feat in collection.get("features", []):
        props = feat.get("properties") or {}
        meas = props.get("measurements") or {}
        if isinstance(meas, list):  # QuPath < 0.4 writes [{"name", "value"}, ...]
            meas = {m.get("name"): m.get("value") for m in meas}
        if "Centroid X px" in meas and "Centroid Y px" in meas:
            x, y = float(meas["Centroid X px"]), float(meas["Centroid Y px"])
        else:
            x, y = _centroid(feat["geometry"])
        name = (props.get("classification") or {}).get("name", "")
        cls, _, wt = name.partition(": ")
        rows.append({"y": y, "x": x, "cls": cls, "wbc_type": wt})
    return pd.DataFrame(rows, columns=["y", "x", "cls", "wbc_type"])
