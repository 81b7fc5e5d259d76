"""The blood-smear QC gate: synthetic smears pass, blank and tissue-like images fail, and
on real data every BCCD field passes while the H&E slides fail.

The real-data tests skip with a reason when ``../shared/data`` (or ``$HEMOFLOW_DATA``) is
absent, and fail instead under ``CI=true``, where the data must be present.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from hemoflow import synth
from hemoflow.errors import HemoflowError, UnsupportedImageError
from hemoflow.stages.qc import QCParams, QCResult, smear_qc

REPO = Path(__file__).resolve().parents[2]


def _tissue_like(seed: int = 0, shape=(1200, 1200)) -> np.ndarray:
    """An H&E-like section: one continuous pink-magenta sheet with torn edges, fibres and
    scattered purple nuclei of 5-9 µm (0.5 µm/px), over white glass."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    edge = ndi.gaussian_filter(rng.normal(size=shape), 40) * 4000
    sheet = ((yy - h / 2) ** 2 / (0.42 * h) ** 2 + (xx - w / 2) ** 2 / (0.38 * w) ** 2) * 1.0 < 1.0 + edge
    texture = ndi.gaussian_filter(rng.normal(size=shape), 3)
    texture = 0.75 + 0.5 * (texture - texture.min()) / (np.ptp(texture) + 1e-9)
    od = np.zeros((h, w, 3), np.float32)
    eosin = np.array([0.15, 1.0, 0.45], np.float32)  # absorbs green: pink-magenta
    od += sheet[..., None] * texture[..., None] * eosin
    nuclei = np.zeros(shape, bool)
    for _ in range(900):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        r = rng.uniform(5, 9) / 0.5 / 2
        nuclei |= ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)
    nuclei &= sheet
    od += nuclei[..., None] * np.array([1.0, 1.1, 0.5], np.float32)  # haematoxylin: purple
    rgb = np.array([246, 244, 245], np.float32) * np.exp(-od) + rng.normal(0, 2, (h, w, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed,mpp", [(0, 0.25), (7, 0.25), (3, 0.5)])
def test_synthetic_smear_is_accepted(seed, mpp):
    rgb, truth = synth.synth_field((int(384 / mpp), int(384 / mpp)), mpp=mpp, seed=seed)
    res = smear_qc(rgb, mpp=mpp)
    assert res.ok, res.reason
    assert res.reason.startswith("blood smear:")
    m = res.measures
    assert 6.0 <= m["rbc_diameter_um"] <= 9.0
    n_rbc = int((truth["cls"] == "rbc").sum())
    # most red cells stand alone and round (the edge's are not counted; lymphocytes are
    # round cells too)
    assert 0.6 * n_rbc <= m["n_round_cells"] <= len(truth["cls"])


def test_synthetic_smear_without_pixel_size_is_accepted():
    rgb, _ = synth.synth_field((1024, 1024), mpp=0.46, seed=2)
    res = smear_qc(rgb, mpp=None)
    assert res.ok, res.reason
    assert res.measures["rbc_diameter_um"] is None  # no size in µm without a pixel size


@pytest.mark.parametrize("value", [230, 0, 255])
def test_flat_image_is_rejected(value):
    res = smear_qc(np.full((512, 512, 3), value, np.uint8), mpp=0.25)
    assert not res.ok
    assert res.reason.startswith("no stained material"), res.reason


def test_noisy_blank_glass_is_rejected():
    rng = np.random.default_rng(1)
    rgb = np.clip(rng.normal(232, 3, (600, 600, 3)), 0, 255).astype(np.uint8)
    res = smear_qc(rgb, mpp=0.25)
    assert not res.ok and "no stained material" in res.reason, res.reason


def test_tissue_like_image_is_rejected():
    res = smear_qc(_tissue_like(), mpp=0.5)
    assert not res.ok
    assert res.reason.startswith("looks like tissue"), res.reason
    assert res.measures["sheet_fraction"] > 0.9
    assert "pink-purple" in res.reason


def test_smear_at_a_wrong_pixel_size_is_rejected():
    # a 0.25 µm/px smear declared at 0.1 µm/px: its "red cells" measure 3 µm
    rgb, _ = synth.synth_field((1536, 1536), mpp=0.25, seed=4)
    res = smear_qc(rgb, mpp=0.1)
    assert not res.ok
    assert "µm" in res.reason, res.reason


def test_result_round_trips_and_params_are_plain():
    res = smear_qc(synth.synth_field((512, 512), mpp=0.25, seed=1)[0], mpp=0.25)
    assert QCResult.from_dict(res.to_dict()) == res
    assert QCParams().to_dict()["rbc_diameter_um"] == (6.0, 9.0)


def test_bad_inputs_raise_hemoflow_errors():
    with pytest.raises(UnsupportedImageError, match="uint8"):
        smear_qc(np.zeros((64, 64, 3), np.uint16), mpp=0.25)
    with pytest.raises(UnsupportedImageError, match="shape"):
        smear_qc(np.zeros((64, 64), np.uint8), mpp=0.25)
    for bad in (-0.5, 0, float("nan"), "x"):
        with pytest.raises(HemoflowError, match="mpp"):
            smear_qc(np.zeros((64, 64, 3), np.uint8), mpp=bad)


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def shared_data() -> Path:
    env = os.environ.get("HEMOFLOW_DATA")
    d = Path(env) if env else REPO.parent / "shared" / "data"
    if not ((d / "bccd" / "JPEGImages").is_dir() and (d / "slides").is_dir()):
        msg = f"real data not found at {d} (set HEMOFLOW_DATA or place it at ../shared/data)"
        if os.environ.get("CI", "").strip().lower() in ("true", "1"):
            pytest.fail(msg + "; CI=true requires it")
        pytest.skip(msg)
    return d


@pytest.mark.data
def test_every_bccd_field_is_accepted(shared_data):
    from hemoflow.analyze import estimate_shared_mpp, read_image

    paths = sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))
    assert len(paths) >= 200
    mpp, _ = estimate_shared_mpp(paths[::10])  # the set's pooled pixel size
    rejected = {}
    for p in paths:
        res = smear_qc(read_image(p), mpp=mpp)
        if not res.ok:
            rejected[p.stem] = res.reason
    assert not rejected, rejected


@pytest.mark.data
@pytest.mark.parametrize("name", ["CMU-1-Small-Region.svs", "tcga-cr-7395-01a-01-ts1.svs"])
def test_he_slides_are_rejected(shared_data, name, tmp_path):
    from hemoflow.io import ingest, open_slide
    from hemoflow.pipeline.tasks import calibration_sample

    ingest(str(shared_data / "slides" / name), str(tmp_path / "image.ome.zarr"))
    slide = open_slide(str(tmp_path / "image.ome.zarr"))
    sample = calibration_sample(slide)
    # at the file's pixel size, without one, and at any plausible one
    for mpp in {slide.mpp, None, 0.25, 0.5, 1.0}:
        res = smear_qc(sample, mpp=mpp)
        assert not res.ok, (mpp, res.reason)
        assert res.reason.startswith("looks like tissue"), (mpp, res.reason)
