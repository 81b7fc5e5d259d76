"""``require``: a missing component skips on a developer's machine and fails under CI=true."""

import pytest
from _require import require, require_import


def test_missing_component_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no widget"):
        require(False, "no widget")
    require(True, "never raised")


def test_missing_component_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no widget"):
        require(False, "no widget")
    with pytest.raises(pytest.fail.Exception, match="hemoflow_no_such_module"):
        require_import("hemoflow_no_such_module")
    assert require_import("json").dumps([1]) == "[1]"
