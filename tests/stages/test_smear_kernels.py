"""Agreement of the working-scale kernels with the scipy/skimage results they replace."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from hemoflow.kernels import label
from hemoflow.kernels._smear import (
    chamfer_distance,
    dilate_disk,
    disk_offsets,
    dt_watershed,
    erode_disk,
    paint_nearest,
    stain_planes,
)
from hemoflow.stages.preprocess import downsample, stain_channels


@pytest.mark.parametrize("f", [1, 2, 3])
def test_stain_planes_match_block_mean_then_od(f):
    rng = np.random.default_rng(f)
    rgb = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    bg = (210.0, 220.0, 200.0)
    cell, nuc = stain_planes(rgb, f, bg, smooth=False)
    c_ref, n_ref = stain_channels(downsample(rgb, f), bg)
    np.testing.assert_allclose(cell, c_ref, atol=2e-5)
    np.testing.assert_allclose(nuc, n_ref, atol=2e-5)
    g, _ = stain_planes(rgb, f, bg, green_minus_red=False, smooth=False)
    np.testing.assert_allclose(g, stain_channels(downsample(rgb, f), bg, cell_channel="od_green")[0], atol=2e-5)
    # the optical-density planes (odd sizes: partial blocks on the last row and column)
    c2, n2, od = stain_planes(rgb, f, bg, smooth=False, od=True)
    np.testing.assert_array_equal(c2, cell)
    np.testing.assert_array_equal(n2, nuc)
    np.testing.assert_array_equal(od[1], g)
    np.testing.assert_allclose(od[1] - od[0], cell, atol=1e-6)
    np.testing.assert_allclose(od[0] - od[2], nuc, atol=1e-6)


def test_chamfer_close_to_euclidean():
    rng = np.random.default_rng(0)
    m = ndi.binary_opening(rng.random((80, 90)) > 0.3, iterations=2)
    m[0, :] = False  # some background in every column
    d = chamfer_distance(m) / 5.0
    e = ndi.distance_transform_edt(m)
    assert (d[~m] == 0).all()
    np.testing.assert_allclose(d[m], e[m], rtol=0.09, atol=0.3)


@pytest.mark.parametrize("radius, n_points", [(1.0, 5), (1.2, 5), (1.41, 5), (1.5, 9), (2.0, 13), (2.7, 21)])
def test_disk_morphology_matches_scipy(radius, n_points):
    """Both routes: the 5-pixel cross (1 <= r < sqrt 2) and the general disk."""
    rng = np.random.default_rng(1)
    for density in (0.3, 0.7):
        m = rng.random((40, 50)) > density
        r = int(np.floor(radius))
        fp = np.zeros((2 * r + 1, 2 * r + 1), bool)
        off = disk_offsets(radius)
        fp[off[:, 0] + r, off[:, 1] + r] = True
        assert fp.sum() == n_points  # lattice points with dy² + dx² <= r²: the 5-pixel cross below sqrt 2
        np.testing.assert_array_equal(dilate_disk(m, radius), ndi.binary_dilation(m, fp))
        np.testing.assert_array_equal(erode_disk(m, radius), ndi.binary_erosion(m, fp, border_value=1))


def test_paint_nearest_matches_feature_transform():
    rng = np.random.default_rng(2)
    seeds = np.zeros((50, 60), np.int32)
    for k, (y, x) in enumerate(rng.integers(5, 45, (6, 2)), start=1):
        seeds[y : y + 3, x : x + 4] = k
    out = paint_nearest(seeds, 6.0)
    dist, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    ref = np.where(dist <= 6.0, seeds[iy, ix], 0)
    assert ((out > 0) == (ref > 0)).all()
    # labels agree wherever the nearest seed is unique
    d2 = np.stack([ndi.distance_transform_edt(seeds != k) for k in range(1, 7)])
    srt = np.sort(d2, axis=0)
    unique = (srt[1] - srt[0] > 1e-9) & (ref > 0)
    np.testing.assert_array_equal(out[unique], ref[unique])


def test_watershed_translation_invariant_and_numbered_in_raster_order():
    yy, xx = np.mgrid[:60, :80]
    m = ((yy - 30) ** 2 + (xx - 25) ** 2 <= 144) | ((yy - 30) ** 2 + (xx - 45) ** 2 <= 144)
    lab, n = dt_watershed(chamfer_distance(m), h=2, rel=0.1)
    assert n == 2 and lab[30, 20] == 1 and lab[30, 50] == 2
    big = np.zeros((90, 100), bool)
    big[17:77, 9:89] = m
    lab2, n2 = dt_watershed(chamfer_distance(big), h=2, rel=0.1)
    np.testing.assert_array_equal(lab2[17:77, 9:89], lab)
    # a deep relative depth merges the two halves
    assert dt_watershed(chamfer_distance(m), h=2, rel=0.6)[1] == 1


def test_label_max_matches_scipy():
    rng = np.random.default_rng(3)
    lab = rng.integers(0, 6, (30, 40)).astype(np.int32)
    val = rng.integers(0, 1000, (30, 40)).astype(np.int32)
    from hemoflow.kernels._smear import label_max

    got = label_max(lab, val, 5)
    np.testing.assert_array_equal(got[1:], ndi.maximum(val, lab, np.arange(1, 6)))


def test_binomial3_is_the_smoothing_of_stain_planes():
    from hemoflow.kernels._smear import binomial3

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    bg = (230.0, 225.0, 228.0)
    cell, nuc = stain_planes(rgb, 2, bg, smooth=False)
    cell_s, nuc_s = stain_planes(rgb, 2, bg, smooth=True)
    np.testing.assert_array_equal(binomial3(cell), cell_s)
    np.testing.assert_array_equal(binomial3(nuc), nuc_s)
    ref = ndi.correlate1d(ndi.correlate1d(cell.astype(np.float64), [0.25, 0.5, 0.25], axis=0, mode="nearest"),
                          [0.25, 0.5, 0.25], axis=1, mode="nearest")
    np.testing.assert_allclose(binomial3(cell), ref, atol=1e-6)


def test_watershed_component_order_equals_global_flood():
    """Flooding one connected component at a time (the cache-friendly order) gives exactly
    the labels of one global flood by decreasing level: components never interact."""
    from hemoflow.kernels._smear import _dt_watershed, _flood_order

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:200, :260]
    for trial in range(4):
        m = np.zeros(yy.shape, bool)
        for _ in range(60):  # overlapping discs: single cells and clumps, cut by the border
            cy, cx, r = rng.uniform(-5, 205), rng.uniform(-5, 265), rng.uniform(4, 11)
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        dist = chamfer_distance(m)
        for h, rel, peak in ((2, 0.1, 0), (3, 0.25, 8), (1, 0.0, 0)):
            got, n = dt_watershed(dist, h=h, min_peak=peak, rel=rel)
            flat = dist.ravel()
            glob = _flood_order(flat, (flat > 0).astype(np.int32), 1, flat.size, dist.shape[1])  # level order
            ref, n_ref = _dt_watershed(np.pad(dist, 1), glob, np.int32(h), np.int32(peak), np.int64(round(rel * 1000)))
            assert n == n_ref and n > 10
            np.testing.assert_array_equal(got, ref)
        # the one-sort path (buckets per component and level) and the two-sort fallback agree
        comp, nc = label(dist > 0, connectivity=2)
        one = _flood_order(dist.ravel(), comp.ravel(), nc, dist.size, dist.shape[1])
        two = _flood_order(dist.ravel(), comp.ravel(), nc, 0, dist.shape[1])
        assert nc > 5 and len(one) == np.count_nonzero(dist)
        np.testing.assert_array_equal(one, two)


def test_select_seeds_matches_numpy_and_feeds_paint_nearest():
    """One pass gives the kept groups' mask pixels, their raster indices and boxes; painting
    from those indices equals painting from the seed image."""
    from hemoflow.kernels._smear import label_bboxes, select_seeds

    rng = np.random.default_rng(5)
    mask = rng.random((90, 120)) < 0.08
    groups, n = label(ndi.binary_dilation(mask, iterations=2), connectivity=2)
    keep = rng.random(n + 1) < 0.5
    keep[0] = False
    seeds, idx, boxes = select_seeds(mask, groups, keep)
    ref = np.where(mask & keep[groups], groups, 0)
    np.testing.assert_array_equal(seeds, ref)
    np.testing.assert_array_equal(idx, np.flatnonzero(ref))
    np.testing.assert_array_equal(boxes, label_bboxes(ref, n))
    assert 0 < len(idx) < mask.sum()
    np.testing.assert_array_equal(paint_nearest(seeds, 3.5, seed_index=idx), paint_nearest(seeds, 3.5))
    with pytest.raises(ValueError, match="does not match"):
        select_seeds(mask[:10], groups, keep)


def test_lut_gather_equals_fancy_indexing_and_checks_range():
    from hemoflow.kernels._smear import lut_gather

    rng = np.random.default_rng(9)
    lab = rng.integers(0, 50, (37, 41)).astype(np.int32)
    for lut in (rng.random(50) < 0.5, rng.integers(0, 9, 50).astype(np.int32), rng.random(50)):
        got = lut_gather(lut, lab)
        assert got.dtype == lut.dtype and got.shape == lab.shape
        np.testing.assert_array_equal(got, lut[lab])
    np.testing.assert_array_equal(lut_gather(np.arange(50), lab.astype(np.int64)), lab)
    with pytest.raises(ValueError, match="outside"):
        lut_gather(np.zeros(10, bool), lab)
    with pytest.raises(ValueError, match="int32 or int64"):
        lut_gather(np.zeros(50, bool), lab.astype(np.uint8))
