"""The real slide files in ../shared/data/slides (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest
from _require import require

from hemoflow.errors import UnsupportedImageError
from hemoflow.io import content_hash, ingest, open_slide, open_tiff

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def slides(data_dir):
    d = data_dir / "slides"
    require(d.is_dir(), f"no slides folder in {data_dir}")
    return d


def _ome_reader_shapes(url):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(url))()))
    return [tuple(d.shape) for d in node.data]


def test_cmu1_jpeg_svs(slides, tmp_path):
    src = slides / "CMU-1-Small-Region.svs"
    with open_tiff(src) as t:
        assert t.axes == "YXS" and t.compression == "JPEG"
        ref = t.read_block(1000, 1600, 500, 1300)
    info = ingest(src, tmp_path / "cmu1.zarr")
    assert info.shape == (2967, 2220) and info.dtype == "uint8"
    assert info.mpp == pytest.approx(0.499)
    slide = open_slide(info.url)
    slide.require_rgb8()
    np.testing.assert_array_equal(slide.read_region(1000, 500, 1600, 1300), ref)
    assert slide.n_levels == 3
    assert _ome_reader_shapes(info.url)[0] == (3, 2967, 2220)
    thumb, ds = slide.thumbnail(max_pixels=200_000)
    assert thumb.shape[0] * thumb.shape[1] <= 200_000 and ds > 1
    assert content_hash(src).startswith("ed92d5a9")


def test_tcga_jpeg2000_two_levels(slides, tmp_path):
    src = slides / "tcga-cr-7395-01a-01-ts1.svs"
    with open_tiff(src) as t:
        assert t.level_shapes == [(3567, 4443, 3), (1783, 2221, 3)]
        assert t.mpp is None  # no MPP in its ImageDescription
        ref = t.read_block(3000, 3567, 4000, 4443)  # bottom-right edge tiles
    info = ingest(src, tmp_path / "tcga.zarr", mpp=0.5)
    assert info.shape == (3567, 4443) and info.mpp == 0.5
    slide = open_slide(info.url)
    np.testing.assert_array_equal(slide.read_region(3000, 4000, 4000, 5000), ref)
    assert slide.level_shape(1) == (1783, 2221)
    assert content_hash(src).startswith("77da93f1")


def test_ome_multichannel_z_series(slides, tmp_path):
    src = slides / "multi-channel-z-series.ome.tif"
    info = ingest(src, tmp_path / "mcz.zarr")
    assert info.axes == ("c", "z", "y", "x") and info.dtype == "int8"
    assert info.shape == (167, 439)
    slide = open_slide(info.url)
    with open_tiff(src) as t:
        np.testing.assert_array_equal(slide.array(0)[...], t.read_level(0))
    with pytest.raises(UnsupportedImageError, match="int8"):
        slide.require_rgb8()
    assert _ome_reader_shapes(info.url) == [(3, 5, 167, 439)]
    assert content_hash(src).startswith("f8cebdb6")
