"""Pixel size of a single-cell image from its own red cells (or, failing those, its white cell)."""

from __future__ import annotations

import numpy as np
import pytest

from hemoflow.classify.scale import RBC_DIAMETER_UM, WBC_DIAMETER_UM, estimate_cell_mpp, pool_estimates


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


def test_pooling_gives_one_pixel_size_per_image_size():
    """Same-size images share the median of their red-cell estimates; a group too small
    to pool, and blank images, keep their own."""
    mpps = [0.08, 0.09, 0.085, 0.05, 0.06, 0.07, 0.08, 0.2, 0.3, 0.11, 0.12]
    rulers = ["rbc", "rbc", "rbc", "wbc", "wbc", "wbc", "rbc", "none", "wbc", "rbc", "rbc"]
    shapes = [(250, 250)] * 9 + [(100, 100)] * 2
    out, src = pool_estimates(mpps, rulers, shapes, min_images=8)
    assert src[:7] == ["pooled"] * 7 and src[7] == "none" and src[8] == "pooled"
    assert [*out[:7], out[8]] == pytest.approx([0.0825] * 8)  # median of the four red-cell estimates
    assert out[7] == 0.2 and list(out[9:]) == [0.11, 0.12] and src[9:] == ["rbc", "rbc"]


def test_pooling_without_enough_red_cells_takes_every_estimate():
    mpps = [0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.11, 0.2]
    rulers = ["wbc"] * 7 + ["rbc"]
    out, src = pool_estimates(mpps, rulers, [(64, 64)] * 8, min_images=8, min_rbc_share=0.2)
    assert src == ["pooled"] * 8 and list(out) == pytest.approx([0.085] * 8)


def test_pooled_estimate_keeps_size_differences_between_cells():
    """Two white cells of different sizes, red cells of one size: per image the white-cell
    ruler makes both cells one size; pooled over the batch the larger cell stays larger."""
    rng = np.random.default_rng(3)
    imgs = []
    for i in range(10):
        centres = [(20, 20), (20, 180), (180, 20)] if i % 3 else []  # a third without red cells
        imgs.append(_cell_image(200, 50.0, 60.0 + 40.0 * (i % 2), centres, seed=int(rng.integers(1000))))
    est = [estimate_cell_mpp(im) for im in imgs]
    own = np.array([m for m, _ in est])
    pooled, src = pool_estimates(own, [r for _, r in est], [im.shape for im in imgs])
    assert set(src) == {"pooled"} and len(set(pooled)) == 1
    assert pooled[0] == pytest.approx(RBC_DIAMETER_UM / 50.0, rel=0.12)
