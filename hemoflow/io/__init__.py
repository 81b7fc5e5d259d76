"""Slide I/O: TIFF/SVS reading, OME-Zarr pyramids, storage URLs (local, ``file://``, ``s3://``).

- :func:`ingest` converts a TIFF / OME-TIFF / SVS slide into an OME-Zarr 0.5 pyramid.
- :func:`open_slide` opens such a pyramid as a :class:`ZarrSlide` for region reads.
- :func:`content_hash` gives the stable SHA-256 of a slide file (job ledger key).
- :mod:`hemoflow.io.storage` maps URLs to fsspec filesystems and zarr stores.

zarr, tifffile and s3fs are imported on first use, not at import time.
"""

from __future__ import annotations

from hemoflow.io.ingest import SlideInfo, content_hash, ingest
from hemoflow.io.omezarr import ZarrSlide, open_slide
from hemoflow.io.tiff import TiffSlideSource, open_tiff

__all__ = [
    "SlideInfo",
    "TiffSlideSource",
    "ZarrSlide",
    "content_hash",
    "ingest",
    "open_slide",
    "open_tiff",
]
