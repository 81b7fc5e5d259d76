"""JobConfig: parsing, environment overrides and clear errors on bad values."""

from __future__ import annotations

import pytest

from hemoflow.config import JobConfig, parse_bool
from hemoflow.errors import HemoflowError


def test_defaults_and_roundtrip():
    cfg = JobConfig()
    assert cfg.tile_size == 4096 and cfg.tta is False
    assert JobConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("raw,expected", [("1", True), ("true", True), (" Yes", True), ("on", True),
                                          ("0", False), ("false", False), ("NO", False), (True, True),
                                          (0, False), (1, True)])
def test_parse_bool(raw, expected):
    assert parse_bool("tta", raw) is expected


@pytest.mark.parametrize("raw", ["maybe", "", 2, 0.5, None])
def test_parse_bool_rejects(raw):
    with pytest.raises(HemoflowError, match="tta must be true or false"):
        parse_bool("tta", raw)


def test_from_env_reads_tta_and_overrides_win():
    env = {"HEMOFLOW_TTA": "true", "HEMOFLOW_TILE_SIZE": "2048"}
    cfg = JobConfig.from_env(env)
    assert cfg.tta is True and cfg.tile_size == 2048
    assert JobConfig.from_env(env, tta=False).tta is False
    assert JobConfig.from_env({}).tta is False
    with pytest.raises(HemoflowError, match="tta"):
        JobConfig.from_env({"HEMOFLOW_TTA": "perhaps"})
    with pytest.raises(HemoflowError, match="unknown JobConfig fields"):
        JobConfig.from_dict({"ttA": True})
