"""Draw detected cells onto a slide thumbnail for visual quality control.

The thumbnail is a downsampled copy of the slide (``downsample`` level-0 pixels per
thumbnail pixel, as returned by ``ZarrSlide.thumbnail``); cell bounding boxes and
centroids, in level-0 pixels, are divided by it. A cell whose box would be smaller than
``min_box_px`` thumbnail pixels is drawn as a dot, so a whole slide of red cells stays
legible.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rgb = np.full((50, 50, 3), 255, np.uint8)
>>> cells = pd.DataFrame({"y": [40.0], "x": [40.0], "cls": ["wbc"],
...                       "bbox_y0": [20], "bbox_x0": [20], "bbox_y1": [60], "bbox_x1": [60]})
>>> out = draw_cells(rgb, cells, downsample=2.0)
>>> tuple(out[10, 20]) == CLASS_COLORS["wbc"]
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from hemoflow.errors import HemoflowError, UnsupportedImageError
from hemoflow.schema import CLASS_COLORS, WBC_TYPE_COLORS, cell_color  # noqa: F401 (re-exported)

__all__ = ["CLASS_COLORS", "WBC_TYPE_COLORS", "cell_color", "draw_cells", "to_png_bytes"]

_DRAW_ORDER = {"rbc": 0, "platelet": 1, "wbc": 2}


def draw_cells(
    rgb: np.ndarray,
    cells: pd.DataFrame,
    *,
    downsample: float,
    by_wbc_type: bool = False,
    width: int = 1,
    min_box_px: float = 3.0,
) -> np.ndarray:
    """Return a copy of ``rgb`` with every cell outlined in its class colour.

    Parameters
    ----------
    rgb : uint8[H, W, 3]
        The thumbnail.
    cells : pandas.DataFrame
        Needs ``y``, ``x`` and ``cls``; ``bbox_*`` columns give boxes (else dots);
        ``wbc_type`` is used when ``by_wbc_type``.
    downsample : float
        Level-0 pixels per thumbnail pixel (> 0).
    by_wbc_type : bool, optional
        Colour classified WBCs by their label instead of the WBC class colour.
    width : int, optional
        Outline width in thumbnail pixels.
    min_box_px : float, optional
        Boxes smaller than this (thumbnail pixels) are drawn as dots.

    Returns
    -------
    uint8[H, W, 3]
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise UnsupportedImageError(
            f"thumbnail must be uint8[H, W, 3], got {rgb.dtype}{list(rgb.shape)}"
        )
    ds = float(downsample)
    if not np.isfinite(ds) or ds <= 0:
        raise HemoflowError(f"downsample must be a positive number, got {downsample!r}")
    missing = [c for c in ("y", "x", "cls") if c not in cells.columns]
    if missing:
        raise HemoflowError(f"cells lack column(s) {missing}")

    img = Image.fromarray(rgb.copy())
    if len(cells) == 0:
        return np.asarray(img)
    draw = ImageDraw.Draw(img)
    cls = cells["cls"].astype(str).to_numpy()
    wt = (
        cells["wbc_type"].fillna("").astype(str).to_numpy()
        if by_wbc_type and "wbc_type" in cells.columns
        else np.full(len(cells), "")
    )
    yc = cells["y"].to_numpy(float) / ds
    xc = cells["x"].to_numpy(float) / ds
    has_box = all(c in cells.columns for c in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"))
    if has_box:
        y0 = cells["bbox_y0"].to_numpy(float) / ds
        x0 = cells["bbox_x0"].to_numpy(float) / ds
        # bbox ends are exclusive (skimage convention): the last pixel is end - 1.
        y1 = (cells["bbox_y1"].to_numpy(float) - 1) / ds
        x1 = (cells["bbox_x1"].to_numpy(float) - 1) / ds
    order = np.argsort([_DRAW_ORDER.get(c, 3) for c in cls], kind="stable")
    for i in order:
        color = cell_color(cls[i], wt[i]) if by_wbc_type else CLASS_COLORS.get(cls[i], (128, 128, 128))
        if has_box and min(y1[i] - y0[i], x1[i] - x0[i]) >= min_box_px:
            draw.rectangle([x0[i], y0[i], x1[i], y1[i]], outline=color, width=width)
        else:
            r = 1.0 if cls[i] != "wbc" else 1.5
            draw.ellipse([xc[i] - r, yc[i] - r, xc[i] + r, yc[i] + r], fill=color)
    return np.asarray(img)


def to_png_bytes(rgb: np.ndarray, *, max_side: int | None = None) -> bytes:
    """Encode an RGB array as PNG, shrunk so its longer side is at most ``max_side``."""
    import io

    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))),
            Image.Resampling.LANCZOS,
        )
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
