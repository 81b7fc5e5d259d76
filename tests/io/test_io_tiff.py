"""Reading TIFF / OME-TIFF files: layout, pixel size, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from hemoflow.errors import HemoflowError, SlideNotFoundError, SlideReadError
from hemoflow.io.tiff import _mpp_from_svs, open_tiff


def test_ome_pyramid_layout_and_mpp(ome_pyramid, rgb_image):
    with open_tiff(ome_pyramid) as src:
        assert src.axes == "YXS"
        assert src.shape == rgb_image.shape
        assert src.dtype == np.uint8 and src.samples == 3 and src.is_rgb8
        assert src.n_levels == 3
        assert src.level_shapes[1] == (350, 450, 3)
        assert src.mpp == pytest.approx(0.25)
        np.testing.assert_array_equal(src.read_block(100, 300, 50, 420), rgb_image[100:300, 50:420])
        np.testing.assert_array_equal(src.read_level(1), rgb_image[::2, ::2])


@pytest.mark.parametrize(
    ("resolution", "unit", "expected"),
    [
        ((1e4 / 0.5, 1e4 / 0.5), "CENTIMETER", 0.5),
        ((25400 / 0.25, 25400 / 0.25), "INCH", 0.25),
        ((72, 72), "INCH", None),  # screen default, not a microscope: unknown
        ((2.0, 2.0), "NONE", None),
    ],
)
def test_mpp_from_resolution_tags(tmp_path, resolution, unit, expected):
    p = tmp_path / "res.tif"
    tifffile.imwrite(p, np.zeros((32, 48, 3), np.uint8), photometric="rgb",
                     resolution=resolution, resolutionunit=unit)
    with open_tiff(p) as src:
        if expected is None:
            assert src.mpp is None
        else:
            assert src.mpp == pytest.approx(expected, rel=1e-6)


def test_mpp_from_svs_description():
    desc = "Aperio Image Library v11.2.1\n46000x32914 (256x256) JPEG/RGB Q=30|AppMag = 20|MPP = 0.499|X = 1"
    assert _mpp_from_svs(desc) == pytest.approx(0.499)
    assert _mpp_from_svs("Aperio Image Library|AppMag = 20") is None


def test_layout_of_non_rgb(tmp_path):
    p = tmp_path / "czyx.ome.tif"
    data = np.arange(2 * 3 * 20 * 30, dtype=np.uint16).reshape(2, 3, 20, 30)
    tifffile.imwrite(p, data, ome=True, metadata={"axes": "CZYX"})
    with open_tiff(p) as src:
        assert src.axes == "CZYX" and src.dtype == np.uint16 and not src.is_rgb8
        assert (src.height, src.width) == (20, 30)
        np.testing.assert_array_equal(src.read_block(5, 15, 0, 30), data[:, :, 5:15, :])


def test_missing_file(tmp_path):
    with pytest.raises(SlideNotFoundError, match="nope.svs"):
        open_tiff(tmp_path / "nope.svs")
    with pytest.raises(FileNotFoundError):  # also the builtin kind
        open_tiff(tmp_path / "nope.svs")


def test_not_a_tiff(tmp_path):
    p = tmp_path / "notes.tif"
    p.write_text("this is not an image\n" * 10)
    with pytest.raises(SlideReadError, match="notes.tif") as ei:
        open_tiff(p)
    assert isinstance(ei.value, (HemoflowError, OSError))


def test_empty_file(tmp_path):
    p = tmp_path / "empty.tif"
    p.write_bytes(b"")
    with pytest.raises(SlideReadError, match="empty.tif"):
        open_tiff(p)


def test_truncated_file(ome_pyramid, tmp_path):
    data = ome_pyramid.read_bytes()
    p = tmp_path / "cut.ome.tif"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(SlideReadError, match="cut.ome.tif") as ei:
        with open_tiff(p) as src:
            src.read_level(0)
    assert "truncated" in str(ei.value) or "decode" in str(ei.value)


def test_corrupt_tile_data(tmp_path, rgb_image):
    p = tmp_path / "bad.tif"
    tifffile.imwrite(p, rgb_image, tile=(128, 128), compression="zlib", photometric="rgb")
    with tifffile.TiffFile(p) as tf:
        off, n = tf.pages[0].dataoffsets[3], tf.pages[0].databytecounts[3]
    raw = bytearray(p.read_bytes())
    raw[off : off + n] = b"\x00garbage" * (n // 8) + b"\x00" * (n % 8)
    p.write_bytes(bytes(raw))
    with open_tiff(p) as src:
        src.read_block(0, 128, 0, 128)  # an intact tile still reads
        with pytest.raises(SlideReadError, match="bad.tif"):
            src.read_level(0)
