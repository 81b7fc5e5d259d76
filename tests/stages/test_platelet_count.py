"""The platelet candidate model: features measured on known shapes, locality, the shipped model's
decisions on clear cases, and keep_platelets' renumbering."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hemoflow.kernels import label
from hemoflow.stages._platelet_count import FEATURES, TYPICAL_DIAMETER_UM, WBC_DISTANCE_CAP_UM, candidate_features, keep_platelets, predict

UM = 2.0  # working px per µm
THR = 0.1
CTHR = 0.2
F = {name: i for i, name in enumerate(FEATURES)}


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _features(nuc, cell=None, cell_mask=None, wbc=None):
    lab, n = label(nuc > 0.75 * THR, connectivity=2)
    cell = np.zeros_like(nuc) if cell is None else cell
    cell_mask = np.zeros(nuc.shape, bool) if cell_mask is None else cell_mask
    wbc = np.zeros(nuc.shape, bool) if wbc is None else wbc
    return lab, n, candidate_features(lab, n, nucleus=nuc, cell=cell, cell_mask=cell_mask, wbc_mask=wbc,
                                      platelet_threshold=THR, cell_threshold=CTHR, px_per_um=UM)


def test_features_of_a_clear_platelet_on_background():
    nuc = np.zeros((40, 40), np.float32)
    m = _disc(nuc.shape, 20, 20, 2.5)
    nuc[m] = 2.0 * THR
    lab, n, x = _features(nuc)
    assert n == 1 and x.shape == (1, len(FEATURES))
    typical = math.pi / 4 * (TYPICAL_DIAMETER_UM * UM) ** 2
    assert x[0, F["bias"]] == 1.0
    assert x[0, F["log_area"]] == pytest.approx(math.log(m.sum() / typical))
    assert x[0, F["peak"]] == pytest.approx(2.0, abs=1e-2)
    assert x[0, F["mean"]] == pytest.approx(2.0, abs=1e-5)
    assert x[0, F["contrast"]] == pytest.approx(2.0, abs=1e-5)  # the ring is background (0)
    assert x[0, F["ring_on_rbc"]] == 0.0 and x[0, F["cell_inside"]] == 0.0
    assert x[0, F["wbc_distance"]] == WBC_DISTANCE_CAP_UM and x[0, F["border"]] == 0.0


def test_features_on_a_red_cell_near_a_wbc_and_at_the_edge():
    shape = (40, 60)
    nuc = np.zeros(shape, np.float32)
    nuc[_disc(shape, 20, 20, 2)] = 1.5 * THR
    nuc[0:3, 50:53] = 1.5 * THR  # cut by the top edge
    rbc = _disc(shape, 20, 20, 8)
    cell = np.where(rbc, 2.0 * CTHR, 0.0).astype(np.float32)
    wbc = np.zeros(shape, bool)
    wbc[:, 28:] = True  # a WBC edge 8 px = 4 µm right of the platelet's edge column (22)
    wbc[:, 48:56] = False
    lab, n, x = _features(nuc, cell, rbc, wbc & ~(nuc > 0))
    first = lab[20, 20] - 1
    assert x[first, F["ring_on_rbc"]] == pytest.approx(1.0)
    assert x[first, F["cell_inside"]] == pytest.approx(2.0) and x[first, F["cell_ring"]] == pytest.approx(2.0)
    assert x[first, F["wbc_distance"]] == pytest.approx((28 - 22) / UM, rel=0.1)
    edge = lab[1, 51] - 1
    assert x[edge, F["border"]] == 1.0 and x[first, F["border"]] == 0.0


def test_features_are_local():
    """A candidate's features from a crop with a 6 µm margin equal those from the whole field."""
    rng = np.random.default_rng(3)
    shape = (120, 160)
    nuc = (rng.random(shape).astype(np.float32) * 0.6 * THR)
    for cy, cx in ((30, 40), (80, 100), (60, 20)):
        nuc[_disc(shape, cy, cx, 2.5)] = 1.8 * THR
    cell = rng.random(shape).astype(np.float32) * 2 * CTHR
    cmask = cell > CTHR
    wbc = _disc(shape, 90, 130, 10) & ~(nuc > 0.75 * THR)
    lab, n, full = _features(nuc, cell, cmask, wbc)
    k = lab[80, 100] - 1
    m = int(6 * UM) + 6
    ys, xs = np.nonzero(lab == k + 1)
    sl = (slice(ys.min() - m, ys.max() + m + 1), slice(xs.min() - m, xs.max() + m + 1))
    lab2, n2, part = _features(nuc[sl], cell[sl], cmask[sl], wbc[sl])
    k2 = lab2[80 - sl[0].start, 100 - sl[1].start] - 1
    np.testing.assert_allclose(part[k2, 1:-1], full[k, 1:-1], rtol=1e-6)  # all but bias and border


def test_shipped_model_clear_cases():
    nuc = np.zeros((40, 80), np.float32)
    nuc[_disc(nuc.shape, 20, 20, TYPICAL_DIAMETER_UM * UM / 2)] = 3.0 * THR  # a clear platelet
    nuc[20, 60] = 0.9 * THR  # a faint one-pixel speck on a red cell
    nuc[21, 60] = 0.9 * THR
    rbc = _disc(nuc.shape, 20, 60, 8)
    cell = np.where(rbc, 2.0 * CTHR, 0.0).astype(np.float32)
    lab, n, x = _features(nuc, cell, rbc)
    keep = predict(x)
    assert keep[lab[20, 20] - 1] and not keep[lab[20, 60] - 1]
    out, m = keep_platelets(lab, n, x)
    assert m == 1 and out[20, 20] == 1 and out[20, 60] == 0 and out.dtype == np.int32


def test_predict_with_given_coefficients_and_empty_input():
    x = np.array([[1.0, 0.0], [1.0, 5.0]])
    coef = np.array([[0.0, 0.0], [0.0, 1.0]])  # class 1 when the second feature > 0
    assert predict(x, coef).tolist() == [False, True]
    assert predict(np.zeros((0, 2)), coef).shape == (0,)
    assert keep_platelets(np.zeros((4, 4), np.int32), 0, np.zeros((0, len(FEATURES))))[1] == 0
