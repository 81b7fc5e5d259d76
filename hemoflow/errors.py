"""Exceptions raised by hemoflow.

Every error derives from :class:`HemoflowError` (itself a ``ValueError``), and the
specific ones can also be caught as the builtin kind they resemble, in the style of
zarr-python's ``errors.py``::

    try:
        ingest("missing.svs", "out.zarr")
    except FileNotFoundError:
        ...
"""

from __future__ import annotations

__all__ = [
    "HemoflowError",
    "SlideNotFoundError",
    "SlideReadError",
    "UnsupportedImageError",
    "ManifestError",
    "StorageError",
    "OutputNotWritableError",
    "ModelError",
    "JobError",
]


class HemoflowError(ValueError):
    """Base class of every hemoflow error."""


class SlideNotFoundError(HemoflowError, FileNotFoundError):
    """A slide or image path/URL does not exist."""


class SlideReadError(HemoflowError, OSError):
    """A slide exists but cannot be read or decoded (corrupt or truncated file)."""


class UnsupportedImageError(HemoflowError, TypeError):
    """An image has a layout hemoflow cannot process (not RGB, not 8-bit, wrong rank)."""


class ManifestError(HemoflowError):
    """A job manifest is invalid: missing columns, duplicates, bad values."""


class StorageError(HemoflowError, OSError):
    """An object store or folder cannot be reached or used."""


class OutputNotWritableError(StorageError, PermissionError):
    """The output location cannot be written."""


class ModelError(HemoflowError):
    """A classifier weights file is missing, corrupt or does not match the contract."""


class JobError(HemoflowError):
    """A job failed as a whole (not one slide)."""
