"""Pixel size of a single-cell image from its own red cells (or, failing those, its white cell)."""

from __future__ import annotations

import numpy as np
import pytest

from hemoflow.classify.scale import RBC_DIAMETER_UM, WBC_DIAMETER_UM, estimate_cell_mpp


def _cell_image(side: int, rbc_d: float, wbc_d: float, rbc_centres, seed: int = 0) -> np.ndarray:
    """Pale background, pink red cells of diameter ``rbc_d`` (some cut by the border, some
    touching each other) and a purple white cell of diameter ``wbc_d`` in the middle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    img = np.empty((side, side, 3), np.float64)
    img[:] = (236, 226, 214)
    for cy, cx in rbc_centres:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (rbc_d / 2) ** 2] = (205, 140, 150)
    c = side / 2
    img[(yy - c) ** 2 + (xx - c) ** 2 < (wbc_d / 2) ** 2] = (175, 150, 205)  # cytoplasm
    img[(yy - c) ** 2 + (xx - c) ** 2 < (wbc_d / 3) ** 2] = (95, 45, 150)  # nucleus
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("rbc_d", [40.0, 75.0, 110.0])
def test_red_cells_are_the_ruler(rbc_d):
    side = int(rbc_d * 4)
    r = rbc_d / 2
    centres = [(r * 0.6, r * 0.6), (r * 0.6, side - r * 1.1), (side - r, r), (side - r, r + 2 * r - 1),
               (side - r * 0.7, side - r * 0.7)]
    img = _cell_image(side, rbc_d, rbc_d * 1.5, centres)
    mpp, ruler = estimate_cell_mpp(img)
    assert ruler == "rbc"
    assert mpp == pytest.approx(RBC_DIAMETER_UM / rbc_d, rel=0.12)


def test_without_red_cells_the_white_cell_is_the_ruler():
    """A uniformly stained white cell alone. (A pale cytoplasm ring around a dark nucleus
    can pass for a red cell: see the module's limits.)"""
    yy, xx = np.mgrid[:300, :300]
    img = np.full((300, 300, 3), 236, np.uint8)
    img[(yy - 150) ** 2 + (xx - 150) ** 2 < 80 ** 2] = (95, 45, 150)
    mpp, ruler = estimate_cell_mpp(img)
    assert ruler == "wbc"
    assert mpp == pytest.approx(WBC_DIAMETER_UM / 160.0, rel=0.15)


@pytest.mark.parametrize("kind", ["white", "flat_grey", "black"])
def test_blank_images_have_no_ruler(kind):
    value = {"white": 250, "flat_grey": 128, "black": 0}[kind]
    mpp, ruler = estimate_cell_mpp(np.full((200, 200, 3), value, np.uint8))
    assert ruler == "none" and mpp > 0


def test_estimate_does_not_depend_on_the_image_size_beyond_its_scale():
    """The same cells drawn twice as large give half the pixel size."""
    small = _cell_image(200, 50.0, 75.0, [(20, 20), (180, 30), (170, 170)])
    large = _cell_image(400, 100.0, 150.0, [(40, 40), (360, 60), (340, 340)])
    a, _ = estimate_cell_mpp(small)
    b, _ = estimate_cell_mpp(large)
    assert a / b == pytest.approx(2.0, rel=0.1)
