"""Exact binomial intervals against published values, and cells_to_resolve."""

from __future__ import annotations

import numpy as np
import pytest

from hemoflow.errors import HemoflowError
from hemoflow.stats.intervals import _interval, cells_to_resolve, clopper_pearson, resolved


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (10, 100, 4.9, 17.6),
        (20, 200, 6.2, 15.0),
        (100, 1000, 8.2, 12.0),
        (40, 200, 14.7, 26.2),
    ],
)
def test_known_values(k, n, lo, hi):
    a, b = clopper_pearson(k, n)
    assert round(100 * float(a), 1) == lo
    assert round(100 * float(b), 1) == hi


def test_edges_zero_and_all():
    # 0 of n: lower bound 0, upper 1 - (alpha/2)^(1/n); n of n mirrored.
    for n in (1, 10, 100):
        a, b = clopper_pearson(0, n)
        assert a == 0.0
        assert b == pytest.approx(1 - 0.025 ** (1 / n))
        a, b = clopper_pearson(n, n)
        assert b == 1.0
        assert a == pytest.approx(0.025 ** (1 / n))
    assert clopper_pearson(0, 100)[1] == pytest.approx(0.03621669264517642)


def test_no_cells_is_uninformative():
    a, b = clopper_pearson(0, 0)
    assert (float(a), float(b)) == (0.0, 1.0)


def test_vectorised_matches_scalar():
    k = np.array([[0, 3], [50, 100]])
    n = np.array([[100, 100], [100, 100]])
    a, b = clopper_pearson(k, n)
    assert a.shape == b.shape == (2, 2)
    for idx in np.ndindex(k.shape):
        sa, sb = clopper_pearson(int(k[idx]), int(n[idx]))
        assert a[idx] == sa and b[idx] == sb
    assert np.all(a <= k / n) and np.all(k / n <= b)


def test_confidence_level_widens():
    a95, b95 = clopper_pearson(10, 100)
    a99, b99 = clopper_pearson(10, 100, confidence=0.99)
    assert a99 < a95 and b99 > b95


@pytest.mark.parametrize(("k", "n"), [(-1, 10), (11, 10), (1, -1)])
def test_rejects_bad_counts(k, n):
    with pytest.raises(HemoflowError):
        clopper_pearson(k, n)
    with pytest.raises(ValueError):  # HemoflowError is a ValueError
        clopper_pearson(k, n)


def test_rejects_bad_confidence():
    with pytest.raises(HemoflowError, match="confidence"):
        clopper_pearson(1, 10, confidence=1.5)


def _brute(k, n, lo, hi, limit=20_000):
    p = k / n
    m = np.arange(n, limit, dtype=float)
    a, b = _interval(p * m, m, 0.95)
    ok = resolved(a, b, lo, hi)
    return int(m[np.argmax(ok)]) if ok.any() else -1


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (5, 100, 0.02, 0.08),  # inside, not yet settled
        (3, 100, 0.02, 0.08),  # near the lower edge
        (1, 50, 0.005, 0.01),  # basophils
        (0, 10, 0.01, 0.04),  # none seen: settles as "low"
        (12, 100, 0.02, 0.08),  # above the range
        (15, 60, 0.2, 0.2),  # a single cut-off
    ],
)
def test_cells_to_resolve_is_the_smallest_settling_count(k, n, lo, hi):
    got = int(cells_to_resolve(k, n, lo, hi))
    assert got == _brute(k, n, lo, hi)
    assert got > n
    # Settled at the answer and at every larger count checked.
    m = np.arange(got, got + 200, dtype=float)
    a, b = _interval(k / n * m, m, 0.95)
    assert resolved(a, b, lo, hi).all()


def test_cells_to_resolve_literal_values():
    assert int(cells_to_resolve(5, 100, 0.02, 0.08)) == 319
    assert int(cells_to_resolve(3, 100, 0.02, 0.08)) == 929


def test_cells_to_resolve_already_settled_returns_n():
    assert int(cells_to_resolve(50, 200, 0.40, 0.60)) == 200
    assert int(cells_to_resolve(80, 100, 0.40, 0.60)) == 100


def test_cells_to_resolve_unresolvable():
    # The estimate sits exactly on a boundary; and no cells at all.
    assert int(cells_to_resolve(60, 100, 0.40, 0.60)) == -1
    assert int(cells_to_resolve(0, 0, 0.40, 0.60)) == -1
    assert int(cells_to_resolve(20, 100, 0.2, 0.2)) == -1


def test_cells_to_resolve_vectorised():
    out = cells_to_resolve([5, 3, 50], [100, 100, 200], 0.02, [0.08, 0.08, 0.60])
    assert out.dtype == np.int64
    assert out.tolist() == [319, 929, 200]
