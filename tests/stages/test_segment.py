import numpy as np
import pytest

from hemoflow.stages.segment import (
    close_disk,
    disk,
    fill_small_holes,
    open_disk,
    remove_small,
    segment_platelets,
    segment_rbc,
    segment_wbc,
)


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_disk_literal():
    assert disk(1).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]


def test_remove_small_and_fill_small_holes_literal():
    m = np.array([[1, 0, 0, 1, 1], [0, 0, 0, 1, 1]], bool)
    assert remove_small(m, 2).astype(int).tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1]]
    ring = np.ones((5, 5), bool)
    ring[2, 2] = False
    ring[1:4, 0] = True
    filled = fill_small_holes(ring, 2)
    assert filled.all()
    big = np.ones((6, 6), bool)
    big[1:5, 1:5] = False  # a 16 px hole stays open at max_area 10
    assert not fill_small_holes(big, 10)[2, 2]


def test_rbc_touching_discs_are_split():
    m = _disc((40, 60), 20, 18, 10) | _disc((40, 60), 20, 37, 10)
    lab, n = segment_rbc(m, diameter_px=20, min_area_px=50, split_depth=0.05)
    assert n == 2
    assert lab[20, 15] != lab[20, 40] and lab[20, 15] > 0 and lab[20, 40] > 0
    # numbered in raster order: the left disc's first pixel comes first in row 10
    assert lab[20, 18] == 1


def test_rbc_small_fragments_dropped():
    m = _disc((40, 40), 20, 20, 10)
    m[0:3, 0:3] = True
    lab, n = segment_rbc(m, diameter_px=20, min_area_px=50, split_depth=0.05)
    assert n == 1 and lab[1, 1] == 0


def test_wbc_lobes_merge_into_one_cell_and_small_objects_do_not():
    shape = (80, 80)
    nuc = np.zeros(shape, np.float32)
    for cy, cx in ((30, 30), (30, 40), (40, 35)):  # three lobes 2-3 px apart
        nuc[_disc(shape, cy, cx, 4)] = 1.0
    nuc[_disc(shape, 70, 70, 2)] = 1.0  # a platelet-sized object
    lab, n, nuclei = segment_wbc(
        nuc, threshold=0.5, min_fragment_px=5, min_nucleus_px=100,
        merge_px=6, cytoplasm_px=5,
    )
    assert n == 1
    assert lab[30, 30] == lab[40, 35] == 1
    assert lab[70, 70] == 0 and not nuclei[70, 70]
    # cytoplasm rim around the nucleus belongs to the cell
    assert lab[30, 22] == 1
    plt, m = segment_platelets(nuc, lab > 0, threshold=0.5, min_px=5, max_px=40)
    assert m == 1 and plt[70, 70] == 1 and plt[30, 30] == 0


def test_rbc_overlap_depth_rule():
    # centres 14 px apart, radius 10: saddle depth sqrt(100 - 49) ~ 7.1 vs peak 10
    m = _disc((40, 60), 20, 20, 10) | _disc((40, 60), 20, 34, 10)
    assert segment_rbc(m, diameter_px=20, min_area_px=50, split_depth=0.2)[1] == 2
    assert segment_rbc(m, diameter_px=20, min_area_px=50, split_depth=0.4)[1] == 1


def test_rbc_border_fragments_kept_when_large_enough():
    m = _disc((40, 40), 20, 20, 10)
    m[0:5, 30:36] = True  # a 30 px piece of a cell cut by the top edge
    lab, n = segment_rbc(m, diameter_px=20, min_area_px=50, split_depth=0.05, border_min_area_px=20)
    assert n == 2 and lab[1, 32] > 0
    lab, n = segment_rbc(m, diameter_px=20, min_area_px=50, split_depth=0.05)
    assert n == 1 and lab[1, 32] == 0


def test_open_and_close_disk_literal():
    m = np.zeros((7, 9), bool)
    m[1:6, 1:6] = True
    m[3, 7] = True  # speck: removed by opening
    o = open_disk(m, 1)
    assert not o[3, 7] and o[3, 3]
    ring = _disc((15, 15), 7, 7, 5) & ~_disc((15, 15), 7, 7, 2)
    ring[7, 9:13] = False  # a gap in the rim
    assert close_disk(ring, 1.5)[7, 10]


def _wbc(nuc, **kw):
    args = dict(threshold=0.5, min_fragment_px=5, min_nucleus_px=100, merge_px=6, cytoplasm_px=5)
    args.update(kw)
    return segment_wbc(nuc, **args)


def test_touching_wbc_nuclei_longer_than_one_cell_are_split():
    shape = (60, 90)
    nuc = np.zeros(shape, np.float32)
    nuc[_disc(shape, 30, 30, 9) | _disc(shape, 30, 50, 9)] = 1.0  # two touching nuclei, 38 px long
    nuc[_disc(shape, 30, 40, 3)] = 1.0  # bridged: one fragment
    lab, n, nuclei = _wbc(nuc)
    assert n == 1  # no length limit: one cluster
    lab, n, nuclei = _wbc(nuc, max_nucleus_px=30)
    assert n == 2
    assert lab[30, 25] != lab[30, 55] and lab[30, 25] > 0 and lab[30, 55] > 0
    assert nuclei.sum() == (nuc > 0.5).sum()  # the nuclear pixels are kept, only relabelled
    assert lab[30, 17] == lab[30, 25] and lab[30, 63] == lab[30, 55]  # each keeps its cytoplasm rim
    again, _, _ = _wbc(nuc, max_nucleus_px=30)
    assert np.array_equal(again, lab)  # deterministic
    # a limit above the cluster's length leaves it whole
    assert _wbc(nuc, max_nucleus_px=40)[1] == 1


def test_long_cluster_with_a_small_part_is_not_split():
    shape = (60, 90)
    nuc = np.zeros(shape, np.float32)
    nuc[_disc(shape, 30, 30, 9)] = 1.0
    nuc[29:32, 39:62] = 1.0  # a thin tail: the far half holds too few pixels for a nucleus
    lab, n, _ = _wbc(nuc, max_nucleus_px=25, min_nucleus_px=100)
    assert n == 1


def test_feret_diameter_matches_all_pairs():
    from scipy.spatial.distance import pdist

    from hemoflow.stages.segment import feret_diameter

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:40, :50]
    for _ in range(20):
        m = np.zeros(yy.shape, bool)
        for _ in range(rng.integers(1, 4)):
            cy, cx, r = rng.uniform(0, 40), rng.uniform(0, 50), rng.uniform(1, 9)
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        m &= rng.random(m.shape) < 0.9  # ragged, with holes
        ys, xs = np.nonzero(m)
        want = pdist(np.c_[ys, xs].astype(float)).max() if len(ys) > 1 else 0.0
        assert feret_diameter(m) == pytest.approx(want, abs=1e-12)
    assert feret_diameter(np.zeros((3, 3), bool)) == 0.0
    assert feret_diameter(np.eye(3, dtype=bool)) == pytest.approx(2 * np.sqrt(2))
