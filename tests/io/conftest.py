"""TIFF writers shared by the I/O tests (real files written with tifffile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def smooth_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic RGB test image: gradients, blobs and some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (xx * 255 // max(1, w - 1)).astype(np.uint8)
    img[..., 1] = (yy * 255 // max(1, h - 1)).astype(np.uint8)
    img[..., 2] = ((xx + yy) % 256).astype(np.uint8)
    img ^= rng.integers(0, 8, img.shape, dtype=np.uint8)
    return img


def write_ome_pyramid(path: Path, img: np.ndarray, mpp: float, n_sub: int = 2) -> Path:
    """Tiled, pyramidal RGB OME-TIFF (sub-resolutions in SubIFDs) with PhysicalSizeX."""
    import tifffile

    meta = {
        "axes": "YXS",
        "PhysicalSizeX": mpp,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": mpp,
        "PhysicalSizeYUnit": "µm",
    }
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(img, tile=(128, 128), compression="zlib", photometric="rgb",
                 subifds=n_sub, metadata=meta)
        lv = img
        for _ in range(n_sub):
            lv = lv[::2, ::2]
            tw.write(lv, tile=(128, 128), compression="zlib", photometric="rgb",
                     subfiletype=1)
    return path


@pytest.fixture()
def rgb_image() -> np.ndarray:
    return smooth_rgb(700, 900)


@pytest.fixture()
def ome_pyramid(tmp_path: Path, rgb_image: np.ndarray) -> Path:
    return write_ome_pyramid(tmp_path / "pyr.ome.tif", rgb_image, mpp=0.25)
