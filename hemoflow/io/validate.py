"""Reading image files, and refusing those hemoflow cannot process, with errors that name the file.

One rule for every entry point: hemoflow processes **8-bit RGB** images (an alpha
channel is dropped). ``hemoflow analyze`` and ``hemoflow classify`` read fields and cells
through :func:`read_rgb8`; ``hemoflow ingest`` checks a slide with
:func:`check_slide_rgb8`, the rule :meth:`hemoflow.io.omezarr.ZarrSlide.require_rgb8`
applies when a job reads the slide.

Every error message starts with the file, so a batch can report each bad input on one
line.

>>> rgb8_problem((4, 4, 3), "uint8") is None
True
>>> rgb8_problem((4, 4), "uint8")
'greyscale image (shape (4, 4), dtype uint8); hemoflow needs 8-bit RGB colour images'
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from hemoflow.errors import SlideNotFoundError, SlideReadError, UnsupportedImageError

__all__ = ["rgb8_problem", "probe_image", "read_image", "read_rgb8", "check_slide_rgb8", "quiet_tifffile"]

_TIFF_SUFFIXES = (".tif", ".tiff")
#: PIL modes that decode to 8-bit RGB (palette, CMYK and YCbCr are converted).
_PIL_RGB_MODES = ("RGB", "RGBA", "P", "CMYK", "YCbCr")
_PIL_MODE_TEXT = {"1": "1-bit black-and-white", "L": "8-bit greyscale", "LA": "greyscale with alpha",
                  "I": "32-bit integer greyscale", "F": "32-bit float greyscale", "I;16": "16-bit greyscale",
                  "I;16B": "16-bit greyscale", "I;16L": "16-bit greyscale", "HSV": "HSV", "LAB": "Lab"}


def rgb8_problem(shape: tuple[int, ...], dtype: Any) -> str | None:
    """What keeps an image of ``shape`` (``(H, W[, C])``) and ``dtype`` from being processed,
    or None when it is 8-bit RGB (or RGBA)."""
    shape = tuple(int(n) for n in shape)
    dt = np.dtype(dtype)
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        return f"greyscale image (shape {shape}, dtype {dt}); hemoflow needs 8-bit RGB colour images"
    if len(shape) != 3 or shape[2] not in (3, 4):
        return f"expected an RGB image of shape (H, W, 3), got shape {shape} dtype {dt}"
    if dt != np.uint8:
        return f"{dt} image (shape {shape}, dtype {dt}); hemoflow needs 8-bit (uint8) RGB images"
    if shape[0] < 1 or shape[1] < 1:
        return f"empty image (shape {shape}, dtype {dt})"
    return None


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in _TIFF_SUFFIXES


def probe_image(path: str | os.PathLike) -> None:
    """Check from the file's header alone (no pixel decoding) that ``path`` is a readable
    8-bit RGB JPEG / PNG / TIFF.

    Raises
    ------
    SlideNotFoundError, SlideReadError, UnsupportedImageError
        With a message that starts with the path.
    """
    p = Path(path)
    if not p.is_file():
        raise SlideNotFoundError(f"{path}: image not found")
    try:
        if _is_tiff(p):
            import tifffile

            with quiet_tifffile(), tifffile.TiffFile(p) as tf:
                page = tf.pages[0]
                shape, dtype = tuple(page.shape), page.dtype
        else:
            from PIL import Image

            with Image.open(p) as im:
                mode, size = im.mode, im.size
            if mode not in _PIL_RGB_MODES:
                kind = _PIL_MODE_TEXT.get(mode, f"mode {mode}")
                raise UnsupportedImageError(f"{path}: {kind} image; hemoflow needs 8-bit RGB colour images")
            shape, dtype = (size[1], size[0], 3), np.uint8
    except UnsupportedImageError:
        raise
    except Exception as exc:  # decoders raise many kinds
        raise SlideReadError(f"{path}: cannot read the image ({_short(exc)})") from None
    problem = rgb8_problem(shape, dtype)
    if problem:
        raise UnsupportedImageError(f"{path}: {problem}")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode a JPEG / PNG / TIFF (first page) as it is stored (any dtype and layout).

    Palette, CMYK and YCbCr images are converted to RGB; greyscale stays greyscale.

    Raises
    ------
    SlideNotFoundError, SlideReadError
        With a message that starts with the path.
    """
    p = Path(path)
    if not p.is_file():
        raise SlideNotFoundError(f"{path}: image not found")
    try:
        if _is_tiff(p):
            import tifffile

            with quiet_tifffile():
                return tifffile.imread(str(p), key=0)
        from PIL import Image

        with Image.open(p) as im:
            im.load()
            if im.mode in ("RGB", "RGBA"):
                return np.asarray(im)
            if im.mode in _PIL_RGB_MODES:
                return np.asarray(im.convert("RGB"))
            return np.asarray(im)
    except Exception as exc:  # decoders raise many kinds
        raise SlideReadError(f"{path}: cannot read the image ({_short(exc)})") from None


def read_rgb8(path: str | os.PathLike) -> np.ndarray:
    """Decode ``path`` as a ``uint8[H, W, 3]`` RGB array (alpha dropped).

    Raises
    ------
    SlideNotFoundError, SlideReadError, UnsupportedImageError
        With a message that starts with the path: missing, undecodable, or not 8-bit
        RGB (greyscale, 16-bit, float, multichannel).
    """
    arr = read_image(path)
    problem = rgb8_problem(arr.shape, arr.dtype)
    if problem:
        raise UnsupportedImageError(f"{path}: {problem}")
    return np.ascontiguousarray(arr[..., :3])


def check_slide_rgb8(src: str | os.PathLike, storage_options: Mapping[str, Any] | None = None) -> None:
    """Refuse a slide a job could not process, before it is converted.

    The rule of :meth:`~hemoflow.io.omezarr.ZarrSlide.require_rgb8`: once mapped to
    OME-Zarr axes the image must be ``(c, y, x)`` with 3 channels of uint8.

    Raises
    ------
    SlideNotFoundError, SlideReadError
        The slide is missing or unreadable.
    UnsupportedImageError
        The slide is not 8-bit RGB; the message names the file, axes, shape and dtype.
    """
    from hemoflow.io import storage
    from hemoflow.io.ingest import ngff_axes
    from hemoflow.io.tiff import open_tiff

    shown = storage.redact(os.fspath(src), storage_options)
    with quiet_tifffile(), open_tiff(src, storage_options) as source:
        try:
            perm, axes = ngff_axes(source.axes, source.shape)
        except UnsupportedImageError as e:
            raise UnsupportedImageError(f"{shown}: {e}") from None
        dtype = np.dtype(source.dtype)
        if axes != ("c", "y", "x") or source.shape[perm[0]] != 3 or dtype != np.uint8:
            raise UnsupportedImageError(
                f"{shown}: hemoflow processes 8-bit RGB slides; this one has axes {''.join(source.axes)} "
                f"(OME-Zarr {axes}), shape {tuple(source.shape)}, dtype {dtype}")


class quiet_tifffile:
    """Context manager that keeps tifffile's logged warnings (``tifffile`` logger) off the
    console while a file is probed; the caller reports the failure itself.

    >>> with quiet_tifffile():
    ...     pass
    """

    def __enter__(self) -> "quiet_tifffile":
        self._log = logging.getLogger("tifffile")
        self._level, self._propagate = self._log.level, self._log.propagate
        self._log.setLevel(logging.ERROR + 10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._log.setLevel(self._level)


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    text = msg[0] if msg else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
