"""Tests of the synthetic smear / slide generator (hemoflow.synth)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from hemoflow.errors import HemoflowError
from hemoflow.synth import (
    WBC_MIX_PRESETS,
    Stain,
    plan_slide,
    synth_field,
    write_synthetic_slide,
    write_truth,
)

TRUTH_COLUMNS = ["id", "cls", "type", "y", "x", "area_px", "area_um2", "irregular"]


@pytest.fixture(scope="module")
def field():
    return synth_field((768, 640), seed=11, n_wbc=4)


def test_field_shape_and_truth_columns(field):
    rgb, truth = field
    assert rgb.shape == (768, 640, 3) and rgb.dtype == np.uint8
    assert list(truth) == TRUTH_COLUMNS
    n = len(truth["id"])
    assert all(len(v) == n for v in truth.values())
    assert np.array_equal(truth["id"], np.arange(n))
    assert set(truth["cls"]) == {"rbc", "wbc", "platelet"}
    assert (truth["cls"] == "wbc").sum() == 4
    # every cell lies inside the field
    assert truth["y"].min() > 0 and truth["y"].max() < 768
    assert truth["x"].min() > 0 and truth["x"].max() < 640
    np.testing.assert_allclose(truth["area_um2"], truth["area_px"] * 0.25**2, rtol=0.02, atol=0.1)


def test_appearance_statistics(field):
    rgb, truth = field
    bg = np.median(rgb[:8, :8].reshape(-1, 3), axis=0)
    assert (bg > 190).all(), bg  # light background
    rbc = truth["cls"] == "rbc"
    ys, xs = np.rint(truth["y"][rbc]).astype(int), np.rint(truth["x"][rbc]).astype(int)
    # RBCs are pink-red: green absorbs more than red; darker than the background
    ring = rgb[ys, np.clip(xs + 9, 0, 639)].astype(float).mean(axis=0)
    assert ring[1] < ring[0] - 20 and ring[1] < bg[1] - 40


def test_determinism_and_seed():
    a, ta = synth_field((300, 256), seed=3)
    b, tb = synth_field((300, 256), seed=3)
    c, _ = synth_field((300, 256), seed=4)
    assert np.array_equal(a, b)
    for k in ta:
        assert np.array_equal(ta[k], tb[k])
    assert not np.array_equal(a, c)


@settings(max_examples=6, deadline=None)
@given(y0=st.integers(0, 400), x0=st.integers(0, 400), h=st.integers(1, 300),
       w=st.integers(1, 300))
def test_any_region_matches_the_whole_field(y0, x0, h, w):
    plan = plan_slide((700, 700), seed=5, n_wbc=3)
    whole = _whole(plan)
    y1, x1 = min(y0 + h, 700), min(x0 + w, 700)
    assert np.array_equal(plan.render_region(y0, x0, y1, x1), whole[y0:y1, x0:x1])


_WHOLE = {}


def _whole(plan):
    key = (plan.shape, plan.seed)
    if key not in _WHOLE:
        _WHOLE[key] = plan.render_region(0, 0, *plan.shape)
    return _WHOLE[key]


def test_wbc_mix_counts_and_placement():
    mix = {"neutrophil": 0.4, "lymphocyte": 0.2, "monocyte": 0.1, "eosinophil": 0.1,
           "basophil": 0.1, "blast": 0.1}
    plan = plan_slide((2048, 2048), seed=8, n_wbc=30, wbc_mix=mix)
    truth = plan.truth()
    types, counts = np.unique(truth["type"][truth["cls"] == "wbc"], return_counts=True)
    assert dict(zip(types.tolist(), counts.tolist())) == {
        "neutrophil": 12, "lymphocyte": 6, "monocyte": 3, "eosinophil": 3, "basophil": 3,
        "blast": 3}
    # WBCs keep 2 um (8 px) from every other cell; platelets touch nothing.
    c = plan.cells
    d = np.hypot(c["cy"][:, None] - c["cy"][None], c["cx"][:, None] - c["cx"][None])
    np.fill_diagonal(d, np.inf)
    rb = c["rb"].astype(float)
    need = rb[:, None] + rb[None]
    wbc = c["type"] >= 2
    assert (d[wbc] >= need[wbc] + 8 - 1e-6).all()
    plt = c["type"] == 1
    assert (d[plt] >= need[plt]).all()
    # RBCs overlap at most lightly
    rbc = c["type"] == 0
    rs = c["rs"].astype(float)  # nominal radius (halfway to the bound if irregular)
    assert (rs >= c["R"]).all()
    assert (d[np.ix_(rbc, rbc)] >= 0.9 * (rs[rbc][:, None] + rs[rbc][None]) - 1e-6).all()


def test_rbc_sizes_density_and_irregular():
    truth = plan_slide((2048, 2048), seed=9, irregular_fraction=0.12).truth()
    rbc = truth["cls"] == "rbc"
    area = truth["area_um2"][rbc]
    assert 40 < area.mean() < 50  # 7.5 um discs: 44 um^2
    assert 0.3 < truth["area_px"][rbc].sum() / 2048**2 < 0.45
    irr = truth["irregular"][rbc].mean()
    assert 0.07 < irr < 0.17
    assert not truth["irregular"][~rbc].any()
    # ~1 WBC per 100 RBC by default, platelets ~1 per 15
    n_rbc = rbc.sum()
    assert 0.3 * n_rbc / 100 < (truth["cls"] == "wbc").sum() < 2 * n_rbc / 100
    assert n_rbc / 30 < (truth["cls"] == "platelet").sum() < n_rbc / 8
    wbc = truth["cls"] == "wbc"
    d = 2 * np.sqrt(truth["area_um2"][wbc] / np.pi)
    assert (d > 6.5).all() and (d < 19.5).all()


def test_truth_area_and_centroid_match_pixels():
    # a sparse field: isolated cells, measured by thresholding the optical density
    rgb, truth = synth_field((512, 512), seed=21, rbc_density=0.04, n_wbc=1, n_platelets=2,
                             irregular_fraction=0.5)
    od = -np.log(np.clip(rgb.astype(float), 1, None) / np.median(rgb.reshape(-1, 3), axis=0))
    mask = ndimage.binary_opening(od.max(axis=2) > 0.1, iterations=1)
    lab, n = ndimage.label(mask)
    assert n == len(truth["id"])
    idx = np.arange(1, n + 1)
    cy, cx = np.array(ndimage.center_of_mass(mask, lab, idx)).T
    area = ndimage.sum(mask, lab, idx)
    for i in range(len(truth["id"])):
        j = np.argmin(np.hypot(cy - truth["y"][i], cx - truth["x"][i]))
        assert np.hypot(cy[j] - truth["y"][i], cx[j] - truth["x"][i]) < 1.5
        assert abs(area[j] - truth["area_px"][i]) / truth["area_px"][i] < 0.15


def test_stain_varies_between_slides():
    bgs = [synth_field((256, 256), seed=s, rbc_density=0.0, n_wbc=0, n_platelets=0)[0]
           .reshape(-1, 3).mean(axis=0) for s in range(4)]
    assert np.ptp(np.array(bgs), axis=0).max() > 3
    s = Stain().jittered(1)
    assert Stain.from_dict(s.to_dict()) == s and s != Stain()


def test_ome_tiff_pyramid_and_tile_independence(tmp_path):
    kw = dict(shape=(1100, 900), mpp=0.5, seed=6, n_wbc=3, min_level_size=200)
    t1 = write_synthetic_slide(tmp_path / "a.ome.tif", tile=256, **kw)
    t2 = write_synthetic_slide(tmp_path / "b.ome.tif", tile=512, name="case-1",
                               truth_path=tmp_path / "b.csv", **kw)
    assert all(np.array_equal(t1[k], t2[k]) for k in t1)
    with tifffile.TiffFile(tmp_path / "a.ome.tif") as fa, \
            tifffile.TiffFile(tmp_path / "b.ome.tif") as fb:
        assert fa.is_ome and len(fa.series) == 1
        la, lb = fa.series[0].levels, fb.series[0].levels
        assert [lv.shape for lv in la] == [(1100, 900, 3), (550, 450, 3), (275, 225, 3),
                                           (138, 113, 3)]
        for a, b in zip(la, lb):
            assert np.array_equal(a.asarray(), b.asarray())
        p0 = fa.pages[0]
        assert (p0.tilelength, p0.tilewidth) == (256, 256)
        assert fb.pages[0].tilewidth == 512
        assert p0.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert len(p0.pages) == 3  # SubIFDs
        xml = fa.ome_metadata
        assert 'PhysicalSizeX="0.5"' in xml and 'PhysicalSizeY="0.5"' in xml
        assert 'PhysicalSizeXUnit="µm"' in xml
        assert 'Name="case-1"' in fb.ome_metadata
        l0 = la[0].asarray()
        l1 = la[1].asarray().astype(int)
        mean = l0.reshape(550, 2, 450, 2, 3).astype(int).mean(axis=(1, 3))
        assert np.abs(l1 - mean).max() <= 1
    # the same pixels as the in-memory field
    rgb, truth = synth_field((1100, 900), mpp=0.5, seed=6, n_wbc=3)
    assert np.array_equal(rgb, l0)
    import pandas as pd

    df = pd.read_csv(tmp_path / "b.csv")
    assert list(df.columns) == TRUTH_COLUMNS and len(df) == len(truth["id"])


def test_bounded_memory(tmp_path):
    shape = (4096, 4096)
    slide_bytes = shape[0] * shape[1] * 3
    write_synthetic_slide(tmp_path / "warm.ome.tif", shape=(256, 256))  # imports, caches
    tracemalloc.start()
    try:
        write_synthetic_slide(tmp_path / "big.ome.tif", shape=shape, seed=2, rbc_density=0.1,
                              n_wbc=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < slide_bytes / 4, f"peak {peak / 1e6:.1f} MB for a {slide_bytes / 1e6:.0f} MB slide"
    with tifffile.TiffFile(tmp_path / "big.ome.tif") as tf:
        assert [lv.shape[:2] for lv in tf.series[0].levels] == [
            (4096, 4096), (2048, 2048), (1024, 1024)]


def test_presets_and_validation(tmp_path):
    for name in WBC_MIX_PRESETS:
        plan_slide((256, 256), n_wbc=2, wbc_mix=name)
    truth = plan_slide((2048, 2048), seed=1, n_wbc=20, wbc_mix="acute_leukaemia").truth()
    assert (truth["type"] == "blast").sum() == 6
    with pytest.raises(HemoflowError, match="unknown WBC types"):
        plan_slide((256, 256), wbc_mix={"myelocyte": 1.0})
    with pytest.raises(ValueError, match="preset"):
        plan_slide((256, 256), wbc_mix="nope")
    with pytest.raises(ValueError, match="rbc_density"):
        plan_slide((256, 256), rbc_density=0.9)
    with pytest.raises(ValueError, match="tile"):
        write_synthetic_slide(tmp_path / "x.tif", shape=(256, 256), tile=100)
    write_truth(tmp_path / "t.parquet", truth)
    import pandas as pd

    df = pd.read_parquet(tmp_path / "t.parquet")
    assert list(df.columns) == TRUTH_COLUMNS and df["irregular"].dtype == bool
