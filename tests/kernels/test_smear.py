"""label_bboxes against scipy.ndimage.find_objects."""

import numpy as np


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
