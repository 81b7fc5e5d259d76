"""Read TIFF, OME-TIFF and Aperio SVS slides with tifffile, region by region.

:func:`open_tiff` finds the main image series (the largest one, so SVS thumbnails,
labels and macro images are skipped), exposes its layout (``axes``, ``shape``,
``dtype``, ``samples``) and pixel size, and reads blocks of any level without
decoding the whole level:

- compressed or tiled data is read through tifffile's zarr store, which decodes only
  the tiles/strips that a block touches (JPEG and JPEG 2000 tiles are decoded by
  imagecodecs);
- uncompressed contiguous data (local files) is memory-mapped.

Example
-------
>>> with open_tiff("slide.svs") as src:                     # doctest: +SKIP
...     src.axes, src.shape, src.mpp
...     block = src.read_block(0, 1024, 0, 1024)            # (1024, 1024, 3) for 'YXS'
"""

from __future__ import annotations

import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

import numpy as np

from hemoflow.errors import SlideNotFoundError, SlideReadError
from hemoflow.io import storage

__all__ = ["TiffSlideSource", "open_tiff", "mpp_from_tiff"]

logger = logging.getLogger(__name__)

#: Pixel sizes outside this range (µm/px) are treated as unknown: they come from
#: screen-resolution defaults such as 72 dpi, not from a microscope.
MPP_PLAUSIBLE = (0.01, 100.0)

_UNIT_TO_UM = {
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "pm": 1e-6, "å": 1e-4, "Å": 1e-4, "angstrom": 1e-4,
    "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6,
}


def _plausible(mpp: float | None) -> float | None:
    if mpp is None or not math.isfinite(mpp):
        return None
    if not MPP_PLAUSIBLE[0] <= mpp <= MPP_PLAUSIBLE[1]:
        logger.debug("ignoring implausible pixel size %.4g um/px", mpp)
        return None
    return float(mpp)


def _mpp_from_ome(xml: str | None, series_index: int) -> float | None:
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    images = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Image"]
    if not images:
        return None
    image = images[series_index] if series_index < len(images) else images[0]
    for el in image:
        if el.tag.rsplit("}", 1)[-1] != "Pixels":
            continue
        size = el.get("PhysicalSizeX")
        if size is None:
            return None
        unit = el.get("PhysicalSizeXUnit", "µm")
        factor = _UNIT_TO_UM.get(unit, _UNIT_TO_UM.get(unit.lower()))
        if factor is None:
            logger.warning("unknown OME PhysicalSizeXUnit %r; pixel size ignored", unit)
            return None
        try:
            return _plausible(float(size) * factor)
        except ValueError:
            return None
    return None


_SVS_MPP = re.compile(r"\bMPP\s*=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")


def _mpp_from_svs(description: str) -> float | None:
    m = _SVS_MPP.search(description or "")
    return _plausible(float(m.group(1))) if m else None


def _mpp_from_resolution(page: Any) -> float | None:
    tags = page.tags
    xres = tags.get("XResolution")
    unit = tags.get("ResolutionUnit")
    if xres is None or unit is None:
        return None
    try:
        num, den = xres.value
        ppu = num / den  # pixels per unit
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not ppu > 0:
        return None
    unit = int(unit.value)
    if unit == 3:  # centimeter
        return _plausible(1e4 / ppu)
    if unit == 2:  # inch
        return _plausible(25400.0 / ppu)
    return None  # 1: no absolute unit


def mpp_from_tiff(tf: Any, series_index: int = 0) -> float | None:
    """Return the pixel size (µm/px) of a series of an open ``tifffile.TiffFile``.

    Sources, in order: OME-XML ``PhysicalSizeX``/``PhysicalSizeXUnit``; the Aperio
    ImageDescription ``MPP = ...``; the TIFF ``XResolution``/``ResolutionUnit`` tags
    (centimeter or inch). Returns None when unknown or implausible (see
    :data:`MPP_PLAUSIBLE`).
    """
    series = tf.series[series_index]
    page = series.keyframe
    if tf.is_ome:
        mpp = _mpp_from_ome(tf.ome_metadata, series_index)
        if mpp is not None:
            return mpp
    if tf.is_svs:
        mpp = _mpp_from_svs(page.description)
        if mpp is not None:
            return mpp
    return _mpp_from_resolution(page)


class TiffSlideSource:
    """An open TIFF/OME-TIFF/SVS slide: its main series, levels and pixel size.

    Use :func:`open_tiff` to create one, and close it (or use it as a context manager).

    Attributes
    ----------
    path : str
        The path or URL that was opened.
    series_index : int
        Index of the main series in ``tifffile.TiffFile.series``.
    axes : str
        tifffile axes of the series, e.g. ``"YXS"`` (RGB), ``"YX"``, ``"CZYX"``.
    shape : tuple of int
        Level-0 shape in ``axes`` order.
    dtype : numpy.dtype
    samples : int
        Samples per pixel (3 for RGB, 1 otherwise).
    level_shapes : list of tuple
        Shape of every level of the series (its own pyramid, if any).
    mpp : float or None
        Pixel size in µm/px, None when unknown.
    """

    def __init__(self, path: str, tf: Any, fh: Any = None) -> None:
        self.path = path
        self._tf = tf
        self._fh = fh
        self._arrays: dict[int, Any] = {}
        series = tf.series
        if not series:
            raise SlideReadError(f"cannot read {path!r}: the TIFF contains no image")
        # Main series: the largest image (skips SVS thumbnail/label/macro series).
        self.series_index = max(
            range(len(series)), key=lambda i: (int(np.prod(series[i].shape)), -i)
        )
        s = series[self.series_index]
        self._series = s
        self.axes: str = s.axes
        self.shape: tuple[int, ...] = tuple(int(n) for n in s.shape)
        self.dtype: np.dtype = np.dtype(s.dtype)
        self.samples: int = int(s.keyframe.samplesperpixel)
        self.level_shapes: list[tuple[int, ...]] = [
            tuple(int(n) for n in lv.shape) for lv in s.levels
        ]
        self.compression: str = getattr(s.keyframe.compression, "name", str(s.keyframe.compression))
        if "Y" not in self.axes or "X" not in self.axes:
            raise SlideReadError(
                f"cannot read {path!r}: the main image has no Y/X axes (axes {self.axes!r})"
            )
        self._yi = self.axes.index("Y")
        self._xi = self.axes.index("X")
        self.mpp: float | None = mpp_from_tiff(tf, self.series_index)
        self._check_truncated()

    # -- layout -------------------------------------------------------------------
    @property
    def height(self) -> int:
        return self.shape[self._yi]

    @property
    def width(self) -> int:
        return self.shape[self._xi]

    @property
    def n_levels(self) -> int:
        return len(self.level_shapes)

    @property
    def is_rgb8(self) -> bool:
        """True for 8-bit RGB with samples last (``axes == "YXS"``, 3 samples)."""
        return self.axes == "YXS" and self.shape[-1] == 3 and self.dtype == np.uint8

    def __repr__(self) -> str:
        return (
            f"TiffSlideSource({os.path.basename(self.path)!r}, axes={self.axes!r}, "
            f"shape={self.shape}, dtype={self.dtype}, levels={self.n_levels}, mpp={self.mpp})"
        )

    # -- reading ------------------------------------------------------------------
    def _check_truncated(self) -> None:
        size = getattr(self._tf.filehandle, "size", None)
        if not size:
            return
        for li, lv in enumerate(self._series.levels):
            end = 0
            for page in lv.pages:
                if page is None:
                    continue
                offs, counts = page.dataoffsets, page.databytecounts
                if len(offs):
                    end = max(end, max(o + c for o, c in zip(offs, counts) if c) if any(
                        counts) else 0)
            if end > size:
                raise SlideReadError(
                    f"cannot read {self.path!r}: the file is truncated (level {li} image data "
                    f"ends at byte {end}, the file has {size} bytes)"
                )

    def _level_array(self, level: int) -> Any:
        arr = self._arrays.get(level)
        if arr is not None:
            return arr
        lv = self._series.levels[level]
        if self._fh is None and lv.dataoffset is not None and lv.keyframe.is_contiguous:
            # Uncompressed and contiguous: memory-map, nothing is read until sliced.
            dtype = np.dtype(lv.dtype).newbyteorder(self._tf.byteorder)
            arr = np.memmap(self._tf.filehandle.path, dtype=dtype, mode="r",
                            offset=lv.dataoffset, shape=lv.shape)
        else:
            import zarr

            arr = zarr.open_array(self._series.aszarr(level=level), mode="r")
        self._arrays[level] = arr
        return arr

    def read_block(self, y0: int, y1: int, x0: int, x1: int, level: int = 0) -> np.ndarray:
        """Read rows ``y0:y1`` and columns ``x0:x1`` of ``level`` (all other axes whole).

        The result has the series axes order (``self.axes``), native byte order, and
        only the tiles or strips touching the block are read and decoded.

        Raises
        ------
        SlideReadError
            When the data cannot be decoded (corrupt or truncated tiles).
        """
        if not 0 <= level < self.n_levels:
            raise IndexError(f"level {level} out of range: the slide has {self.n_levels}")
        try:
            arr = self._level_array(level)
            idx = [slice(None)] * arr.ndim
            idx[self._yi] = slice(int(y0), int(y1))
            idx[self._xi] = slice(int(x0), int(x1))
            out = np.asarray(arr[tuple(idx)])
        except MemoryError:
            raise
        except Exception as e:
            raise SlideReadError(
                f"cannot decode {self.path!r} (level {level}, rows {y0}:{y1}, columns "
                f"{x0}:{x1}, {self.compression}): {type(e).__name__}: {e}"
            ) from None
        if not out.dtype.isnative:
            out = out.astype(out.dtype.newbyteorder("="))
        return out

    def read_level(self, level: int = 0) -> np.ndarray:
        """Read a whole level (for small images and tests only)."""
        shp = self.level_shapes[level]
        return self.read_block(0, shp[self._yi], 0, shp[self._xi], level)

    def close(self) -> None:
        self._arrays.clear()
        try:
            self._tf.close()
        finally:
            if self._fh is not None:
                self._fh.close()

    def __enter__(self) -> TiffSlideSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tiff(
    src: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> TiffSlideSource:
    """Open a TIFF / OME-TIFF / SVS file (local path, ``file://`` or ``s3://``).

    Raises
    ------
    SlideNotFoundError
        The file does not exist.
    SlideReadError
        It is not a TIFF, or it is corrupt or truncated; the message names the file
        and the reason.
    """
    import tifffile

    url = os.fspath(src)
    shown = storage.redact(url, storage_options)
    fh = None
    try:
        if storage.is_remote(url):
            fs, path = storage.get_fs(url, storage_options)
            try:
                fh = fs.open(path, "rb", block_size=4 << 20)
            except FileNotFoundError:
                raise SlideNotFoundError(f"slide not found: {shown!r}") from None
            tf = tifffile.TiffFile(fh, name=os.path.basename(path))
        else:
            path = os.path.abspath(url[7:] if url.startswith("file://") else url)
            if not os.path.exists(path):
                raise SlideNotFoundError(f"slide not found: {shown!r}")
            if os.path.isdir(path):
                raise SlideReadError(f"cannot read {shown!r}: it is a folder, not a TIFF file")
            tf = tifffile.TiffFile(path)
    except (SlideNotFoundError, SlideReadError):
        raise
    except MemoryError:
        raise
    except Exception as e:
        if fh is not None:
            fh.close()
        raise SlideReadError(
            f"cannot read {shown!r}: not a readable TIFF file ({type(e).__name__}: "
            f"{storage.redact(e, storage_options)})"
        ) from None
    try:
        return TiffSlideSource(shown, tf, fh)
    except SlideReadError:
        tf.close()
        if fh is not None:
            fh.close()
        raise
    except Exception as e:
        tf.close()
        if fh is not None:
            fh.close()
        raise SlideReadError(f"cannot read {shown!r}: {type(e).__name__}: {e}") from None
