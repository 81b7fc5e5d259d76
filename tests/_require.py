"""``require``: skip a test whose required component is missing, except in CI.

On a developer's machine a missing component (Chromium, the Helm SDK, the SeaweedFS
binary, the shared data, ...) skips the tests that need it, with the reason. In CI
(``CI=true``) ``.ci/run`` installs every one of them, so a missing or broken component is
a failure of the run, and a skip there would hide it.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def require(condition: object, reason: str, *, module: bool = False) -> None:
    """Fail (``CI=true``) or skip (elsewhere) with ``reason`` unless ``condition`` holds.

    ``module=True`` for a call at module level (a module-level skip)."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required component missing or broken (CI=true): {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=module)


def require_import(name: str, reason: str = "", *, module: bool = False):
    """``pytest.importorskip`` that fails under ``CI=true``: the imported module."""
    import importlib

    try:
        return importlib.import_module(name)
    except Exception as exc:  # ImportError, or a bundled native library failing to load
        require(False, f"{name} cannot be imported ({exc!r}){': ' + reason if reason else ''}", module=module)
