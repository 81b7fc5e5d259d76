import numpy as np
import pytest

from hemoflow.schema import CELL_COLUMNS
from hemoflow.stages.features import irregular_rule, measure_cells

N = 121
YY, XX = np.mgrid[:N, :N] - N // 2


def disc(r=30):
    return XX**2 + YY**2 <= r * r


def ellipse(a=36, b=20):
    return (XX / a) ** 2 + (YY / b) ** 2 <= 1


def spiculated(r=28, spikes=12, depth=8):
    th = np.arctan2(YY, XX)
    rad = np.hypot(XX, YY)
    return rad <= r + depth * np.maximum(np.cos(spikes * th), 0) ** 4


def teardrop(r=22, tail=36):
    body = XX**2 + YY**2 <= r * r
    # a tapering tail to the right
    tail_mask = (XX >= 0) & (XX <= r + tail) & (np.abs(YY) <= r * (1 - XX / (r + tail)) * 0.6 + 1)
    return body | tail_mask


def _measure(mask, mpp=0.25):
    return measure_cells(mask.astype(np.int32), np.array(["rbc"]), mpp=mpp)


def test_rule_literal():
    assert irregular_rule([0.95, 0.85, 0.95, 0.95], [0.9, 0.9, 0.7, 0.9], [0.3, 0.3, 0.3, 0.8]).tolist() == [
        False, True, True, True
    ]


@pytest.mark.parametrize(
    "shape, expected",
    [(disc, False), (ellipse, True), (spiculated, True), (teardrop, True)],
)
def test_irregularity_of_known_shapes(shape, expected):
    t = _measure(shape())
    assert bool(t["irregular"][0]) is expected, {k: t[k][0] for k in ("solidity", "circularity", "eccentricity")}


def test_disc_features_in_um():
    t = _measure(disc(30), mpp=0.5)
    assert set(t) == set(CELL_COLUMNS)
    area = disc(30).sum()
    assert t["area_px"][0] == area
    assert t["area_um2"][0] == pytest.approx(area * 0.25)
    assert t["equivalent_diameter_um"][0] == pytest.approx(np.sqrt(4 * area / np.pi) * 0.5)
    assert t["perimeter_um"][0] == pytest.approx(2 * np.pi * 30 * 0.5, rel=0.05)
    assert t["circularity"][0] == pytest.approx(1.0, abs=0.1)
    assert t["y"][0] == pytest.approx(N // 2) and t["x"][0] == pytest.approx(N // 2)
    assert (t["bbox_y0"][0], t["bbox_x0"][0], t["bbox_y1"][0], t["bbox_x1"][0]) == (30, 30, 91, 91)


def test_scale_maps_to_level0_pixels():
    lab = np.zeros((6, 6), np.int32)
    lab[2:4, 2:4] = 1
    t = measure_cells(lab, np.array(["wbc"]), mpp=0.1, scale=3)
    assert t["area_px"][0] == 36
    assert t["y"][0] == pytest.approx(2.5 * 3 + 1.0)
    assert t["bbox_y0"][0] == 6 and t["bbox_y1"][0] == 12
    assert t["cls"][0] == "wbc"


def test_ratio_scale_maps_to_level0_pixels():
    """A working pixel of 4/3 scan pixels: working pixel i covers [4i/3, 4(i+1)/3), so a
    label on working rows 2..3 spans scan rows 8/3..16/3; boxes round outwards to whole
    scan pixels and exact products stay exact."""
    lab = np.zeros((9, 9), np.int32)
    lab[2:4, 3:6] = 1
    s = 4 / 3
    t = measure_cells(lab, np.array(["rbc"]), mpp=0.345, scale=s)
    assert t["area_px"][0] == round(6 * s * s)
    assert t["area_um2"][0] == pytest.approx(6 * (s * 0.345) ** 2)
    assert t["y"][0] == pytest.approx(2.5 * s + (s - 1) / 2)
    assert t["x"][0] == pytest.approx(4.0 * s + (s - 1) / 2)
    # rows [2, 4) -> [2.67, 5.33) -> 2..6; columns [3, 6) -> [4, 8) exactly
    assert (t["bbox_y0"][0], t["bbox_y1"][0], t["bbox_x0"][0], t["bbox_x1"][0]) == (2, 6, 4, 8)


def test_known_measurements_give_the_same_table():
    """Labels whose measurements the caller already has (on the same pixels) are not
    measured again, and the table is the same; labels outside 1..n are refused."""
    from hemoflow.kernels import label, regionprops_table
    from hemoflow.stages.features import PROPERTIES

    rng = np.random.default_rng(4)
    lab, n = label(rng.random((90, 110)) < 0.55, connectivity=1)
    classes = np.array(["rbc", "wbc", "platelet"])[rng.integers(0, 3, n)]
    weights = rng.random(n)
    ref = measure_cells(lab, classes, mpp=0.3, scale=2, weights=weights)
    props = regionprops_table(lab, properties=PROPERTIES)
    pick = np.flatnonzero(rng.random(n) < 0.7)
    known = {k: np.asarray(v)[pick] for k, v in props.items()}
    got = measure_cells(lab, classes, mpp=0.3, scale=2, weights=weights, known=known)
    assert got.keys() == ref.keys() and n > 50 and len(pick) > 20
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    known["label"] = known["label"] + n
    with pytest.raises(ValueError, match="known labels"):
        measure_cells(lab, classes, mpp=0.3, known=known)
