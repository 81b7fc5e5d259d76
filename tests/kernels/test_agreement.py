"""Agreement of hemoflow.kernels with scikit-image / scipy on random masks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.measure
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hemoflow.kernels import ALL_PROPERTIES, label, regionprops_table, threshold_label_measure

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INT_COLUMNS = ("label", "area", "bbox-0", "bbox-1", "bbox-2", "bbox-3", "area_convex")


@st.composite
def masks(draw, max_side=24):
    """Boolean masks of every size from 1x1, any density, incl. empty and full."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["random", "elements", "blobs"]))
    if kind == "elements":
        return draw(hnp.arrays(np.bool_, (h, w)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "random":
        density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.5, 0.7, 0.95, 1.0]))
        return rng.random((h, w)) < density
    # overlapping discs: realistic, touching, non-convex unions
    yy, xx = np.mgrid[:h, :w]
    m = np.zeros((h, w), bool)
    for _ in range(rng.integers(1, 6)):
        cy, cx = rng.uniform(-2, h + 2), rng.uniform(-2, w + 2)
        rad = rng.uniform(0.5, max(h, w) / 2)
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= rad**2
    return m


def _ref_table(labels, intensity, props):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skimage.measure.regionprops_table(labels, intensity, properties=props)


def _isotropic(table, i):
    """Whether region i's inertia tensor is isotropic (orientation undefined)."""
    l1 = (table["axis_major_length"][i] / 4) ** 2
    l2 = (table["axis_minor_length"][i] / 4) ** 2
    return abs(l1 - l2) <= 1e-9 * max(l1, 1e-300)


def assert_tables_agree(mine, ref):
    assert list(mine) == list(ref)
    for k in ref:
        x = np.asarray(mine[k])
        y = np.asarray(ref[k])
        assert x.shape == y.shape, k
        if k in INT_COLUMNS:
            np.testing.assert_array_equal(x, y, err_msg=k)
        elif k == "orientation":
            # orientation is an axis: theta and theta +- pi are the same (skimage returns
            # either sign of pi/2 depending on the sign of a rounding-level mu11); it is
            # undefined for an isotropic inertia tensor (disc, square, single pixel).
            d = (x - y + np.pi / 2) % np.pi - np.pi / 2
            for i in np.flatnonzero(np.abs(d) > 1e-6):
                assert _isotropic(ref, i), (k, i, x[i], y[i])
        elif k in ("eccentricity", "axis_minor_length"):
            # sqrt(1 - l2/l1) and 4 sqrt(l2): rounding noise (~1e-16 of l1) in skimage's
            # float moments of an isotropic (resp. collinear) region becomes ~1e-8 after
            # the square root, where the exact int64 moments here give exactly 0; compare
            # the squares, with the noise scale as absolute tolerance
            scale = 1.0 if k == "eccentricity" else float(np.max(ref["axis_major_length"] ** 2, initial=0.0)) + 1.0
            np.testing.assert_allclose(x**2, y**2, rtol=1e-6, atol=1e-9 * scale, err_msg=k)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9, err_msg=k)


def assert_same_partition(a, b):
    """Same components, whatever the numbering."""
    assert (a == 0).tolist() == (b == 0).tolist()
    pairs = set(zip(a[a > 0].tolist(), b[b > 0].tolist()))
    assert len(pairs) == len(set(p[0] for p in pairs)) == len(set(p[1] for p in pairs))


@SETTINGS
@given(mask=masks(), connectivity=st.sampled_from([1, 2]))
def test_label_with_sizes_counts_each_labels_pixels(mask, connectivity):
    from hemoflow.kernels._label import label_with_sizes

    labels, n, sizes = label_with_sizes(mask, connectivity=connectivity)
    ref, n_ref = label(mask, connectivity=connectivity)
    assert n == n_ref
    np.testing.assert_array_equal(labels, ref)
    assert sizes.dtype == np.int64
    np.testing.assert_array_equal(sizes, np.bincount(ref.ravel(), minlength=n + 1))


@SETTINGS
@given(mask=masks(), connectivity=st.sampled_from([1, 2]))
def test_label_matches_skimage_and_scipy(mask, connectivity):
    labels, n = label(mask, connectivity=connectivity)
    ref, n_ref = skimage.measure.label(mask, connectivity=connectivity, return_num=True)
    assert labels.dtype == np.int32
    assert labels.shape == mask.shape
    assert n == n_ref
    np.testing.assert_array_equal(labels, ref)
    structure = ndi.generate_binary_structure(2, connectivity)
    sp, n_sp = ndi.label(mask, structure=structure)
    assert n == n_sp
    assert_same_partition(labels, sp)


@SETTINGS
@given(mask=masks(), connectivity=st.sampled_from([1, 2]), seed=st.integers(0, 2**32 - 1))
def test_regionprops_matches_skimage(mask, connectivity, seed):
    labels, _ = label(mask, connectivity=connectivity)
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=mask.shape + (3,), dtype=np.uint8)
    mine = regionprops_table(labels, rgb, ALL_PROPERTIES)
    ref = _ref_table(labels, rgb, ALL_PROPERTIES)
    assert_tables_agree(mine, ref)


@SETTINGS
@given(mask=masks(max_side=16), seed=st.integers(0, 2**32 - 1))
def test_regionprops_arbitrary_label_images(mask, seed):
    """Non-consecutive, disconnected and adjacent labels, 2-D float intensity."""
    rng = np.random.default_rng(seed)
    labels = np.where(mask, rng.integers(1, 6, size=mask.shape) * 7, 0).astype(np.int64)
    gray = rng.random(mask.shape)
    mine = regionprops_table(labels, gray, ALL_PROPERTIES)
    ref = _ref_table(labels, gray, ALL_PROPERTIES)
    assert_tables_agree(mine, ref)


@SETTINGS
@given(
    mask=masks(),
    connectivity=st.sampled_from([1, 2]),
    above=st.booleans(),
    min_area=st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_threshold_label_measure_matches_composition(mask, connectivity, above, min_area, seed):
    rng = np.random.default_rng(seed)
    # an image whose threshold at 100 reproduces the mask in either mode
    if above:
        image = np.where(mask, rng.integers(101, 256, mask.shape), rng.integers(0, 101, mask.shape))
    else:
        image = np.where(mask, rng.integers(0, 101, mask.shape), rng.integers(101, 256, mask.shape))
    image = image.astype(np.uint8)
    props = ALL_PROPERTIES
    labels, table = threshold_label_measure(
        image,
        100,
        above=above,
        connectivity=connectivity,
        min_area=min_area,
        properties=props,
        intensity=image,
        keep_labels=True,
    )
    ref = skimage.measure.label(mask, connectivity=connectivity)
    areas = np.bincount(ref.ravel())
    keep = np.flatnonzero(areas >= min_area)
    keep = keep[keep > 0]
    new = np.zeros(areas.size, dtype=np.int32)
    new[keep] = np.arange(1, keep.size + 1)
    ref = new[ref]
    np.testing.assert_array_equal(labels, ref)
    assert_tables_agree(table, _ref_table(ref, image, props))
    no_labels, table2 = threshold_label_measure(
        image, 100, above=above, connectivity=connectivity, min_area=min_area, properties=props, intensity=image
    )
    assert no_labels is None
    assert_tables_agree(table2, table)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (5, 6)])
@pytest.mark.parametrize("fill", [False, True])
@pytest.mark.parametrize("connectivity", [1, 2])
def test_empty_and_full(shape, fill, connectivity):
    mask = np.full(shape, fill)
    labels, n = label(mask, connectivity=connectivity)
    assert n == int(fill)
    np.testing.assert_array_equal(labels, skimage.measure.label(mask, connectivity=connectivity))
    mine = regionprops_table(labels, None, [p for p in ALL_PROPERTIES if p != "intensity_mean"])
    ref = _ref_table(labels, None, [p for p in ALL_PROPERTIES if p != "intensity_mean"])
    assert_tables_agree(mine, ref)


def test_blood_smear_like_field():
    """A few hundred touching discs of RBC size (~40 px), both connectivities."""
    rng = np.random.default_rng(7)
    h, w = 300, 420
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), bool)
    for _ in range(90):
        cy, cx, r = rng.uniform(-10, h + 10), rng.uniform(-10, w + 10), rng.uniform(12, 22)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    mask &= ~((yy % 97 < 2) & (xx % 53 < 30))  # a few cuts, so components are non-convex
    for connectivity in (1, 2):
        labels, n = label(mask, connectivity=connectivity)
        np.testing.assert_array_equal(labels, skimage.measure.label(mask, connectivity=connectivity))
        gray = rng.random((h, w)).astype(np.float32)
        props = ALL_PROPERTIES
        mine = regionprops_table(labels, gray.astype(np.float64), props)
        assert_tables_agree(mine, _ref_table(labels, gray.astype(np.float64), props))
        # float32 intensity: accumulated in float64 here, so compare to the float64 reference
        mine32 = regionprops_table(labels, gray, ("label", "intensity_mean"))
        np.testing.assert_allclose(mine32["intensity_mean"], mine["intensity_mean"], rtol=1e-12)
