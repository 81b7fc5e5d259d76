"""Fixtures of the report tests: a small synthetic patient (cells + thumbnails) and a headless browser."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
from _require import require
from report_synth import make_cells, make_thumbnail


@pytest.fixture()
def patient_cells() -> pd.DataFrame:
    """Two slides of one patient, pooled."""
    return pd.concat([make_cells("slide-A", seed=0), make_cells("slide-B", seed=1)], ignore_index=True)


@pytest.fixture()
def thumbnails(patient_cells) -> dict:
    return {s: make_thumbnail(c) for s, c in patient_cells.groupby("slide")}


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary ($HEMOFLOW_CHROMIUM first), or None."""
    env = os.environ.get("HEMOFLOW_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    path = find_chromium()
    require(path is not None, "no headless Chromium found: install Debian's 'chromium' package "
            "(apt-get install chromium) or set HEMOFLOW_CHROMIUM")
    return path
