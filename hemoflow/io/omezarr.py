"""OME-Zarr 0.5 multiscale images (zarr v3): metadata, pyramid building, reading.

Layout written by :func:`hemoflow.io.ingest`::

    slide.zarr/
      zarr.json      group; attributes {"ome": {"version": "0.5", "multiscales": [...]},
                     "hemoflow": {"complete": true, "mpp": ..., ...}}
      0/ 1/ 2/ ...   arrays, level i is level 0 downsampled by 2**i (2x2 mean)

Axes follow the NGFF rule (time, then channel, then space): an RGB slide is stored as
``(c, y, x)`` with chunks ``(3, chunk, chunk)``, i.e. planar. ome-zarr's reader rejects
channel-last ``(y, x, c)``. :meth:`ZarrSlide.read_region` still returns ``uint8[h, w, 3]``.

The group ``zarr.json`` is written twice: first with ``"complete": false`` and no
``"ome"`` key, and again, last of all, with the full metadata. An image whose
``hemoflow.complete`` is not true is an unfinished write and :func:`open_slide` refuses it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hemoflow.errors import SlideNotFoundError, SlideReadError, UnsupportedImageError
from hemoflow.io import storage
from hemoflow.kernels._nhwc import interleave as _interleave

__all__ = [
    "ZarrSlide",
    "open_slide",
    "multiscales_metadata",
    "downsample2",
    "pyramid_shapes",
]

#: NGFF axis types, and the order in which axes must appear.
AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
AXIS_ORDER = ("t", "c", "z", "y", "x")


def pyramid_shapes(shape: Sequence[int], axes: Sequence[str], n_levels: int) -> list[tuple[int, ...]]:
    """Shapes of ``n_levels`` levels: y and x halved (floor, at least 1) per level."""
    out = [tuple(int(n) for n in shape)]
    for _ in range(1, n_levels):
        prev = out[-1]
        out.append(tuple(max(1, n // 2) if a in ("y", "x") else n for n, a in zip(prev, axes)))
    return out


def default_n_levels(height: int, width: int, chunk: int) -> int:
    """Levels until the coarsest one fits in one chunk (and stays at least 1 px)."""
    n = 1
    h, w = height, width
    while max(h, w) > chunk and min(h, w) >= 2:
        h, w = h // 2, w // 2
        n += 1
    return n


def downsample2(block: np.ndarray, axes: Sequence[str]) -> np.ndarray:
    """Halve ``block`` along y and x by 2x2 mean (integers round half up).

    Odd trailing rows/columns are dropped, matching :func:`pyramid_shapes`.
    """
    yi, xi = list(axes).index("y"), list(axes).index("x")
    h, w = block.shape[yi] // 2, block.shape[xi] // 2

    def view(dy: int, dx: int) -> np.ndarray:
        idx = [slice(None)] * block.ndim
        idx[yi] = slice(dy, 2 * h, 2)
        idx[xi] = slice(dx, 2 * w, 2)
        return block[tuple(idx)]

    dt = block.dtype
    if dt.kind == "b":
        return (view(0, 0).astype(np.uint8) + view(1, 0) + view(0, 1) + view(1, 1)) >= 2
    if dt.kind in "ui":
        # Sum the four strided views in a wider integer type (no reshape-reduce: that
        # is several times slower), then floor((sum + 2) / 4): round half up.
        acc = {1: np.int16, 2: np.int32}.get(dt.itemsize, np.int64)
        if dt.kind == "u":
            acc = {1: np.uint16, 2: np.uint32}.get(dt.itemsize, np.uint64)
        s = view(0, 0).astype(acc)
        s += view(1, 0)
        s += view(0, 1)
        s += view(1, 1)
        s += 2
        s //= 4
        return s.astype(dt)
    ft = np.float64 if dt.itemsize > 4 else np.float32
    s = view(0, 0).astype(ft)
    s += view(1, 0)
    s += view(0, 1)
    s += view(1, 1)
    s *= 0.25
    return s.astype(dt)


def multiscales_metadata(
    axes: Sequence[str],
    n_levels: int,
    mpp: float | None,
    name: str = "",
) -> dict[str, Any]:
    """The ``"ome"`` attribute of an OME-Zarr 0.5 multiscale image.

    Spatial axes get unit ``micrometer`` and scale ``mpp * 2**level`` when the pixel
    size is known; otherwise no unit and scale ``2**level``.
    """
    ax_meta = []
    for a in axes:
        d: dict[str, Any] = {"name": a, "type": AXIS_TYPES[a]}
        if a in ("y", "x") and mpp is not None:
            d["unit"] = "micrometer"
        ax_meta.append(d)
    base = float(mpp) if mpp is not None else 1.0
    datasets = []
    for lv in range(n_levels):
        scale = [base * 2**lv if a in ("y", "x") else 1.0 for a in axes]
        datasets.append(
            {"path": str(lv), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    ms: dict[str, Any] = {"axes": ax_meta, "datasets": datasets}
    if name:
        ms["name"] = name
    return {"version": "0.5", "multiscales": [ms]}


class ZarrSlide:
    """A slide stored as an OME-Zarr multiscale image; see :func:`open_slide`.

    Region coordinates are pixels of the level being read (level 0 by default); the
    level-``i`` pixel ``(y, x)`` covers level-0 pixels ``[y*2**i, (y+1)*2**i)``.
    """

    def __init__(
        self,
        url: str,
        group: Any,
        storage_options: Mapping[str, Any] | None = None,
        *,
        _open_url: str | None = None,
    ):
        self.url = url  # credentials redacted
        self._open_args = (_open_url or url, dict(storage_options or {}) or None)
        self._group = group
        attrs = dict(group.attrs)
        ome = attrs.get("ome")
        if not isinstance(ome, dict) or not ome.get("multiscales"):
            raise SlideReadError(f"{url!r} is not an OME-Zarr multiscale image (no 'ome' metadata)")
        ms = ome["multiscales"][0]
        self.axes: tuple[str, ...] = tuple(
            a["name"] if isinstance(a, dict) else str(a) for a in ms["axes"]
        )
        self._paths = [d["path"] for d in ms["datasets"]]
        try:
            self._arrays = [group[p] for p in self._paths]
        except KeyError as e:
            raise SlideReadError(f"{url!r}: multiscale level {e} is missing") from None
        if "y" not in self.axes or "x" not in self.axes:
            raise SlideReadError(f"{url!r}: image has no y/x axes (axes {self.axes})")
        self._yi, self._xi = self.axes.index("y"), self.axes.index("x")
        hf = attrs.get("hemoflow") or {}
        if "mpp" in hf:
            self.mpp: float | None = None if hf["mpp"] is None else float(hf["mpp"])
        else:
            self.mpp = _mpp_from_multiscales(ms, self._yi)
        self.source: str | None = hf.get("source")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickles as "reopen this URL" (for Dask workers), never as array data.
        return open_slide, self._open_args

    # -- layout -------------------------------------------------------------------
    @property
    def n_levels(self) -> int:
        return len(self._arrays)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._arrays[0].dtype)

    @property
    def shape(self) -> tuple[int, int]:
        """Level-0 ``(height, width)``."""
        return self.level_shape(0)

    def level_shape(self, level: int) -> tuple[int, int]:
        """``(height, width)`` of ``level``."""
        s = self._arrays[level].shape
        return int(s[self._yi]), int(s[self._xi])

    def level_downsample(self, level: int) -> float:
        """Level-0 pixels per pixel of ``level`` (``2**level`` for hemoflow pyramids)."""
        return self.shape[1] / self.level_shape(level)[1] if level else 1.0

    def array(self, level: int = 0) -> Any:
        """The zarr array of ``level``, in ``self.axes`` order (any dtype/axes)."""
        return self._arrays[level]

    @property
    def is_rgb8(self) -> bool:
        a = self._arrays[0]
        return self.axes == ("c", "y", "x") and a.shape[0] == 3 and self.dtype == np.uint8

    def require_rgb8(self) -> None:
        """Raise :class:`~hemoflow.errors.UnsupportedImageError` unless 8-bit RGB."""
        if not self.is_rgb8:
            raise UnsupportedImageError(
                f"{self.url!r}: hemoflow processes 8-bit RGB images (axes ('c', 'y', 'x') with "
                f"3 channels, uint8); this image has axes {self.axes}, shape "
                f"{tuple(self._arrays[0].shape)}, dtype {self.dtype}"
            )

    def __repr__(self) -> str:
        return (
            f"ZarrSlide({self.url!r}, shape={self.shape}, axes={self.axes}, "
            f"dtype={self.dtype}, n_levels={self.n_levels}, mpp={self.mpp})"
        )

    # -- reading ------------------------------------------------------------------
    def read_region(self, y0: int, x0: int, y1: int, x1: int, level: int = 0, *, interleave: bool = True) -> np.ndarray:
        """Read rows ``y0:y1``, columns ``x0:x1`` of ``level`` as ``uint8[h, w, 3]``.

        The window is clipped to the image, so the result may be smaller than asked
        (empty when the window lies outside); the caller pads. With ``interleave=False``
        the result is a transposed view of the stored planar ``(3, h, w)`` block (same
        shape and values, not C-contiguous), which the stages read without a copy.

        Raises
        ------
        UnsupportedImageError
            When the image is not 8-bit RGB.
        """
        self.require_rgb8()
        if not 0 <= level < self.n_levels:
            raise IndexError(f"level {level} out of range: {self.url!r} has {self.n_levels}")
        h, w = self.level_shape(level)
        y0c, y1c = min(max(int(y0), 0), h), min(max(int(y1), 0), h)
        x0c, x1c = min(max(int(x0), 0), w), min(max(int(x1), 0), w)
        if y1c <= y0c or x1c <= x0c:
            return np.zeros((max(0, y1c - y0c), max(0, x1c - x0c), 3), np.uint8)
        try:
            block = self._arrays[level][:, y0c:y1c, x0c:x1c]
        except Exception as e:
            raise SlideReadError(
                f"cannot read {self.url!r} level {level} [{y0c}:{y1c}, {x0c}:{x1c}]: "
                f"{type(e).__name__}: {storage.redact(e)}"
            ) from None
        return _interleave(block) if interleave else np.moveaxis(block, 0, -1)

    def thumbnail(self, max_pixels: int = 4_000_000) -> tuple[np.ndarray, float]:
        """Return ``(uint8[h, w, 3], downsample)`` with ``h * w <= max_pixels``.

        Takes the coarsest pyramid level that still has at least ``max_pixels`` pixels
        (level 0 if none has) and, when it is above the budget, shrinks it by an
        integer block mean, band by band. ``downsample`` is level-0 pixels per
        thumbnail pixel along x.
        """
        self.require_rgb8()
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        level = 0
        for lv in range(self.n_levels):
            h, w = self.level_shape(lv)
            if h * w >= max_pixels:
                level = lv
        h, w = self.level_shape(level)
        f = 1
        while (h // f) * (w // f) > max_pixels:
            f += 1
        if f == 1:
            return self.read_region(0, 0, h, w, level), self.level_downsample(level)
        th, tw = h // f, w // f
        out = np.empty((th, tw, 3), np.uint8)
        band = max(1, 1024 // f)  # output rows per band
        for r0 in range(0, th, band):
            r1 = min(th, r0 + band)
            blk = self.read_region(r0 * f, 0, r1 * f, tw * f, level)
            blk = blk.reshape(r1 - r0, f, tw, f, 3).mean(axis=(1, 3))
            out[r0:r1] = np.rint(blk).astype(np.uint8)
        return out, self.level_downsample(level) * (w / tw)


def _mpp_from_multiscales(ms: Mapping[str, Any], yi: int) -> float | None:
    ax = ms["axes"][yi]
    if not isinstance(ax, dict) or ax.get("unit") not in ("micrometer", "µm"):
        return None
    for t in ms["datasets"][0].get("coordinateTransformations", []):
        if t.get("type") == "scale":
            return float(t["scale"][yi])
    return None


def open_slide(
    url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> ZarrSlide:
    """Open an OME-Zarr slide written by :func:`hemoflow.io.ingest` (or compatible).

    Only Zarr is opened here: ingest TIFF/SVS files first.

    Raises
    ------
    SlideNotFoundError
        Nothing exists at ``url``.
    SlideReadError
        Not an OME-Zarr image, or an unfinished (interrupted) ingest.
    """
    import zarr

    u = os.fspath(url)
    shown = storage.redact(u, storage_options)
    try:
        store = storage.zarr_store(u, "r", storage_options)
        group = zarr.open_group(store, mode="r")
    except Exception as e:
        if isinstance(e, FileNotFoundError) or type(e).__name__ in (
            "GroupNotFoundError", "NodeNotFoundError"
        ):
            if storage.exists(u, storage_options):
                raise SlideReadError(f"{shown!r} is not a Zarr group") from None
            raise SlideNotFoundError(f"slide not found: {shown!r}") from None
        raise SlideReadError(
            f"cannot open {shown!r}: {type(e).__name__}: {storage.redact(e, storage_options)}"
        ) from None
    hf = group.attrs.get("hemoflow")
    if isinstance(hf, dict) and hf.get("complete") is not True:
        raise SlideReadError(
            f"{shown!r} is incomplete: its ingest did not finish (re-run ingest with "
            "overwrite=True)"
        )
    return ZarrSlide(shown, group, storage_options, _open_url=u)
