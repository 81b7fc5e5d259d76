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
