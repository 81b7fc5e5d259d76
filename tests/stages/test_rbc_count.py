import numpy as np

from hemoflow.kernels._smear import chamfer_distance
from hemoflow.stages._rbc_count import FEATURES, basin_features, predict_counts, split_basins


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_split_drop_keep_and_raster_numbering():
    lab = np.zeros((30, 60), np.int32)
    lab[2:4, 2:4] = 1  # dropped (count 0)
    lab[10:20, 5:15] = 2  # kept
    lab[5:15, 30:58] = 3  # split in two, left and right halves
    out, n = split_basins(lab, np.array([0, 1, 2]))
    assert n == 3 and out[3, 3] == 0
    assert out[5, 31] == 1 and out[5, 57] == 2 and out[15, 10] == 3
    assert len(np.unique(out[5:15, 30:58])) == 2


def test_split_is_translation_invariant():
    m = _disc((40, 60), 20, 20, 9) | _disc((40, 60), 22, 33, 9)
    lab = m.astype(np.int32)
    a, _ = split_basins(lab, np.array([2]))
    big = np.zeros((70, 90), np.int32)
    big[13:53, 7:67] = lab
    b, _ = split_basins(big, np.array([2]))
    np.testing.assert_array_equal(b[13:53, 7:67], a)


def test_shipped_model_counts_typical_shapes():
    r = 8.0
    area = np.pi * r * r
    shape = (60, 120)
    lab = np.zeros(shape, np.int32)
    lab[_disc(shape, 30, 20, r)] = 1  # one typical cell
    two = _disc(shape, 30, 60, r) | _disc(shape, 30, 71, r)  # two overlapping cells, no saddle split
    lab[two] = 2
    lab[5:7, 100:103] = 3  # a sliver
    dist = chamfer_distance(lab > 0)
    f = basin_features(lab, 3, dist, rbc_area_px=area)
    assert f.shape == (3, len(FEATURES))
    assert predict_counts(f).tolist() == [1, 2, 0]


def _numpy_kmeans(ys, xs, k, iters=8):
    """The numpy formulation the compiled k-means must reproduce exactly."""
    pts = np.stack([ys, xs], axis=1).astype(np.float64)
    d = ((pts - pts.mean(axis=0)) ** 2).sum(axis=1)
    centres = [pts[int(np.argmax(d))]]
    for _ in range(1, k):
        dm = np.min([((pts - c) ** 2).sum(axis=1) for c in centres], axis=0)
        centres.append(pts[int(np.argmax(dm))])
    cen = np.array(centres)
    assign = np.zeros(len(pts), np.int64)
    for it in range(iters):
        new = np.argmin(((pts[:, None, :] - cen[None, :, :]) ** 2).sum(axis=2), axis=1)
        if it > 0 and np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            sel = assign == j
            if sel.any():
                cen[j] = pts[sel].mean(axis=0)
    return assign


def test_compiled_kmeans_equals_the_numpy_formulation():
    from hemoflow.kernels._kmeans import kmeans_parts

    rng = np.random.default_rng(5)
    for trial in range(200):
        m = int(rng.integers(1, 400))
        ys, xs = rng.integers(0, 40, m), rng.integers(0, 60, m)
        k = int(rng.integers(1, min(m, 4) + 1))
        iters = int(rng.choice([1, 8, 20]))
        np.testing.assert_array_equal(kmeans_parts(ys, xs, k, iters), _numpy_kmeans(ys, xs, k, iters), err_msg=str(trial))


def test_split_equals_splitting_each_basin_with_numpy_kmeans():
    from hemoflow.kernels import label
    from hemoflow.kernels._smear import bbox_slices, label_bboxes, renumber_raster

    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[:120, :150]
    m = np.zeros(yy.shape, bool)
    for _ in range(40):
        cy, cx, r = rng.uniform(0, 120), rng.uniform(0, 150), rng.uniform(3, 10)
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    lab, n = label(m)
    counts = rng.integers(0, 4, n)
    got, n_got = split_basins(lab, counts)
    ref = np.where(lab > 0, np.concatenate([[0], np.where(counts > 0, np.arange(1, n + 1), 0)])[lab], 0).astype(np.int32)
    nxt = n + 1
    boxes = label_bboxes(lab, n)
    for v in np.flatnonzero(counts >= 2) + 1:
        sl = bbox_slices(boxes[v])
        ys, xs = np.nonzero(lab[sl] == v)
        k = int(min(counts[v - 1], len(ys)))
        part = _numpy_kmeans(ys, xs, k)
        for j in range(1, k):
            ref[sl][ys[part == j], xs[part == j]] = nxt
            nxt += 1
    ref, n_ref = renumber_raster(ref)
    assert n_got == n_ref > n // 2
    np.testing.assert_array_equal(got, ref)
    with_boxes, _ = split_basins(lab, counts, boxes)  # boxes the caller already has
    np.testing.assert_array_equal(with_boxes, ref)


def test_kmeans_rejects_bad_input():
    import pytest

    from hemoflow.kernels._kmeans import kmeans_parts, split_labels

    with pytest.raises(ValueError, match="k must be"):
        kmeans_parts(np.arange(3), np.arange(3), 4)
    with pytest.raises(ValueError, match="one length"):
        kmeans_parts(np.arange(3), np.arange(2), 1)
    lab = np.ones((4, 4), np.int32)
    with pytest.raises(ValueError, match="out must be"):
        split_labels(lab, lab.astype(np.int64), np.zeros((2, 4), np.int64), np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="boxes"):
        split_labels(lab, lab.copy(), np.zeros((3, 4), np.int64), np.array([0, 2]), 2)
