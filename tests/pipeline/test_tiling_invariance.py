"""Tiling does not change the answer: the cell table is identical for any tile size,
including tile borders placed exactly through cell centroids."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hemoflow import stages, synth
from hemoflow.pipeline.tiles import analyze_tiled, halo_margin_um, halo_pixels

MPP = 0.25
SHAPE = (1200, 1400)


@pytest.fixture(scope="module")
def field():
    rgb, truth = synth.synth_field(SHAPE, mpp=MPP, seed=7)
    params = stages.SegmentParams()
    crop = stages.CropSpec()
    cal = stages.calibrate(rgb, params=params)
    halo = halo_pixels(MPP, max_cell_diameter_um=params.max_cell_diameter_um, margin_um=halo_margin_um(params),
                       crop_px=crop.size * crop.mpp / MPP)
    whole, whole_crops = analyze_tiled(rgb, tile_size=max(SHAPE), halo=halo, mpp=MPP, calibration=cal,
                                       params=params, crop=crop)
    return rgb, truth, params, crop, cal, halo, _sorted(whole, whole_crops)


def _sorted(table, crops):
    order = np.lexsort((np.asarray(table["x"]), np.asarray(table["y"])))
    wbc_rows = np.flatnonzero(np.asarray(table["cls"]) == "wbc")
    # crops follow the WBC rows; reorder them with the rows
    wbc_rank = {r: i for i, r in enumerate(wbc_rows)}
    crop_order = [wbc_rank[r] for r in order if r in wbc_rank]
    return {k: np.asarray(v)[order] for k, v in table.items()}, crops[crop_order]


def _assert_same(a, b):
    ta, ca = a
    tb, cb = b
    assert set(ta) == set(tb)
    for k in ta:
        va, vb = ta[k], tb[k]
        if k == "count_weight":
            # from the red-cell density network, whose float sums differ in the last bits
            # with the window's size (the convolution picks its algorithm by shape)
            np.testing.assert_allclose(va, vb, rtol=1e-9, atol=1e-12, err_msg=k)
        elif va.dtype.kind == "f":
            np.testing.assert_array_equal(va, vb, err_msg=k)
        else:
            assert va.tolist() == vb.tolist(), k
    np.testing.assert_array_equal(ca, cb)


@pytest.mark.parametrize("tile_size", [256, 384, 700])
def test_fixed_tile_sizes_match_whole_image(field, tile_size):
    rgb, _truth, params, crop, cal, halo, whole = field
    tiled = analyze_tiled(rgb, tile_size=tile_size, halo=halo, mpp=MPP, calibration=cal, params=params, crop=crop)
    _assert_same(_sorted(*tiled), whole)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_borders_through_cell_centroids(field, data):
    """Tile sizes chosen so that a grid line passes exactly through (or next to) a centroid."""
    rgb, truth, params, crop, cal, halo, whole = field
    i = data.draw(st.integers(0, len(truth["y"]) - 1), label="cell")
    axis = data.draw(st.sampled_from(["y", "x"]), label="axis")
    delta = data.draw(st.sampled_from([0.0, 0.5, 1.0]), label="offset")
    pos = float(np.asarray(whole[0][axis])[min(i, len(whole[0][axis]) - 1)]) + delta
    f = int(cal.downsample)
    tile = int(np.floor(pos)) // f * f  # windows sit on the working-scale grid: within f-1 px
    if tile < 64:
        tile += 64 * (1 + 64 // max(tile, 1))
    tiled = analyze_tiled(rgb, tile_size=tile, halo=halo, mpp=MPP, calibration=cal, params=params, crop=crop)
    _assert_same(_sorted(*tiled), whole)


@pytest.mark.parametrize("tile_size", [320, 512])
def test_ratio_working_scale_tiles_match_whole_image(tile_size):
    """At a pixel size no integer block factor suits (0.345 µm/px: working pixel 4/3 px),
    tiles give the whole image's cells; centroids agree to rounding, since they are no
    longer exact integer sums."""
    mpp = 0.345
    rgb, _ = synth.synth_field((900, 1000), mpp=mpp, seed=11, n_wbc=3)
    params = stages.SegmentParams()
    crop = stages.CropSpec()
    cal = stages.calibrate(rgb, params=params, mpp=mpp)
    assert (cal.downsample, cal.upsample) == (4, 3)
    halo = halo_pixels(mpp, max_cell_diameter_um=params.max_cell_diameter_um, margin_um=halo_margin_um(params),
                       crop_px=crop.size * crop.mpp / mpp)
    whole = _sorted(*analyze_tiled(rgb, tile_size=max(rgb.shape), halo=halo, mpp=mpp, calibration=cal,
                                   params=params, crop=crop))
    tiled = _sorted(*analyze_tiled(rgb, tile_size=tile_size, halo=halo, mpp=mpp, calibration=cal, params=params,
                                   crop=crop))
    (ta, ca), (tb, cb) = whole, tiled
    assert len(ta["cls"]) > 300 and (ta["cls"] == "wbc").any()
    assert set(ta) == set(tb)
    for k in ta:
        if ta[k].dtype.kind == "f":
            np.testing.assert_allclose(tb[k], ta[k], rtol=1e-9, atol=1e-9, err_msg=k)
        else:
            assert ta[k].tolist() == tb[k].tolist(), k
    # the crops are sampled at the centroids: at most one grey level from rounding
    assert ca.shape == cb.shape and np.abs(ca.astype(int) - cb.astype(int)).max() <= 1
