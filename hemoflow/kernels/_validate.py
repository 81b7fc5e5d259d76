"""Input validation shared by the kernel wrappers (no numba here)."""

from __future__ import annotations

import numpy as np


def describe(a: object) -> str:
    """Short ``shape=..., dtype=...`` description of an array-like for error messages."""
    shape = getattr(a, "shape", None)
    dtype = getattr(a, "dtype", None)
    if shape is None:
        return f"an object of type {type(a).__name__}"
    return f"shape={tuple(shape)}, dtype={dtype}"


def as_mask(mask: object, name: str = "mask") -> np.ndarray:
    """Return ``mask`` as a C-contiguous 2-D ``uint8`` view/copy (nonzero = foreground)."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"{name} must be a numpy array; got {describe(mask)}")
    if mask.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W); got {describe(mask)}")
    if mask.dtype == np.bool_:
        return np.ascontiguousarray(mask).view(np.uint8)
    if np.issubdtype(mask.dtype, np.integer):
        return np.ascontiguousarray(mask != 0).view(np.uint8)
    raise TypeError(f"{name} must be a boolean (or integer 0/1) array; got {describe(mask)}")


def parse_connectivity(connectivity: object) -> int:
    if isinstance(connectivity, bool) or not isinstance(connectivity, (int, np.integer)):
        raise TypeError(f"connectivity must be the int 1 or 2; got {connectivity!r}")
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-neighbours) or 2 (8-neighbours); got {connectivity}")
    return int(connectivity)
