"""TIFF -> OME-Zarr ingest: exact pixels, pyramid, metadata, atomicity, errors."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import tracemalloc

import numpy as np
import pytest
import tifffile
import zarr

from hemoflow.errors import (
    SlideNotFoundError,
    SlideReadError,
    StorageError,
    UnsupportedImageError,
)
from hemoflow.io import content_hash, ingest, open_slide
from hemoflow.io.omezarr import downsample2


def _ref_pyramid(img: np.ndarray, n: int) -> list[np.ndarray]:
    """Expected levels, (c, y, x), computed on the whole image at once."""
    lv = np.moveaxis(img, -1, 0)
    out = [lv]
    for _ in range(1, n):
        lv = downsample2(lv, ("c", "y", "x"))
        out.append(lv)
    return out


def test_downsample2_literal():
    a = np.array([[[0, 1, 10], [3, 4, 20], [9, 9, 9]]], np.uint8)  # (c=1, 3, 3)
    np.testing.assert_array_equal(downsample2(a, ("c", "y", "x")), [[[2]]])  # (0+1+3+4+2)//4
    b = np.array([[250, 255], [255, 255]], np.uint8)
    assert downsample2(b, ("y", "x")).dtype == np.uint8
    assert downsample2(b, ("y", "x"))[0, 0] == 254  # no overflow, rounds half up


def test_rgb_pyramid_roundtrip(ome_pyramid, rgb_image, tmp_path):
    dest = tmp_path / "out.zarr"
    info = ingest(ome_pyramid, dest, chunk=256, threads=2)
    assert info.shape == (700, 900) and info.dtype == "uint8"
    assert info.axes == ("c", "y", "x")
    assert info.mpp == pytest.approx(0.25)
    assert info.n_levels == 3  # 700x900 -> 350x450 -> 175x225 (fits one 256 chunk)
    slide = open_slide(dest)
    assert slide.shape == (700, 900) and slide.n_levels == 3
    assert slide.mpp == pytest.approx(0.25)
    assert slide.level_shape(1) == (350, 450) and slide.level_shape(2) == (175, 225)
    assert slide.level_downsample(2) == 4.0
    slide.require_rgb8()
    # exact level 0
    np.testing.assert_array_equal(slide.read_region(0, 0, 700, 900), rgb_image)
    np.testing.assert_array_equal(slide.read_region(123, 45, 456, 789), rgb_image[123:456, 45:789])
    # lower levels: exact 2x2 means of the previous level, computed band by band
    ref = _ref_pyramid(rgb_image, 3)
    for lv in (1, 2):
        h, w = slide.level_shape(lv)
        np.testing.assert_array_equal(slide.read_region(0, 0, h, w, level=lv),
                                      np.moveaxis(ref[lv], 0, -1))
    # chunking and codec
    arr = slide.array(0)
    assert arr.chunks == (3, 256, 256)
    meta = json.loads((dest / "zarr.json").read_text())
    ms = meta["attributes"]["ome"]["multiscales"][0]
    assert meta["attributes"]["ome"]["version"] == "0.5"
    assert [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [1.0, 0.5, 0.5]
    assert meta["attributes"]["hemoflow"]["complete"] is True
    # nothing left behind
    assert sorted(os.listdir(tmp_path)) == ["out.zarr", "pyr.ome.tif"]


def test_slide_pickles_as_url(ome_pyramid, rgb_image, tmp_path):
    import pickle

    slide = open_slide(ingest(ome_pyramid, tmp_path / "o.zarr", chunk=256).url)
    data = pickle.dumps(slide)
    assert len(data) < 2000  # the URL, not the pixels
    again = pickle.loads(data)
    np.testing.assert_array_equal(again.read_region(0, 0, 50, 60), rgb_image[:50, :60])


def test_read_region_clips(ome_pyramid, rgb_image, tmp_path):
    slide = open_slide(ingest(ome_pyramid, tmp_path / "o.zarr", chunk=256).url)
    r = slide.read_region(-10, 850, 20, 1000)
    assert r.shape == (20, 50, 3) and r.dtype == np.uint8
    np.testing.assert_array_equal(r, rgb_image[0:20, 850:900])
    assert slide.read_region(800, 0, 900, 10).shape == (0, 10, 3)
    with pytest.raises(IndexError):
        slide.read_region(0, 0, 1, 1, level=7)


def test_thumbnail_budget(ome_pyramid, tmp_path):
    slide = open_slide(ingest(ome_pyramid, tmp_path / "o.zarr", chunk=256).url)
    th, ds = slide.thumbnail(max_pixels=20_000)
    assert th.dtype == np.uint8 and th.ndim == 3 and th.shape[2] == 3
    assert th.shape[0] * th.shape[1] <= 20_000
    assert ds == pytest.approx(900 / th.shape[1])
    full, ds1 = slide.thumbnail(max_pixels=10**7)
    assert full.shape == (700, 900, 3) and ds1 == 1.0


def test_mpp_override_and_unknown(tmp_path, rgb_image):
    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, rgb_image, photometric="rgb")  # no resolution: unknown mpp
    info = ingest(p, tmp_path / "a.zarr")
    assert info.mpp is None and open_slide(info.url).mpp is None
    info = ingest(p, tmp_path / "b.zarr", mpp=0.34)
    assert open_slide(info.url).mpp == pytest.approx(0.34)
    with pytest.raises(ValueError):
        ingest(p, tmp_path / "c.zarr", mpp=-1)


def test_xresolution_kept(tmp_path, rgb_image):
    p = tmp_path / "res.tif"
    tifffile.imwrite(p, rgb_image, photometric="rgb", rowsperstrip=64, compression="zlib",
                     resolution=(1e4 / 0.2, 1e4 / 0.2), resolutionunit="CENTIMETER")
    info = ingest(p, tmp_path / "o.zarr", compressor="zstd")
    slide = open_slide(info.url)
    assert slide.mpp == pytest.approx(0.2)
    np.testing.assert_array_equal(slide.read_region(0, 0, 700, 900), rgb_image)


def test_16bit_gray(tmp_path):
    data = (np.arange(300 * 200, dtype=np.uint32).reshape(300, 200) * 7 % 65536).astype(np.uint16)
    p = tmp_path / "g16.tif"
    tifffile.imwrite(p, data, tile=(64, 64))
    info = ingest(p, tmp_path / "o.zarr", chunk=128)
    assert info.axes == ("y", "x") and info.dtype == "uint16" and info.n_levels == 3
    slide = open_slide(info.url)
    np.testing.assert_array_equal(slide.array(0)[...], data)
    assert slide.array(0).dtype == np.uint16
    with pytest.raises(UnsupportedImageError, match="uint16"):
        slide.require_rgb8()
    with pytest.raises(TypeError):  # also the builtin kind
        slide.read_region(0, 0, 10, 10)


def test_gray8_refused_for_processing(tmp_path):
    data = np.random.default_rng(1).integers(0, 255, (100, 120), dtype=np.uint8)
    p = tmp_path / "g8.tif"
    tifffile.imwrite(p, data)
    slide = open_slide(ingest(p, tmp_path / "o.zarr").url)
    assert slide.axes == ("y", "x") and slide.dtype == np.uint8
    np.testing.assert_array_equal(slide.array(0)[...], data)
    with pytest.raises(UnsupportedImageError, match=r"axes \('y', 'x'\)"):
        slide.require_rgb8()


def test_multichannel_z_series(tmp_path):
    data = np.arange(2 * 3 * 40 * 50, dtype=np.uint16).reshape(2, 3, 40, 50)
    p = tmp_path / "czyx.ome.tif"
    tifffile.imwrite(p, data, ome=True, metadata={"axes": "CZYX"})
    info = ingest(p, tmp_path / "o.zarr")
    assert info.axes == ("c", "z", "y", "x")
    slide = open_slide(info.url)
    np.testing.assert_array_equal(slide.array(0)[...], data)
    with pytest.raises(UnsupportedImageError, match=r"\('c', 'z', 'y', 'x'\)"):
        slide.require_rgb8()


def test_existing_destination(ome_pyramid, tmp_path):
    dest = tmp_path / "o.zarr"
    ingest(ome_pyramid, dest, chunk=256)
    with pytest.raises(StorageError, match="already exists"):
        ingest(ome_pyramid, dest, chunk=256)
    info = ingest(ome_pyramid, dest, chunk=512, overwrite=True)
    assert open_slide(info.url).array(0).chunks == (3, 512, 512)
    assert sorted(os.listdir(tmp_path)) == ["o.zarr", "pyr.ome.tif"]


def test_failed_ingest_leaves_nothing(ome_pyramid, tmp_path):
    data = ome_pyramid.read_bytes()
    bad = tmp_path / "cut.tif"
    bad.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(SlideReadError):
        ingest(bad, tmp_path / "o.zarr")
    assert sorted(os.listdir(tmp_path)) == ["cut.tif", "pyr.ome.tif"]


def test_missing_source(tmp_path):
    with pytest.raises(SlideNotFoundError):
        ingest(tmp_path / "none.svs", tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()


def test_incomplete_image_refused(ome_pyramid, tmp_path):
    dest = tmp_path / "o.zarr"
    ingest(ome_pyramid, dest, chunk=256)
    g = zarr.open_group(dest, mode="r+")
    g.attrs["hemoflow"] = {**g.attrs["hemoflow"], "complete": False}
    with pytest.raises(SlideReadError, match="incomplete"):
        open_slide(dest)


def test_open_slide_errors(tmp_path, ome_pyramid):
    with pytest.raises(SlideNotFoundError):
        open_slide(tmp_path / "missing.zarr")
    zarr.create_group(tmp_path / "plain.zarr")
    with pytest.raises(SlideReadError, match="not an OME-Zarr"):
        open_slide(tmp_path / "plain.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(SlideReadError, match="not a Zarr group"):
        open_slide(tmp_path / "folder")


def test_ome_zarr_reader_opens_output(ome_pyramid, tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    info = ingest(ome_pyramid, tmp_path / "o.zarr", chunk=256)
    loc = parse_url(info.url)
    assert loc is not None and loc.version == "0.5"
    node = next(iter(Reader(loc)()))
    assert any(isinstance(s, Multiscales) for s in node.specs)
    assert [tuple(d.shape) for d in node.data] == [(3, 700, 900), (3, 350, 450), (3, 175, 225)]
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [1.0, 0.25, 0.25]
    # and the stricter pydantic models of the spec accept it too
    from ome_zarr_models.v05.image import Image

    Image.from_zarr(zarr.open_group(info.url, mode="r"))


def test_content_hash(ome_pyramid, tmp_path):
    expected = hashlib.sha256(ome_pyramid.read_bytes()).hexdigest()
    assert content_hash(ome_pyramid) == expected
    assert content_hash(f"file://{ome_pyramid}", block_size=1000) == expected
    with pytest.raises(SlideNotFoundError):
        content_hash(tmp_path / "nothing.svs")


def test_bounded_memory(tmp_path):
    """A 6000x6000 RGB slide (108 MB) is ingested with a small fraction of that in memory."""
    h = w = 6000
    p = tmp_path / "big.tif"
    rng = np.random.default_rng(0)
    row = rng.integers(0, 256, (256, w, 3), dtype=np.uint8)

    def tiles():  # write the slide tile by tile: the test never holds it whole either
        for y in range(0, h, 256):
            for x in range(0, w, 256):
                t = np.zeros((256, 256, 3), np.uint8)
                blk = row[: min(256, h - y), x : x + 256]
                t[: blk.shape[0], : blk.shape[1]] = blk
                t[..., 0] = (y // 256) % 256
                yield t

    tifffile.imwrite(p, tiles(), shape=(h, w, 3), dtype=np.uint8, tile=(256, 256),
                     photometric="rgb", compression="zlib", compressionargs={"level": 1})
    full = h * w * 3
    ingest(p, tmp_path / "warm.zarr", chunk=512, levels=2)  # imports and caches first
    gc.collect()
    tracemalloc.start()
    try:
        info = ingest(p, tmp_path / "big.zarr", chunk=512, threads=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.shape == (h, w) and info.n_levels == 5
    # per thread: one source block, one chunk in flight through zarr's codec pipeline
    print(f"ingest peak {peak / 1e6:.1f} MB for {full / 1e6:.0f} MB")
    assert peak < 0.25 * full, f"peak {peak / 1e6:.1f} MB for a {full / 1e6:.0f} MB slide"
    slide = open_slide(info.url)
    got = slide.read_region(2000, 3000, 2300, 3400)
    assert np.all(got[..., 0] == ((np.arange(2000, 2300) // 256) % 256)[:, None])
    np.testing.assert_array_equal(got[0, :, 1:], row[2000 % 256, 3000:3400, 1:])
