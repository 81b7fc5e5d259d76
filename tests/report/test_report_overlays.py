"""QC overlays drawn onto thumbnails."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hemoflow.errors import HemoflowError, UnsupportedImageError
from hemoflow.report.overlays import CLASS_COLORS, WBC_TYPE_COLORS, draw_cells, to_png_bytes


def _cells():
    return pd.DataFrame({
        "y": [40.0, 10.0], "x": [40.0, 80.0], "cls": ["wbc", "platelet"], "wbc_type": ["blast", ""],
        "bbox_y0": [20, 8], "bbox_x0": [20, 78], "bbox_y1": [61, 13], "bbox_x1": [61, 83],
    })


def test_boxes_scaled_by_downsample_and_coloured_by_class():
    rgb = np.full((50, 60, 3), 255, np.uint8)
    out = draw_cells(rgb, _cells(), downsample=2.0)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (rgb == 255).all()  # input untouched
    wbc = CLASS_COLORS["wbc"]
    # Box (20..60) / 2 -> 10..30 in the thumbnail: outline pixels, inside left alone.
    assert tuple(out[10, 20]) == wbc and tuple(out[30, 30]) == wbc and tuple(out[20, 10]) == wbc
    assert tuple(out[20, 20]) == (255, 255, 255)
    # The platelet box is 2.5 px wide in the thumbnail: drawn as a dot at its centroid.
    assert tuple(out[5, 40]) == CLASS_COLORS["platelet"]


def test_colour_by_wbc_type():
    out = draw_cells(np.full((50, 60, 3), 255, np.uint8), _cells(), downsample=2.0, by_wbc_type=True)
    assert tuple(out[10, 20]) == WBC_TYPE_COLORS["blast"]


def test_without_boxes_draws_dots():
    cells = _cells().drop(columns=["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"])
    out = draw_cells(np.zeros((50, 60, 3), np.uint8), cells, downsample=2.0)
    assert tuple(out[20, 20]) == CLASS_COLORS["wbc"]


def test_png_is_shrunk():
    from io import BytesIO

    from PIL import Image

    png = to_png_bytes(np.zeros((100, 300, 3), np.uint8), max_side=150)
    assert Image.open(BytesIO(png)).size == (150, 50)


def test_errors():
    with pytest.raises(UnsupportedImageError):
        draw_cells(np.zeros((5, 5), np.uint8), _cells(), downsample=1)
    with pytest.raises(HemoflowError, match="downsample"):
        draw_cells(np.zeros((5, 5, 3), np.uint8), _cells(), downsample=0)
