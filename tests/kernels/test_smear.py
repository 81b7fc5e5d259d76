"""label_bboxes against scipy.ndimage.find_objects."""

import numpy as np
import pytest


def test_label_bboxes_matches_find_objects():
    from scipy import ndimage as ndi

    from hemoflow.kernels._smear import bbox_slices, label_bboxes

    rng = np.random.default_rng(0)
    for _ in range(30):
        shape = (int(rng.integers(1, 50)), int(rng.integers(1, 50)))
        a = rng.integers(0, 12, shape).astype(np.int32)
        a[rng.random(shape) < 0.5] = 0
        n = int(rng.integers(1, 15))
        boxes = label_bboxes(a, n)
        assert boxes.shape == (n + 1, 4)
        assert [bbox_slices(r) for r in boxes[1:]] == ndi.find_objects(a, max_label=n)
    assert [bbox_slices(r) for r in label_bboxes(np.zeros((3, 3), np.int32), 2)[1:]] == [None, None]


def test_ring_sums_match_paint_nearest():
    from hemoflow.kernels import label
    from hemoflow.kernels._smear import paint_nearest, ring_sums

    rng = np.random.default_rng(1)
    for radius in (1.0, 2.0, 3.5):
        m = rng.random((70, 90)) < 0.06
        lab, n = label(m, connectivity=2)
        a, b, c = (rng.random(lab.shape) for _ in range(3))
        got = ring_sums(lab, n, radius, a, b, c)
        grown = paint_nearest(lab, radius)
        ring = (grown > 0) & (lab == 0)
        want = np.zeros((n + 1, 4))
        for col, v in enumerate((np.ones_like(a), a, b, c)):
            want[:, col] = np.bincount(grown[ring], weights=v[ring], minlength=n + 1)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        # float32 and bool planes are summed as their float64 copies would be
        a32, bm = a.astype(np.float32), b > 0.5
        mixed = ring_sums(lab, n, radius, a32, bm, c)
        np.testing.assert_array_equal(mixed, ring_sums(lab, n, radius, a32.astype(np.float64),
                                                       bm.astype(np.float64), c))


def test_label_sizes_match_bincount():
    from hemoflow.kernels._smear import label_sizes

    rng = np.random.default_rng(4)
    for dtype in (np.int32, np.int64, np.uint16):
        lab = rng.integers(0, 40, (50, 70)).astype(dtype)
        got = label_sizes(lab, 39)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, np.bincount(lab.ravel().astype(np.int64), minlength=40))
    np.testing.assert_array_equal(label_sizes(np.zeros((0, 3), np.int32), 2), [0, 0, 0])
    np.testing.assert_array_equal(label_sizes(lab[::2, ::3], 39), np.bincount(lab[::2, ::3].ravel(), minlength=40))


def test_label_sources_maps_parts_to_their_region():
    from hemoflow.kernels._smear import label_sources

    old = np.array([[1, 1, 0, 2], [1, 1, 0, 2], [0, 3, 3, 3]], np.int32)
    new = np.array([[1, 2, 0, 3], [1, 2, 0, 3], [0, 4, 4, 0]], np.int32)  # 1 split in two, 3 cut
    np.testing.assert_array_equal(label_sources(new, old, 4), [0, 1, 1, 2, 3])
    with pytest.raises(ValueError, match="differ in size"):
        label_sources(new, old[:2], 4)


def test_overlay_labels_equals_nested_where():
    from hemoflow.kernels._smear import overlay_labels

    rng = np.random.default_rng(9)
    a, b, c = (rng.integers(0, k, (30, 40)) * (rng.random((30, 40)) < 0.4) for k in (4, 6, 9))
    want = np.where(c > 0, c + 3 + 5, np.where(b > 0, b + 3, a))
    got = overlay_labels((a, 3), (b, 5), (c, 8))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="differ in size"):
        overlay_labels((a, 3), (b[:2], 5))


def test_label_pixels_is_a_sparse_view_with_boxes():
    from hemoflow.kernels._smear import label_bboxes, label_pixels

    rng = np.random.default_rng(4)
    lab = rng.integers(0, 12, (40, 33)).astype(np.int32)
    lab[rng.random(lab.shape) < 0.7] = 0
    idx, got, boxes = label_pixels(lab, 9)  # labels 10 and 11 lie outside 1..n
    keep = (lab > 0) & (lab <= 9)
    np.testing.assert_array_equal(idx, np.flatnonzero(keep))
    np.testing.assert_array_equal(got, lab.ravel()[idx])
    np.testing.assert_array_equal(boxes, label_bboxes(lab, 9))
    assert got.dtype == np.int32 and idx.dtype == np.int64


def test_stain_planes_read_planar_views_in_place():
    """At factor 2 a transposed view of planar channels takes the planar kernel; every
    size (odd rows and columns included) and option gives the interleaved result."""
    from hemoflow.kernels._smear import stain_planes

    rng = np.random.default_rng(2)
    for h, w in [(1, 1), (1, 2), (2, 1), (3, 5), (8, 8), (37, 41)]:
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        view = np.moveaxis(np.ascontiguousarray(np.moveaxis(rgb, -1, 0)), 0, -1)
        for factor in (1, 2, 3):
            for gmr in (True, False):
                for smooth in (False, True):
                    a = stain_planes(rgb, factor, [230.0, 225.0, 240.0], green_minus_red=gmr, smooth=smooth, od=True)
                    b = stain_planes(view, factor, [230.0, 225.0, 240.0], green_minus_red=gmr, smooth=smooth, od=True)
                    for x, y in zip(a, b):
                        np.testing.assert_array_equal(x, y, err_msg=str((h, w, factor, gmr, smooth)))
    with pytest.raises(ValueError, match="expected uint8"):
        stain_planes(np.zeros((4, 4, 3), np.float32), 2, [200.0] * 3)


def test_stain_planes_at_a_ratio_equal_replicating_then_block_averaging():
    """A working pixel of p/q scan pixels (``upsample=q``) is defined as repeating every
    pixel q x q times and block-averaging by p: the kernel gives exactly that, partial
    edge pixels and every option included, for interleaved and planar input."""
    from hemoflow.kernels._smear import stain_planes

    rng = np.random.default_rng(4)
    bg = [231.0, 222.0, 241.0]
    for p, q in [(4, 3), (5, 4), (7, 3), (6, 5), (3, 2), (9, 8)]:
        for h, w in [(1, 1), (2, 7), (37, 53), (64, 48)]:
            rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            rep = np.ascontiguousarray(np.repeat(np.repeat(rgb, q, 0), q, 1))
            view = np.moveaxis(np.ascontiguousarray(np.moveaxis(rgb, -1, 0)), 0, -1)
            for gmr in (True, False):
                for smooth in (False, True):
                    want = stain_planes(rep, p, bg, green_minus_red=gmr, smooth=smooth, od=True)
                    for img in (rgb, view):
                        got = stain_planes(img, p, bg, green_minus_red=gmr, smooth=smooth, od=True, upsample=q)
                        assert got[0].shape == (-(-h * q // p), -(-w * q // p))
                        for x, y in zip(want, got):
                            np.testing.assert_array_equal(x, y, err_msg=str((p, q, h, w, gmr, smooth)))
    with pytest.raises(ValueError, match="lowest terms"):
        stain_planes(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 4, bg, upsample=2)
    with pytest.raises(ValueError, match="upsample"):
        stain_planes(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 4, bg, upsample=0)
