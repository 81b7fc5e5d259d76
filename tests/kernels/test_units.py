"""hemoflow.kernels on tiny literal arrays with literal expected results, and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hemoflow.kernels import (
    ALL_PROPERTIES,
    DEFAULT_PROPERTIES,
    centroid_um,
    circularity,
    label,
    regionprops_table,
    threshold_label_measure,
    warmup,
)

MASK = np.array(
    [
        [1, 1, 0, 0, 1],
        [0, 1, 0, 1, 0],
        [0, 0, 0, 0, 0],
        [1, 0, 1, 1, 1],
    ],
    dtype=bool,
)


def test_label_8_connectivity():
    labels, n = label(MASK)
    assert n == 4
    assert labels.tolist() == [
        [1, 1, 0, 0, 2],
        [0, 1, 0, 2, 0],
        [0, 0, 0, 0, 0],
        [3, 0, 4, 4, 4],
    ]


def test_label_4_connectivity():
    labels, n = label(MASK, connectivity=1)
    assert n == 5
    assert labels.tolist() == [
        [1, 1, 0, 0, 2],
        [0, 1, 0, 3, 0],
        [0, 0, 0, 0, 0],
        [4, 0, 5, 5, 5],
    ]


def test_label_numbering_follows_first_pixel():
    # the U-shape's right arm starts first but joins later: one label, number 1
    mask = np.array([[0, 0, 1], [1, 0, 1], [1, 1, 1]], bool)
    labels, n = label(mask)
    assert n == 1
    assert labels.tolist() == [[0, 0, 1], [1, 0, 1], [1, 1, 1]]


def test_label_accepts_integer_masks():
    labels, n = label(np.array([[0, 3], [2, 0]], np.uint8), connectivity=1)
    assert n == 2
    assert labels.tolist() == [[0, 1], [2, 0]]


def test_label_noncontiguous_input():
    big = np.zeros((6, 8), bool)
    big[::2, ::2] = MASK[:3, :4]
    view = big[::2, ::2]
    labels, n = label(view)
    ref, _ = label(np.ascontiguousarray(view))
    assert labels.tolist() == ref.tolist()


def test_regionprops_literal():
    labels = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0],
            [0, 1, 1, 1, 0],
            [0, 0, 0, 0, 2],
        ]
    )
    intensity = np.arange(20, dtype=np.float64).reshape(4, 5)
    t = regionprops_table(labels, intensity, ALL_PROPERTIES)
    assert list(t) == [
        "label", "area", "centroid-0", "centroid-1", "bbox-0", "bbox-1", "bbox-2", "bbox-3",
        "perimeter", "eccentricity", "orientation", "axis_major_length", "axis_minor_length",
        "equivalent_diameter_area", "solidity", "area_convex", "intensity_mean",
    ]  # fmt: skip
    assert t["label"].tolist() == [1, 2]
    assert t["area"].tolist() == [6.0, 1.0]
    assert t["centroid-0"].tolist() == [1.5, 3.0]
    assert t["centroid-1"].tolist() == [2.0, 4.0]
    assert [t[f"bbox-{k}"].tolist() for k in range(4)] == [[1, 3], [1, 4], [3, 4], [4, 5]]
    assert t["perimeter"].tolist() == [6.0, 0.0]  # skimage's estimator; a lone pixel has 0
    assert t["area_convex"].tolist() == [6.0, 1.0]
    assert t["solidity"].tolist() == [1.0, 1.0]
    # 2x3 block: variances 1/4 (rows) and 2/3 (cols) -> major axis along the columns
    assert t["axis_major_length"][0] == pytest.approx(4 * math.sqrt(2 / 3))
    assert t["axis_minor_length"][0] == pytest.approx(2.0)
    assert t["eccentricity"][0] == pytest.approx(math.sqrt(1 - (1 / 4) / (2 / 3)))
    assert t["orientation"][0] == pytest.approx(math.pi / 2)
    assert t["equivalent_diameter_area"].tolist() == pytest.approx([math.sqrt(24 / math.pi), math.sqrt(4 / math.pi)])
    assert t["intensity_mean"].tolist() == pytest.approx([(6 + 7 + 8 + 11 + 12 + 13) / 6, 19.0])
    assert t["eccentricity"][1] == 0.0 and t["axis_major_length"][1] == 0.0


def test_regionprops_convex_hull_literal():
    # an L-shape: the hull of the edge midpoints cuts from (0, 0.5) to (1.5, 2), so it
    # takes in (1, 1) but not (0, 1) nor (1, 2)
    labels = np.array(
        [
            [1, 0, 0],
            [1, 0, 0],
            [1, 1, 1],
        ]
    )
    t = regionprops_table(labels, None, ("area", "area_convex", "solidity", "perimeter"))
    assert t["area"].tolist() == [5.0]
    assert t["area_convex"].tolist() == [6.0]
    assert t["solidity"].tolist() == [5 / 6]
    # skimage's weights: the two arm ends weigh 0, the three straight pixels 1 each
    assert t["perimeter"].tolist() == [3.0]


def test_regionprops_multichannel_names():
    labels = np.array([[1, 0], [0, 2]])
    rgb = np.array([[[10, 20, 30], [0, 0, 0]], [[0, 0, 0], [1, 2, 3]]], np.uint8)
    t = regionprops_table(labels, rgb, ("label", "intensity_mean"))
    assert list(t) == ["label", "intensity_mean-0", "intensity_mean-1", "intensity_mean-2"]
    assert t["intensity_mean-1"].tolist() == [20.0, 2.0]


def test_regionprops_sparse_label_values():
    labels = np.array([[0, 2**30], [5, 0]], dtype=np.int64)
    t = regionprops_table(labels, None, ("label", "area"))
    assert t["label"].tolist() == [5, 2**30]
    assert t["area"].tolist() == [1.0, 1.0]


def test_regionprops_empty():
    t = regionprops_table(np.zeros((3, 3), np.int32), None, DEFAULT_PROPERTIES)
    assert all(v.shape == (0,) for v in t.values())
    assert "centroid-0" in t and "bbox-3" in t


def test_threshold_label_measure_literal():
    image = np.array(
        [
            [200, 10, 10, 200],
            [200, 10, 200, 200],
            [200, 200, 200, 10],
        ],
        dtype=np.uint8,
    )
    labels, t = threshold_label_measure(image, 100, above=False, properties=("label", "area", "bbox"), keep_labels=True)
    assert labels.tolist() == [[0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 2]]
    assert t["area"].tolist() == [3.0, 1.0]
    labels, t = threshold_label_measure(
        image, 100, above=False, min_area=2, properties=("label", "area"), keep_labels=True
    )
    assert labels.tolist() == [[0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert t["label"].tolist() == [1]
    none, t = threshold_label_measure(image, 100, properties=("label", "area"))
    assert none is None
    assert t["area"].tolist() == [8.0]


def test_threshold_is_strict_above_and_inclusive_below():
    image = np.array([[5.0, 5.0, 6.0, np.nan]])
    _, up = threshold_label_measure(image, 5.0, properties=("area",))
    _, down = threshold_label_measure(image, 5.0, above=False, properties=("area",))
    assert up["area"].tolist() == [1.0]
    assert down["area"].tolist() == [2.0]


def test_circularity_and_centroid_um():
    assert circularity(np.array([math.pi]), np.array([2 * math.pi])).tolist() == pytest.approx([1.0])
    assert np.isnan(circularity(1.0, 0.0))
    assert centroid_um(np.array([[10.0, 4.0]]), 0.25).tolist() == [[2.5, 1.0]]
    with pytest.raises(ValueError, match="mpp"):
        centroid_um(np.zeros((1, 2)), 0)
    with pytest.raises(ValueError, match="shape"):
        circularity(np.ones(2), np.ones(3))


def test_warmup_runs():
    warmup()


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: label(np.zeros((2, 2, 2), bool)), ValueError, r"2-D.*shape=\(2, 2, 2\).*bool"),
        (lambda: label(np.zeros((2, 2), np.float32)), TypeError, r"shape=\(2, 2\), dtype=float32"),
        (lambda: label([[1, 0]]), TypeError, "numpy array"),
        (lambda: label(np.zeros((2, 2), bool), connectivity=3), ValueError, "connectivity"),
        (lambda: label(np.zeros((2, 2), bool), connectivity=True), TypeError, "connectivity"),
        (lambda: regionprops_table(np.zeros((2, 2), np.float64)), TypeError, "dtype=float64"),
        (lambda: regionprops_table(np.zeros(4, np.int32)), ValueError, r"shape=\(4,\)"),
        (lambda: regionprops_table(-np.ones((2, 2), np.int32)), ValueError, "non-negative"),
        (lambda: regionprops_table(np.ones((2, 2), np.int32), properties=("nope",)), ValueError, "unknown"),
        (lambda: regionprops_table(np.ones((2, 2), np.int32), None, ("intensity_mean",)), ValueError, "intensity"),
        (
            lambda: regionprops_table(np.ones((2, 2), np.int32), np.ones((3, 2)), ("intensity_mean",)),
            ValueError,
            r"shape=\(3, 2\)",
        ),
        (lambda: threshold_label_measure(np.zeros((2, 2, 3)), 1), ValueError, r"shape=\(2, 2, 3\)"),
        (lambda: threshold_label_measure(np.zeros((2, 2)), "x"), TypeError, "threshold"),
        (lambda: threshold_label_measure(np.zeros((2, 2)), 1, min_area=-1), ValueError, "min_area"),
    ],
)
def test_input_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
