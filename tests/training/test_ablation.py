"""Ablation switches live outside SegmentParams and, at their defaults, change nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hemoflow import synth
from hemoflow.errors import HemoflowError
from hemoflow.stages import SegmentParams, analyze_field
from hemoflow.stages.params import ABLATION_DEFAULTS
from hemoflow.training.ablation import AblationParams


def test_switches_are_not_segment_params():
    base = {f.name for f in dataclasses.fields(SegmentParams)}
    extra = {f.name for f in dataclasses.fields(AblationParams)} - base
    assert extra == set(ABLATION_DEFAULTS)
    assert not base & set(ABLATION_DEFAULTS)
    assert set(SegmentParams().to_dict()) == base  # job records and ledger keys never carry them
    with pytest.raises(TypeError):
        SegmentParams(smooth_cell=True)


def test_switches_are_checked():
    assert AblationParams(smooth=0, close_um=1).smooth is False
    with pytest.raises(HemoflowError, match="close_um"):
        AblationParams(close_um=-1)
    with pytest.raises(HemoflowError, match="cell_threshold_scale"):
        AblationParams(cell_threshold_scale=0)


@pytest.fixture(scope="module")
def field():
    return synth.synth_field((400, 500), mpp=0.25, seed=3)[0]


def _table(rgb, params):
    t = analyze_field(rgb, mpp=0.25, params=params).table
    return {k: np.asarray(v) for k, v in t.items()}


def test_defaults_analyse_like_production(field):
    a, b = _table(field, SegmentParams()), _table(field, AblationParams())
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].tolist() == b[k].tolist(), k


@pytest.mark.parametrize("switch", [{"smooth_cell": True}, {"close_um": 1.5}, {"cell_threshold_scale": 0.5},
                                    {"rbc_density_count": False}, {"platelet_count_model": False},
                                    {"normalize_background": False}, {"smooth": False}])
def test_each_switch_reaches_the_stages(field, switch):
    a, b = _table(field, AblationParams()), _table(field, AblationParams(**switch))
    assert any(a[k].tolist() != b[k].tolist() for k in ("cls", "area_px", "count_weight", "y")), switch
