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
