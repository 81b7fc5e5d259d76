"""Detected cells as an OME-Zarr (NGFF 0.5) label image next to the slide's pyramid.

:func:`write_points_labels` writes ``<image>/labels/<name>`` (``cells`` by default): a
multiscale ``uint32`` label image with one disc (or box) per cell, and registers it in
``<image>/labels`` so viewers (napari with ome-zarr, ``ome_zarr.reader.Reader``) show it
over the slide.

Layout (NGFF 0.5, Zarr v3)::

    image.zarr/                  {"ome": {"version": "0.5", "multiscales": [...]}}   (the slide)
      labels/                    {"ome": {"version": "0.5", "labels": ["cells"]}}
        cells/                   {"ome": {"version": "0.5", "multiscales": [...],
                                          "image-label": {"colors": [...], "properties": [...],
                                                          "source": {"image": "../../"}}}}
          0/ 1/ ...              uint32 (y, x), level i downsampled 2**i from level 0

Memory: the label image is written one chunk at a time (and each coarser level from
the previous one, one block at a time), so memory is bounded by the chunk size and the
cell table, never by the slide. A whole-slide label image at level-0 resolution is large
on disk (4 bytes per pixel before compression); ``downsample`` writes the finest label
level at a coarser resolution (e.g. 4 level-0 pixels per label pixel), which is enough to
see every cell and is scaled to the slide in physical units by its coordinate
transformation.

Label values:

- ``values="instance"`` (default): cell ``i`` of the table (0-based position) is label
  ``i + 1``; ``image-label`` lists a colour (its class colour) and properties (``class``,
  ``wbc_type``) per label while there are at most ``max_label_metadata`` cells (the list
  lives in the group's JSON attributes), otherwise none.
- ``values="class"``: 1 = rbc, 2 = wbc, 3 = platelet, with one colour per class.

Cells are drawn red cells first, then platelets, then white cells, so a small cell lying
on a red cell stays visible.

The label axes are ``(y, x)`` in micrometres: a label image has no channel axis; viewers
align it with the slide by its physical scale.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Literal

import numpy as np
import pandas as pd
import zarr

from hemoflow.errors import HemoflowError
from hemoflow.schema import CLASS_COLORS, cell_color

__all__ = ["write_points_labels", "CLASS_VALUES"]

logger = logging.getLogger(__name__)

#: Label values of ``values="class"``.
CLASS_VALUES: dict[str, int] = {"rbc": 1, "wbc": 2, "platelet": 3}
_ORDER = {"rbc": 0, "platelet": 1, "wbc": 2}
NGFF_VERSION = "0.5"


def _parent_levels(group: zarr.Group) -> int | None:
    try:
        return len(group.attrs.asdict()["ome"]["multiscales"][0]["datasets"])
    except (KeyError, IndexError, TypeError):
        return None


def _parent_mpp(group: zarr.Group) -> float | None:
    try:
        ms = group.attrs.asdict()["ome"]["multiscales"][0]
        axes = [a["name"] for a in ms["axes"]]
        for t in ms["datasets"][0]["coordinateTransformations"]:
            if t.get("type") == "scale":
                return float(t["scale"][axes.index("y")])
    except (KeyError, IndexError, ValueError, TypeError):
        return None
    return None


def _rasterise(
    out: np.ndarray,
    y0: int,
    x0: int,
    yc: np.ndarray,
    xc: np.ndarray,
    r: np.ndarray,
    values: np.ndarray,
    boxes: np.ndarray | None,
) -> None:
    """Draw cells into ``out`` (a chunk whose first pixel is label pixel ``(y0, x0)``)."""
    h, w = out.shape
    for i in range(values.size):
        if boxes is not None:
            by0, bx0, by1, bx1 = boxes[i]
            a0, a1 = max(by0 - y0, 0), min(by1 - y0, h)
            b0, b1 = max(bx0 - x0, 0), min(bx1 - x0, w)
            if a0 < a1 and b0 < b1:
                out[a0:a1, b0:b1] = values[i]
            continue
        cy, cx, rr = yc[i] - y0, xc[i] - x0, r[i]
        a0, a1 = max(math.floor(cy - rr), 0), min(math.ceil(cy + rr) + 1, h)
        b0, b1 = max(math.floor(cx - rr), 0), min(math.ceil(cx + rr) + 1, w)
        if a0 >= a1 or b0 >= b1:
            continue
        yy = np.arange(a0, a1)[:, None] - cy
        xx = np.arange(b0, b1)[None, :] - cx
        disc = yy * yy + xx * xx <= rr * rr
        sub = out[a0:a1, b0:b1]
        sub[disc] = values[i]
        # A cell smaller than a label pixel still marks the pixel holding its centroid.
        iy, ix = int(round(cy)), int(round(cx))
        if 0 <= iy < h and 0 <= ix < w and not disc.any():
            out[iy, ix] = values[i]


def write_points_labels(
    image: str | os.PathLike[str] | zarr.Group,
    cells: pd.DataFrame,
    shape: tuple[int, int],
    *,
    mpp: float | None = None,
    downsample: int = 1,
    name: str = "cells",
    values: Literal["instance", "class"] = "instance",
    shape_kind: Literal["disc", "bbox"] = "disc",
    chunk: int = 1024,
    n_levels: int | None = None,
    max_label_metadata: int = 20_000,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the cells as a multiscale NGFF 0.5 label image ``labels/<name>`` of ``image``.

    Parameters
    ----------
    image : path, URL or zarr.Group
        The slide's OME-Zarr image group (its pyramid root). Opened in append mode; the
        image's own arrays are not touched.
    cells : pandas.DataFrame
        Cell table: ``y``, ``x``, ``cls`` (level-0 px); ``equivalent_diameter_um`` gives
        disc sizes (else ``area_px``; else one pixel); ``bbox_*`` for ``shape_kind="bbox"``.
    shape : (int, int)
        Level-0 ``(height, width)`` of the slide.
    mpp : float, optional
        Level-0 µm per pixel; read from the image's ``multiscales`` when omitted.
    downsample : int, optional
        Level-0 pixels per label pixel at the finest label level (>= 1).
    name : str, optional
        Label image name under ``labels/``.
    values : {"instance", "class"}, optional
    shape_kind : {"disc", "bbox"}, optional
        Disc of the equivalent diameter around the centroid, or the bounding box.
    chunk : int, optional
        Chunk side in label pixels; the unit of work and of memory.
    n_levels : int, optional
        Pyramid levels. By default as many as the image has (NGFF validators such as
        ``ome-zarr-models`` require the label and its image to have the same number of
        levels); for an image without multiscales metadata, halve until the label
        image fits one chunk (at most 10 levels).
    max_label_metadata : int, optional
        Largest cell count for which per-instance colours/properties are written.
    storage_options : dict, optional
        Passed to ``zarr.open_group`` for remote URLs.

    Returns
    -------
    dict
        The label group's ``ome`` attributes as written.
    """
    _check_arguments(cells, shape, downsample, values, shape_kind, chunk)
    ds, chunk = int(downsample), int(chunk)
    group = _open_image(image, storage_options)
    mpp = _label_mpp(group, mpp)

    H, W = (int(s) for s in shape)
    lh, lw = -(-H // ds), -(-W // ds)
    n_levels = _level_count(group, n_levels, lh, lw, chunk)
    cls = cells["cls"].astype(str).to_numpy()
    geom = _cell_geometry(cells, cls, values, shape_kind, ds, mpp)

    target = _create_label_group(group, name)
    shapes = _level_shapes(lh, lw, n_levels)
    arrays = _create_level_arrays(target, shapes, chunk)
    _write_finest(arrays[0], geom, lh, lw, chunk)
    _write_coarser(arrays, shapes, chunk)
    ome = {
        "version": NGFF_VERSION,
        "multiscales": [{"name": name, "axes": _AXES, "datasets": _datasets(mpp, ds, n_levels)}],
        "image-label": _image_label(cells, cls, values, name, max_label_metadata),
    }
    target.attrs["ome"] = ome
    return ome


_AXES = [
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]


def _check_arguments(cells, shape, downsample, values, shape_kind, chunk) -> None:
    if not isinstance(cells, pd.DataFrame):
        raise HemoflowError(f"cells must be a pandas DataFrame, got {type(cells).__name__}")
    missing = [c for c in ("y", "x", "cls") if c not in cells.columns]
    if missing:
        raise HemoflowError(f"cells lack column(s) {missing}")
    if len(shape) != 2 or min(int(s) for s in shape) < 1:
        raise HemoflowError(f"shape must be a positive (height, width), got {shape!r}")
    ds = int(downsample)
    if ds < 1 or ds != downsample:
        raise HemoflowError(f"downsample must be a positive integer, got {downsample!r}")
    if values not in ("instance", "class"):
        raise HemoflowError(f"values must be 'instance' or 'class', got {values!r}")
    if shape_kind not in ("disc", "bbox"):
        raise HemoflowError(f"shape_kind must be 'disc' or 'bbox', got {shape_kind!r}")
    if int(chunk) < 16:
        raise HemoflowError(f"chunk must be at least 16, got {chunk!r}")
    if len(cells) >= 2**32 - 1:
        raise HemoflowError("too many cells for uint32 labels")


def _label_mpp(group: zarr.Group, mpp: float | None) -> float:
    """Level-0 µm per pixel: given, else from the image's multiscales."""
    if mpp is None:
        mpp = _parent_mpp(group)
        if mpp is None:
            raise HemoflowError("mpp not given and not found in the image's multiscales")
    mpp = float(mpp)
    if not math.isfinite(mpp) or mpp <= 0:
        raise HemoflowError(f"mpp must be positive, got {mpp!r}")
    return mpp


def _create_label_group(group: zarr.Group, name: str) -> zarr.Group:
    """List ``name`` in ``labels/``'s ``ome.labels`` and create (or replace) ``labels/<name>``."""
    labels_grp = group.require_group("labels")
    existing = labels_grp.attrs.asdict().get("ome", {}).get("labels", [])
    labels_grp.attrs["ome"] = {
        "version": NGFF_VERSION,
        "labels": list(dict.fromkeys([*existing, name])),
    }
    return labels_grp.create_group(name, overwrite=True)


def _level_shapes(lh: int, lw: int, n_levels: int) -> list[tuple[int, int]]:
    """``(height, width)`` of each label level, each the previous one halved, rounded up."""
    shapes = [(lh, lw)]
    for _ in range(1, n_levels):
        ph, pw = shapes[-1]
        shapes.append((-(-ph // 2), -(-pw // 2)))
    return shapes


def _create_level_arrays(target: zarr.Group, shapes: list[tuple[int, int]], chunk: int) -> list:
    """One empty ``uint32`` array per label level, named ``"0"``, ``"1"``, ..."""
    return [
        target.create_array(
            str(i), shape=s, chunks=(min(chunk, s[0]), min(chunk, s[1])), dtype="uint32",
            fill_value=0, dimension_names=("y", "x"),
        )
        for i, s in enumerate(shapes)
    ]


def _open_image(image, storage_options) -> zarr.Group:
    if isinstance(image, zarr.Group):
        return image
    try:
        return zarr.open_group(
            os.fspath(image) if isinstance(image, os.PathLike) else image,
            mode="a",
            zarr_format=3,
            storage_options=storage_options,
        )
    except Exception as exc:  # noqa: BLE001 - report any store failure the same way
        raise HemoflowError(f"cannot open OME-Zarr image {image!r}: {exc}") from exc


def _level_count(group: zarr.Group, n_levels: int | None, lh: int, lw: int, chunk: int) -> int:
    """Pyramid levels: given, else the image's, else halvings until one chunk holds the
    label image (at most 10)."""
    if n_levels is None:
        n_levels = _parent_levels(group)
    if n_levels is None:
        n_levels = 1
        while max(lh, lw) > chunk * 2 ** (n_levels - 1) and n_levels < 10:
            n_levels += 1
    n_levels = int(n_levels)
    if n_levels < 1:
        raise HemoflowError(f"n_levels must be at least 1, got {n_levels!r}")
    return n_levels


def _cell_geometry(cells: pd.DataFrame, cls: np.ndarray, values: str, shape_kind: str, ds: int,
                   mpp: float) -> dict[str, Any]:
    """Per-cell geometry in label pixels: centres, radii or boxes, the rows each chunk
    may need (``reach_lo``/``reach_hi``), label values, and ``keep``: the drawn rows in
    class order."""
    order = np.argsort([_ORDER.get(c, 3) for c in cls], kind="stable")
    label_values = (
        np.arange(1, len(cells) + 1, dtype=np.uint32)
        if values == "instance"
        else np.array([CLASS_VALUES.get(c, 0) for c in cls], dtype=np.uint32)
    )
    yc = (cells["y"].to_numpy(float) + 0.5) / ds - 0.5
    xc = (cells["x"].to_numpy(float) + 0.5) / ds - 0.5
    if "equivalent_diameter_um" in cells.columns:
        r = cells["equivalent_diameter_um"].to_numpy(float) / (2.0 * mpp * ds)
    elif "area_px" in cells.columns:
        r = np.sqrt(cells["area_px"].to_numpy(float) / np.pi) / ds
    else:
        r = np.zeros(len(cells))
    r = np.where(np.isfinite(r), np.maximum(r, 0.0), 0.0)
    boxes = None
    if shape_kind == "bbox":
        need = [c for c in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1") if c not in cells.columns]
        if need:
            raise HemoflowError(f"shape_kind='bbox' needs column(s) {need}")
        b = cells[["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]].to_numpy(np.int64)
        boxes = np.stack([b[:, 0] // ds, b[:, 1] // ds, -(-b[:, 2] // ds), -(-b[:, 3] // ds)], axis=1)
        reach_lo = np.stack([boxes[:, 0], boxes[:, 1]], 1).astype(float)
        reach_hi = np.stack([boxes[:, 2], boxes[:, 3]], 1).astype(float)
    else:
        reach_lo = np.stack([yc - r - 1, xc - r - 1], 1)
        reach_hi = np.stack([yc + r + 1, xc + r + 1], 1)
    return {"yc": yc, "xc": xc, "r": r, "boxes": boxes, "values": label_values, "reach_lo": reach_lo,
            "reach_hi": reach_hi, "keep": order[label_values[order] > 0]}


def _write_finest(arr, g: dict[str, Any], lh: int, lw: int, chunk: int) -> None:
    """Level 0: one chunk at a time, only the cells that reach into it."""
    keep, reach_lo, reach_hi, boxes = g["keep"], g["reach_lo"], g["reach_hi"], g["boxes"]
    for cy0 in range(0, lh, chunk):
        cy1 = min(cy0 + chunk, lh)
        in_rows = keep[(reach_hi[keep, 0] >= cy0) & (reach_lo[keep, 0] < cy1)]
        for cx0 in range(0, lw, chunk):
            cx1 = min(cx0 + chunk, lw)
            sel = in_rows[(reach_hi[in_rows, 1] >= cx0) & (reach_lo[in_rows, 1] < cx1)]
            if sel.size == 0:
                continue
            block = np.zeros((cy1 - cy0, cx1 - cx0), dtype=np.uint32)
            _rasterise(
                block, cy0, cx0, g["yc"][sel], g["xc"][sel], g["r"][sel], g["values"][sel],
                None if boxes is None else boxes[sel],
            )
            arr[cy0:cy1, cx0:cx1] = block


def _write_coarser(arrays: list, shapes: list[tuple[int, int]], chunk: int) -> None:
    """Coarser levels: nearest-neighbour halving of the level above, block by block."""
    for lvl in range(1, len(arrays)):
        src, dst = arrays[lvl - 1], arrays[lvl]
        dh, dw = shapes[lvl]
        for y0 in range(0, dh, chunk):
            for x0 in range(0, dw, chunk):
                y1, x1 = min(y0 + chunk, dh), min(x0 + chunk, dw)
                dst[y0:y1, x0:x1] = src[2 * y0 : 2 * y1 : 2, 2 * x0 : 2 * x1 : 2]


def _datasets(mpp: float, ds: int, n_levels: int) -> list[dict[str, Any]]:
    return [
        {
            "path": str(i),
            "coordinateTransformations": [
                {"type": "scale", "scale": [mpp * ds * 2**i, mpp * ds * 2**i]},
                # Pixel centres: label pixel 0 covers level-0 pixels [0, ds*2**i).
                {"type": "translation", "translation": [mpp * (ds * 2**i - 1) / 2] * 2},
            ],
        }
        for i in range(n_levels)
    ]


def _image_label(cells: pd.DataFrame, cls: np.ndarray, values: str, name: str,
                 max_label_metadata: int) -> dict[str, Any]:
    """The ``image-label`` attributes: colours and properties per class, or per instance
    while there are at most ``max_label_metadata`` cells."""
    image_label: dict[str, Any] = {"source": {"image": "../../"}}
    if values == "class":
        image_label["colors"] = [
            {"label-value": v, "rgba": [*CLASS_COLORS[c], 255]} for c, v in CLASS_VALUES.items()
        ]
        image_label["properties"] = [{"label-value": v, "class": c} for c, v in CLASS_VALUES.items()]
    elif len(cells) <= max_label_metadata:
        wt = (
            cells["wbc_type"].fillna("").astype(str).to_numpy()
            if "wbc_type" in cells.columns
            else np.full(len(cells), "")
        )
        wt = np.where(cls == "wbc", wt, "")
        image_label["colors"] = [
            {"label-value": i + 1, "rgba": [*cell_color(cls[i], wt[i]), 255]} for i in range(len(cells))
        ]
        image_label["properties"] = [
            {"label-value": i + 1, "class": str(cls[i]), "wbc_type": str(wt[i])} for i in range(len(cells))
        ]
    else:
        logger.info(
            "label image %s: %d cells exceed max_label_metadata=%d; no per-label colours written",
            name, len(cells), max_label_metadata,
        )
    return image_label
