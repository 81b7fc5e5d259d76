import numpy as np

from hemoflow.stages.segment import disk, fill_small_holes, remove_small, segment_platelets, segment_rbc, segment_wbc


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
    lab, n = segment_rbc(m, diameter_px=20, min_area_px=50, min_distance_px=8)
    assert n == 2
    assert lab[20, 15] != lab[20, 40] and lab[20, 15] > 0 and lab[20, 40] > 0
    # numbered in raster order: the left disc's first pixel comes first in row 10
    assert lab[20, 18] == 1


def test_rbc_small_fragments_dropped():
    m = _disc((40, 40), 20, 20, 10)
    m[0:3, 0:3] = True
    lab, n = segment_rbc(m, diameter_px=20, min_area_px=50, min_distance_px=8)
    assert n == 1 and lab[1, 1] == 0


def test_wbc_lobes_merge_into_one_cell_and_small_objects_do_not():
    shape = (80, 80)
    nuc = np.zeros(shape, np.float32)
    for cy, cx in ((30, 30), (30, 40), (40, 35)):  # three lobes 2-3 px apart
        nuc[_disc(shape, cy, cx, 4)] = 1.0
    nuc[_disc(shape, 70, 70, 2)] = 1.0  # a platelet-sized object
    lab, n, nuclei = segment_wbc(
        nuc, np.zeros(shape, bool), threshold=0.5, min_fragment_px=5, min_nucleus_px=100,
        merge_px=6, cytoplasm_px=5,
    )
    assert n == 1
    assert lab[30, 30] == lab[40, 35] == 1
    assert lab[70, 70] == 0 and not nuclei[70, 70]
    # cytoplasm rim around the nucleus belongs to the cell
    assert lab[30, 22] == 1
    plt, m = segment_platelets(nuc, lab > 0, threshold=0.5, min_px=5, max_px=40)
    assert m == 1 and plt[70, 70] == 1 and plt[30, 30] == 0
