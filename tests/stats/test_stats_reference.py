"""Flag logic: every outcome of the range flag and the blast cut-off."""

from __future__ import annotations

import pytest

from hemoflow.errors import HemoflowError
from hemoflow.schema import DIFFERENTIAL_REFERENCE
from hemoflow.stats.intervals import clopper_pearson
from hemoflow.stats.reference import (
    BLAST_CUTOFF_PERCENT,
    DIFFERENTIAL_RANGES,
    ReferenceRange,
    cutoff_flag,
    explain_cutoff_flag,
    explain_range_flag,
    range_flag,
)


def test_ranges_come_from_schema():
    assert {k: (r.low, r.high) for k, r in DIFFERENTIAL_RANGES.items()} == DIFFERENTIAL_REFERENCE
    assert BLAST_CUTOFF_PERCENT == 20.0


@pytest.mark.parametrize(
    ("lo", "hi", "flag"),
    [
        (61.0, 70.0, "high"),
        (30.0, 39.9, "low"),
        (40.0, 60.0, "within"),  # touching both ends is still inside
        (41.0, 59.0, "within"),
        (35.0, 45.0, "indeterminate"),
        (55.0, 65.0, "indeterminate"),
        (30.0, 70.0, "indeterminate"),  # wider than the range
        (60.0, 62.0, "indeterminate"),  # touches the upper bound from above
    ],
)
def test_range_flag(lo, hi, flag):
    assert str(range_flag(lo, hi, 40.0, 60.0)) == flag


def test_range_flag_from_counts():
    def flag(k, n, name):
        a, b = clopper_pearson(k, n)
        r = DIFFERENTIAL_RANGES[name]
        return str(range_flag(100 * a, 100 * b, r.low, r.high))

    assert flag(800, 1000, "neutrophil") == "high"  # 77.4-82.4 %
    assert flag(50, 1000, "lymphocyte") == "low"  # 3.7-6.5 %
    assert flag(50, 1000, "monocyte") == "within"  # 3.7-6.5 % in 2-8 %
    assert flag(5, 100, "monocyte") == "indeterminate"  # 1.6-11.3 %


@pytest.mark.parametrize(
    ("k", "n", "flag"),
    [
        (300, 1000, "above"),  # 27.2-32.9 %
        (100, 1000, "below"),  # 8.2-12.0 %
        (20, 100, "indeterminate"),  # 12.7-29.2 %
        (3, 10, "indeterminate"),
        (0, 0, "indeterminate"),
    ],
)
def test_blast_cutoff_flag(k, n, flag):
    a, b = clopper_pearson(k, n)
    assert str(cutoff_flag(100 * a, 100 * b, BLAST_CUTOFF_PERCENT)) == flag


def test_cutoff_is_inclusive_above():
    assert str(cutoff_flag(20.0, 30.0, 20.0)) == "above"
    assert str(cutoff_flag(10.0, 20.0, 20.0)) == "indeterminate"
    assert str(cutoff_flag(10.0, 19.99, 20.0)) == "below"


def test_vectorised_flags():
    assert range_flag([61, 30, 41, 35], [70, 39, 59, 45], 40, 60).tolist() == [
        "high", "low", "within", "indeterminate",
    ]
    assert cutoff_flag([25, 1], [30, 5], 20).tolist() == ["above", "below"]


def test_bad_range():
    with pytest.raises(HemoflowError):
        ReferenceRange("x", 5.0, 1.0)
    with pytest.raises(HemoflowError):
        range_flag(1, 2, 5, 1)


def test_explanations_are_plain_words():
    t = explain_range_flag("neutrophil", "high", percent=80.0, ci_low=77.4, ci_high=82.4,
                           ref_low=40.0, ref_high=60.0, n=1000)
    assert "high" in t and "40-60 %" in t and "1000" in t
    t = explain_range_flag("monocyte", "indeterminate", percent=5.0, ci_low=1.6, ci_high=11.3,
                           ref_low=2.0, ref_high=8.0, n=100, cells_to_resolve=319)
    assert "319" in t and "219 more" in t
    t = explain_cutoff_flag("blasts were", "above", percent=30.0, ci_low=27.2, ci_high=32.9, cutoff=20.0, n=1000)
    assert "at or above the 20 % cut-off" in t
