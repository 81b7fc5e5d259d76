"""Tile grid, halo and ownership.

A slide is cut into a grid of *cores* that partition it exactly. Each tile task reads
its core plus a *halo* (clipped to the slide), analyses that window, and keeps only the
cells whose centroid lies in the core (half-open intervals). Because every centroid lies
in exactly one core, and a halo at least as large as the largest cell (plus the
footprint of the local filters and the crop window) means a cell owned by a core is seen
whole, the union of the tiles' cells is the slide's cell table, with no stitching and no
double counting, whatever the tile size.

Nothing here knows about Dask or Zarr: :func:`analyze_window` takes a numpy window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

__all__ = ["Tile", "plan_tiles", "window_align", "halo_pixels", "halo_margin_um", "own_cells", "analyze_window",
           "analyze_tiled"]


@dataclass(frozen=True)
class Tile:
    """One tile: its index, core box and read window, as ``(y0, x0, y1, x1)`` in level-0 px."""

    index: int
    row: int
    col: int
    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]

    @property
    def window_shape(self) -> tuple[int, int]:
        y0, x0, y1, x1 = self.window
        return (y1 - y0, x1 - x0)


def plan_tiles(shape: tuple[int, int], tile_size: int, halo: int, *, align: int = 1) -> list[Tile]:
    """Cut an image of ``shape`` (H, W) into cores of ``tile_size`` with a ``halo``.

    ``align`` rounds ``tile_size`` and ``halo`` up to multiples of it, so every window
    starts on the grid of the stages' working scale (block averaging by that factor).

    >>> [t.core for t in plan_tiles((5, 3), 4, 1)]
    [(0, 0, 4, 3), (4, 0, 5, 3)]
    >>> plan_tiles((5, 3), 4, 1)[1].window
    (3, 0, 5, 3)
    """
    h, w = int(shape[0]), int(shape[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"cannot tile an empty image of shape {shape}")
    if tile_size <= 0:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    if halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    if align < 1:
        raise ValueError(f"align must be >= 1, got {align}")
    tile_size = -(-tile_size // align) * align
    halo = -(-halo // align) * align
    tiles = []
    for r, y0 in enumerate(range(0, h, tile_size)):
        y1 = min(y0 + tile_size, h)
        for c, x0 in enumerate(range(0, w, tile_size)):
            x1 = min(x0 + tile_size, w)
            window = (max(0, y0 - halo), max(0, x0 - halo), min(h, y1 + halo), min(w, x1 + halo))
            tiles.append(Tile(len(tiles), r, c, (y0, x0, y1, x1), window))
    return tiles


def halo_pixels(mpp: float, *, max_cell_diameter_um: float, margin_um: float, crop_px: float) -> int:
    """Halo (px) so a cell owned by a core, its filter footprint and its crop fit the window."""
    cell = (max_cell_diameter_um + margin_um) / mpp
    return int(math.ceil(max(cell, crop_px / 2.0 + 2.0)))


def halo_margin_um(params) -> float:
    """Halo beyond the largest cell (µm): 4 µm for the filters, or the red-cell mass reach
    (``params.rbc_mass_reach_um``, background density within it counts for the nearest
    kept basin) when the density network is used and that is wider."""
    return max(4.0, float(getattr(params, "rbc_mass_reach_um", 0.0))) if _uses_density(params) else 4.0


def _uses_density(params) -> bool:
    return bool(getattr(params, "rbc_count_model", False) and getattr(params, "rbc_density_model", False))


def window_align(params) -> int:
    """Working pixels a window's origin must be a multiple of: the red-cell density grid
    (:data:`hemoflow.stages._rbc_density.ALIGN`) when that model is used, else 1."""
    from hemoflow.stages._rbc_density import ALIGN

    return ALIGN if _uses_density(params) else 1


def own_cells(table: dict[str, np.ndarray], tile: Tile) -> np.ndarray:
    """Boolean mask of the rows (window coordinates) whose centroid lies in ``tile.core``."""
    y0, x0, y1, x1 = tile.core
    oy, ox = tile.window[0], tile.window[1]
    y = np.asarray(table["y"], dtype=np.float64) + oy
    x = np.asarray(table["x"], dtype=np.float64) + ox
    return (y >= y0) & (y < y1) & (x >= x0) & (x < x1)


def _shift(table: dict[str, np.ndarray], keep: np.ndarray, dy: int, dx: int, *, exact: bool = True
           ) -> dict[str, np.ndarray]:
    out = {k: np.asarray(v)[keep] for k, v in table.items()}
    if exact:
        # Centroids are pixel means: recover the exact integer coordinate sums, shift those
        # and divide once, so a cell's centroid has the same bits whichever window it came from.
        n = out["area_px"].astype(np.float64)
        out["y"] = (np.rint(out["y"].astype(np.float64) * n) + dy * n) / n
        out["x"] = (np.rint(out["x"].astype(np.float64) * n) + dx * n) / n
    else:
        # a ratio working scale (Calibration.upsample > 1): the sums are not integers, and
        # a centroid agrees with the whole image's to rounding (~1e-12 px)
        out["y"] = out["y"].astype(np.float64) + dy
        out["x"] = out["x"].astype(np.float64) + dx
    for k, d in (("bbox_y0", dy), ("bbox_y1", dy), ("bbox_x0", dx), ("bbox_x1", dx)):
        if k in out:
            out[k] = out[k] + d
    return out


def analyze_window(window_rgb: np.ndarray, tile: Tile, *, mpp: float, calibration, params, crop):
    """Analyse one tile's window and return its owned cells in slide coordinates.

    Returns ``(table, crops)``: ``crops[i]`` belongs to the i-th WBC row of ``table``.
    """
    from hemoflow.stages import analyze_field

    res = analyze_field(window_rgb, mpp=mpp, calibration=calibration, params=params, crop=crop)
    table = res.table
    keep = own_cells(table, tile)
    is_wbc = np.asarray(table["cls"]) == "wbc"
    crops = res.crops[keep[is_wbc]] if len(res.crops) else res.crops
    exact = int(getattr(calibration, "upsample", 1)) == 1
    return _shift(table, keep, tile.window[0], tile.window[1], exact=exact), crops


def concat_tables(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate cell tables column-wise (empty list -> empty dict)."""
    tables = [t for t in tables if t]
    if not tables:
        return {}
    keys = list(tables[0])
    return {k: np.concatenate([np.asarray(t[k]) for t in tables]) for k in keys}


def iter_windows(image: np.ndarray, tiles: list[Tile]) -> Iterator[tuple[Tile, np.ndarray]]:
    for t in tiles:
        y0, x0, y1, x1 = t.window
        yield t, image[y0:y1, x0:x1]


def analyze_tiled(image: np.ndarray, *, tile_size: int, halo: int, mpp: float, calibration, params, crop):
    """Run the tile code path over an in-memory image, serially (tests and small fields).

    Cells come back in tile order, then in each tile's own order; sort by ``(y, x)``
    to compare tilings.
    """
    align = int(getattr(calibration, "downsample", 1)) * window_align(params)
    tiles = plan_tiles(image.shape[:2], tile_size, halo, align=align)
    tables, crops = [], []
    for t, win in iter_windows(image, tiles):
        tab, cr = analyze_window(win, t, mpp=mpp, calibration=calibration, params=params, crop=crop)
        tables.append(tab)
        crops.append(cr)
    table = concat_tables(tables)
    nonempty = [c for c in crops if len(c)]
    all_crops = np.concatenate(nonempty) if nonempty else np.zeros((0, crop.size, crop.size, 3), np.uint8)
    return table, all_crops
