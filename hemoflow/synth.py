"""Synthetic blood smears and whole slides with ground truth.

A slide is first *planned*: every cell (RBCs, WBCs of the five types and blasts, platelets)
gets a position, an outline and a seed, globally and reproducibly from ``seed``. It is then
*rendered* on demand, block by block (see :mod:`hemoflow._synth_draw`), so a pixel does
not depend on the tile size or on which region is rendered, and a whole slide is written as
a tiled pyramidal OME-TIFF in bounded memory.

Placement rules (the ground truth is meant to be countable exactly):

- every cell lies fully inside the slide (a margin of 2 px), so the truth centroid and area
  are those of the whole, visible cell;
- WBCs keep ``wbc_clearance_um`` (4 µm) from every other cell, more than the distance
  within which segmentation joins nuclear lobes into one cell;
- platelets keep 0.5 µm from every other cell;
- RBCs may touch and overlap lightly: centre distance >= ``rbc_min_separation`` (0.9)
  times the sum of their radii (nominal radius; for an irregular cell, halfway between
  nominal and bounding radius).

Truth table columns: ``id``, ``cls`` ('rbc' | 'wbc' | 'platelet'), ``type`` ('rbc',
'platelet' or the WBC type), ``y``, ``x`` (centroid, level-0 px), ``area_px``,
``area_um2``, ``irregular`` (elliptocytes, tear drops and crenated RBCs).

Examples
--------
>>> rgb, truth = synth_field((256, 256), seed=1, n_wbc=1)
>>> rgb.shape, rgb.dtype, int((truth["cls"] == "wbc").sum())
((256, 256, 3), dtype('uint8'), 1)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from hemoflow import _synth_draw as D
from hemoflow.errors import HemoflowError
from hemoflow.schema import BLAST, WBC_TYPES

__all__ = ["WBC_MIX_PRESETS", "SlidePlan", "Stain", "plan_slide", "synth_field",
           "write_synthetic_slide", "write_truth"]

log = logging.getLogger(__name__)
Stain = D.Stain

WBC_MIX_PRESETS: dict[str, dict[str, float]] = {
    "normal": {"neutrophil": .58, "lymphocyte": .30, "monocyte": .07, "eosinophil": .04,
               "basophil": .01},
    "neutrophilia": {"neutrophil": .80, "lymphocyte": .12, "monocyte": .05, "eosinophil": .02,
                     "basophil": .01},
    "lymphocytosis": {"neutrophil": .30, "lymphocyte": .60, "monocyte": .06, "eosinophil": .03,
                      "basophil": .01},
    "eosinophilia": {"neutrophil": .50, "lymphocyte": .25, "monocyte": .05, "eosinophil": .18,
                     "basophil": .02},
    "acute_leukaemia": {"blast": .30, "neutrophil": .35, "lymphocyte": .28, "monocyte": .05,
                        "eosinophil": .01, "basophil": .01},
}
_WBC_NAMES = (*WBC_TYPES, BLAST)
# Diameter ranges in µm.
_WBC_DIAMETER = {"neutrophil": (12, 14), "lymphocyte": (7, 10), "monocyte": (14, 18),
                 "eosinophil": (12, 15), "basophil": (10, 14), "blast": (14, 18)}
_PLATELET_DIAMETER = (2.0, 3.2)
_PLAN_BLOCK = 2048  # px; RBC placement unit, each with its own seeded generator
_MARGIN = 2.0  # px kept between any cell and the slide edge
_PLATELET_GAP_UM = 0.5
_FLOAT_COLS = ("R", "e", "phi", "wa", "wp", "amp", "k", "rb", "rs", "pallor", "inten")


def _parse_mix(wbc_mix: Mapping[str, float] | str | None) -> dict[str, float]:
    if wbc_mix is None:
        wbc_mix = "normal"
    if isinstance(wbc_mix, str):
        if wbc_mix not in WBC_MIX_PRESETS:
            raise HemoflowError(f"unknown wbc_mix preset {wbc_mix!r}; "
                                f"choose one of {sorted(WBC_MIX_PRESETS)}")
        wbc_mix = WBC_MIX_PRESETS[wbc_mix]
    bad = set(wbc_mix) - set(_WBC_NAMES)
    if bad:
        raise HemoflowError(f"unknown WBC types in wbc_mix: {sorted(bad)}; "
                            f"allowed: {list(_WBC_NAMES)}")
    w = np.array([float(wbc_mix.get(t, 0.0)) for t in _WBC_NAMES])
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise HemoflowError(f"wbc_mix weights must be finite, >= 0 and not all 0: {wbc_mix}")
    return dict(zip(_WBC_NAMES, w / w.sum()))


@dataclasses.dataclass(frozen=True, eq=False)
class SlidePlan:
    """Every cell of a synthetic slide, with what is needed to render and to score it.

    ``cells`` is a dict of 1-D columns (drawing parameters, bounding boxes and the truth).
    Build one with :func:`plan_slide`; render any part with :meth:`render_region`.
    """

    shape: tuple[int, int]
    mpp: float
    seed: int
    stain: Stain
    cells: dict[str, np.ndarray]

    def truth(self) -> dict[str, np.ndarray]:
        """The ground-truth table (see the module docstring for the columns)."""
        c = self.cells
        names = np.array(D.TYPE_NAMES)
        t = c["type"].astype(np.intp)
        cls = np.where(t == D.RBC, "rbc", np.where(t == D.PLATELET, "platelet", "wbc"))
        return {
            "id": c["id"].copy(), "cls": cls.astype("U8"), "type": names[t].astype("U10"),
            "y": c["y"].copy(), "x": c["x"].copy(),
            "area_px": np.rint(c["area"]).astype(np.int64),
            "area_um2": c["area"] * self.mpp**2,
            "irregular": c["kind"] != D.ROUND,
        }

    def renderer(self) -> D.Renderer:
        """A renderer of this slide (keeps a small cache of cell patches)."""
        return D.Renderer(self.cells, self.shape, self.stain, self.mpp, self.seed)

    def render_region(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        """RGB uint8 of the level-0 region ``[y0:y1, x0:x1]`` (may extend past the slide)."""
        return self.renderer().region(y0, x0, y1, x1)


def plan_slide(shape: tuple[int, int], *, mpp: float = 0.25, seed: int = 0,
               rbc_density: float = 0.38, rbc_diameter_um: float = 7.5,
               rbc_diameter_sd_um: float = 0.6, irregular_fraction: float = 0.1,
               rbc_min_separation: float = 0.9,
               wbc_mix: Mapping[str, float] | str | None = None,
               wbc_per_mpx: float | None = None, n_wbc: int | None = None,
               n_platelets: int | None = None, wbc_clearance_um: float = 4.0,
               stain: Stain | None = None) -> SlidePlan:
    """Place every cell of a synthetic slide (no pixels yet).

    Parameters
    ----------
    shape : (H, W) in level-0 px.
    mpp : µm per px.
    seed : everything (cells, stain, illumination, noise) follows from it.
    rbc_density : RBC area coverage aimed at (0.38 is a monolayer reading area).
    rbc_diameter_um, rbc_diameter_sd_um : RBC diameter distribution.
    irregular_fraction : share of irregular RBCs (elliptocytes, tear drops, crenated).
    rbc_min_separation : minimum RBC centre distance over the sum of their radii.
    wbc_mix : WBC type weights (``neutrophil`` ... ``basophil``, ``blast``) or a preset
        name of :data:`WBC_MIX_PRESETS`; default ``"normal"``.
    wbc_per_mpx : WBCs per megapixel; default one per 100 expected RBCs.
    n_wbc, n_platelets : exact numbers to place instead (default: from the densities,
        platelets one per 15 expected RBCs).
    wbc_clearance_um : free space kept around every WBC.
    stain : colours; default ``Stain().jittered(seed)``.

    Examples
    --------
    >>> plan = plan_slide((512, 512), seed=2, n_wbc=2)
    >>> int((plan.truth()["cls"] == "wbc").sum())
    2
    """
    H, W = (int(v) for v in shape)
    _check_plan(H, W, shape, mpp, rbc_density, irregular_fraction, rbc_min_separation)
    mix = _parse_mix(wbc_mix)
    stain = Stain().jittered(seed) if stain is None else stain
    um = 1.0 / mpp
    rng = np.random.default_rng([int(seed), 0x9A1])
    mean_rbc_area = math.pi / 4 * (rbc_diameter_um**2 + rbc_diameter_sd_um**2) * um**2
    exp_rbc = rbc_density * H * W / mean_rbc_area
    if n_wbc is None:
        lam = exp_rbc / 100 if wbc_per_mpx is None else wbc_per_mpx * H * W / 1e6
        n_wbc = int(rng.poisson(lam))
    if n_platelets is None:
        n_platelets = int(rng.poisson(exp_rbc / 15))
    req = _spacing(float(rbc_min_separation), wbc_clearance_um * um, _PLATELET_GAP_UM * um)
    placed = _place_wbcs_and_platelets(rng, mix, n_wbc, n_platelets, um, H, W, req)
    rbc_blocks = _place_rbcs(seed, placed, H, W, req, rbc_density=rbc_density, mean_rbc_area=mean_rbc_area,
                             rbc_diameter_um=rbc_diameter_um, rbc_diameter_sd_um=rbc_diameter_sd_um,
                             irregular_fraction=irregular_fraction, um=um)
    cells = _finish_cells(_concat([placed, *rbc_blocks.values()]))
    return SlidePlan((H, W), float(mpp), int(seed), stain, cells)


def _check_plan(H: int, W: int, shape, mpp, rbc_density, irregular_fraction, rbc_min_separation) -> None:
    if H < 16 or W < 16:
        raise HemoflowError(f"shape must be at least 16 x 16 px, got {shape!r}")
    if not (mpp > 0 and math.isfinite(mpp)):
        raise HemoflowError(f"mpp must be a positive number, got {mpp!r}")
    if not 0 <= rbc_density < 0.7:
        raise HemoflowError(f"rbc_density must be in [0, 0.7), got {rbc_density!r}")
    if not 0 <= irregular_fraction <= 1:
        raise HemoflowError(f"irregular_fraction must be in [0, 1], got {irregular_fraction!r}")
    if not 0.5 <= rbc_min_separation <= 1.5:
        raise HemoflowError(f"rbc_min_separation must be in [0.5, 1.5], got {rbc_min_separation!r}")


def _spacing(sep: float, clear: float, gap: float):
    """``req(a, i, b, j)``: the minimum centre distance between cells a[i] and b[j]
    (``req.extra``: the largest clearance added to the radii)."""

    def req(a, i, b, j):
        """Minimum centre distance between cells a[i] and b[j]."""
        ti, tj = a["type"][i], b["type"][j]
        wbc = (ti >= D.NEUTROPHIL) | (tj >= D.NEUTROPHIL)
        return np.where((ti == D.RBC) & (tj == D.RBC),
                        sep * (a["rs"][i].astype(np.float64) + b["rs"][j]),
                        a["rb"][i].astype(np.float64) + b["rb"][j] + np.where(wbc, clear, gap))

    req.extra = max(clear, gap)
    return req


def _place_wbcs_and_platelets(rng, mix, n_wbc: int, n_platelets: int, um: float, H: int, W: int,
                              req) -> dict[str, np.ndarray]:
    """WBCs (types by largest remainder of the mix, then sequential dart throwing), then
    platelets."""
    quota = np.array(list(mix.values())) * n_wbc
    counts = np.floor(quota).astype(int)
    counts[np.argsort(-(quota - counts), kind="stable")[: n_wbc - counts.sum()]] += 1
    wtypes = rng.permutation(np.repeat(np.arange(len(_WBC_NAMES)) + D.NEUTROPHIL, counts))
    lo_hi = np.array([_WBC_DIAMETER[_WBC_NAMES[t - D.NEUTROPHIL]] for t in wtypes]).reshape(-1, 2)
    wbc = _shape_params(rng, wtypes, rng.uniform(lo_hi[:, 0], lo_hi[:, 1]) * um / 2, 0.0)
    placed = _empty_cells()
    placed = _place_owned(rng, wbc, placed, H, W, req)
    if len(placed["cy"]) < n_wbc:
        log.warning("placed %d of %d WBCs (slide too small or crowded)", len(placed["cy"]), n_wbc)
    ptypes = np.full(n_platelets, D.PLATELET, np.int8)
    plt = _shape_params(rng, ptypes, rng.uniform(*_PLATELET_DIAMETER, n_platelets) * um / 2, 0.0)
    return _place_owned(rng, plt, placed, H, W, req)


def _place_rbcs(seed: int, placed: dict[str, np.ndarray], H: int, W: int, req, *, rbc_density: float,
                mean_rbc_area: float, rbc_diameter_um: float, rbc_diameter_sd_um: float,
                irregular_fraction: float, um: float) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """RBCs per planning block, each block with its own generator, in raster order."""
    nby, nbx = -(-H // _PLAN_BLOCK), -(-W // _PLAN_BLOCK)
    rbc_blocks: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    for by in range(nby):
        for bx in range(nbx):
            brng = np.random.default_rng([int(seed), 0x2BC, by, bx])
            y0, x0 = by * _PLAN_BLOCK, bx * _PLAN_BLOCK
            y1, x1 = min(H, y0 + _PLAN_BLOCK), min(W, x0 + _PLAN_BLOCK)
            k = int(brng.poisson(rbc_density * (y1 - y0) * (x1 - x0) / mean_rbc_area))
            m = 4 * k + 20
            d = np.clip(brng.normal(rbc_diameter_um, rbc_diameter_sd_um, m),
                        rbc_diameter_um * 0.7, rbc_diameter_um * 1.35)
            cand = _shape_params(brng, np.full(m, D.RBC, np.int8), d * um / 2, irregular_fraction)
            cand["cy"] = brng.uniform(y0, y1, m)
            cand["cx"] = brng.uniform(x0, x1, m)
            near = [rbc_blocks[b] for b in ((by - 1, bx - 1), (by - 1, bx), (by - 1, bx + 1),
                                            (by, bx - 1)) if b in rbc_blocks]
            old = _concat([placed, *near])
            rbc_blocks[(by, bx)] = _greedy(cand, np.arange(m), k, old, H, W, req)
    return rbc_blocks


def _finish_cells(cells: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ids, outline areas, centroids and drawing boxes of the placed cells."""
    cells["id"] = np.arange(len(cells["cy"]), dtype=np.int64)
    area, oy, ox = D.outline_stats(cells)
    cells.update(area=area, y=cells["cy"] + oy, x=cells["cx"] + ox)
    rb = cells["rb"].astype(np.float64)
    cells["y0"] = np.floor(cells["cy"] - rb).astype(np.int64) - 1
    cells["x0"] = np.floor(cells["cx"] - rb).astype(np.int64) - 1
    cells["y1"] = np.ceil(cells["cy"] + rb).astype(np.int64) + 2
    cells["x1"] = np.ceil(cells["cx"] + rb).astype(np.int64) + 2
    return cells


def _empty_cells() -> dict[str, np.ndarray]:
    d = {c: np.empty(0, np.float32) for c in _FLOAT_COLS}
    d.update(type=np.empty(0, np.int8), kind=np.empty(0, np.int8),
             cy=np.empty(0), cx=np.empty(0))
    return d


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _take(d: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in d.items()}


def _shape_params(rng, types, R, irregular_fraction: float) -> dict[str, np.ndarray]:
    """Outline and appearance parameters; ``irregular_fraction`` applies to RBCs."""
    n = len(types)
    f = np.float32
    kind = np.where(rng.random(n) < irregular_fraction,
                    rng.choice([D.ELLIPTIC, D.TEARDROP, D.CRENATED], n, p=[.4, .25, .35]),
                    D.ROUND).astype(np.int8)
    plt = types == D.PLATELET
    e = np.where(plt, rng.uniform(0.05, 0.25, n), rng.uniform(0, 0.05, n))
    e = np.where(kind == D.ELLIPTIC, rng.uniform(0.15, 0.3, n), e)
    e = np.where(kind == D.TEARDROP, rng.uniform(0.08, 0.18, n), e)
    amp = np.where(kind == D.TEARDROP, rng.uniform(0.35, 0.6, n),
                   np.where(kind == D.CRENATED, rng.uniform(0.08, 0.14, n), 0.0))
    wa = np.where(plt, rng.uniform(0.03, 0.12, n), rng.uniform(0, 0.025, n))
    pallor = rng.uniform(0.55, 0.75, n) * np.where(kind == D.CRENATED, 0.4, 1.0)
    R = np.asarray(R, np.float64)
    bound = R * (1 + e) * (1 + wa) * (1 + amp)
    return {"type": np.asarray(types, np.int8), "kind": kind, "R": R.astype(f),
            "e": e.astype(f), "phi": rng.uniform(0, 2 * np.pi, n).astype(f), "wa": wa.astype(f),
            "wp": rng.uniform(0, 2 * np.pi, n).astype(f), "amp": amp.astype(f),
            "k": rng.integers(10, 17, n).astype(f),
            "rb": (bound + 1).astype(f),  # bounding radius, px
            # radius for the RBC-RBC spacing: nominal, or halfway to the bound if irregular
            "rs": np.where(kind == D.ROUND, R, 0.5 * (R + bound)).astype(f),
            "pallor": pallor.astype(f), "inten": rng.uniform(0.9, 1.1, n).astype(f)}


def _place_owned(rng, cells, placed, H, W, req, tries: int = 12):
    """Sequential dart throwing: each cell takes its first free candidate position."""
    n = len(cells["R"])
    if n == 0:
        return placed
    idx = np.repeat(np.arange(n), tries)
    cand = _take(cells, idx)
    m = cand["rb"].astype(np.float64) + _MARGIN
    cand["cy"] = rng.uniform(m, np.maximum(m, H - m))
    cand["cx"] = rng.uniform(m, np.maximum(m, W - m))
    return _concat([placed, _greedy(cand, idx, n, placed, H, W, req)])


def _greedy(cand, owner, limit, old, H, W, req):
    """Accept candidates in order unless they conflict with earlier accepted cells."""
    cy, cx = cand["cy"], cand["cx"]
    rb, t = cand["rb"].astype(np.float64), cand["type"]
    n = len(cy)
    blocked = ((cy - rb < _MARGIN) | (cy + rb > H - 1 - _MARGIN)
               | (cx - rb < _MARGIN) | (cx + rb > W - 1 - _MARGIN))
    if n == 0 or limit == 0:
        return _take(cand, np.zeros(0, np.intp))
    pts = np.c_[cy, cx]
    tree = cKDTree(pts)
    reach = 2 * rb.max() + 1 + req.extra
    if len(old["cy"]):
        sel = ((old["cy"] > cy.min() - reach) & (old["cy"] < cy.max() + reach)
               & (old["cx"] > cx.min() - reach) & (old["cx"] < cx.max() + reach))
        o = _take(old, sel)
        if len(o["cy"]):
            orb = o["rb"].astype(np.float64)
            sdm = tree.sparse_distance_matrix(cKDTree(np.c_[o["cy"], o["cx"]]),
                                              rb.max() + orb.max() + 1 + req.extra, output_type="ndarray")
            i, j = sdm["i"], sdm["j"]
            bad = sdm["v"] < req(cand, i, o, j)
            blocked[i[bad]] = True
    pairs = tree.query_pairs(reach, output_type="ndarray")
    a, b = pairs[:, 0], pairs[:, 1]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = np.hypot(cy[lo] - cy[hi], cx[lo] - cx[hi]) < req(cand, lo, cand, hi)
    lo, hi = lo[keep], hi[keep]
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], hi[order]
    start = np.searchsorted(lo, np.arange(n + 1)).tolist()
    hi_l = hi.tolist()
    blk = bytearray(blocked.tobytes())
    done = bytearray(int(owner.max()) + 1)
    own = owner.tolist()
    acc = []
    for i in range(n):
        if blk[i] or done[own[i]]:
            continue
        acc.append(i)
        done[own[i]] = 1
        if len(acc) >= limit:
            break
        for j in hi_l[start[i]:start[i + 1]]:
            blk[j] = 1
    return _take(cand, np.asarray(acc, np.intp))


def synth_field(shape: tuple[int, int] = (1024, 1024), *, mpp: float = 0.25, seed: int = 0,
                rbc_density: float = 0.38, wbc_mix: Mapping[str, float] | str | None = None,
                n_wbc: int | None = None, n_platelets: int | None = None,
                stain: Stain | None = None, **plan_options) -> tuple[np.ndarray, dict]:
    """One synthetic microscope field in memory, with its truth table.

    Takes the arguments of :func:`plan_slide`. Returns ``(rgb uint8[H, W, 3], truth)``.

    Examples
    --------
    >>> rgb, truth = synth_field((300, 400), seed=5, n_wbc=0, n_platelets=0)
    >>> rgb.shape, set(truth["cls"]) <= {"rbc"}
    ((300, 400, 3), True)
    """
    plan = plan_slide(shape, mpp=mpp, seed=seed, rbc_density=rbc_density, wbc_mix=wbc_mix,
                      n_wbc=n_wbc, n_platelets=n_platelets, stain=stain, **plan_options)
    return plan.render_region(0, 0, *plan.shape), plan.truth()


def _downsample_into(dst: np.ndarray, t: np.ndarray, y: int, x: int) -> None:
    """2x2 mean of tile ``t`` (at even level position y, x) into ``dst``."""
    if t.shape[0] % 2:
        t = np.concatenate([t, t[-1:]], axis=0)
    if t.shape[1] % 2:
        t = np.concatenate([t, t[:, -1:]], axis=1)
    h, w = t.shape[0] // 2, t.shape[1] // 2
    s = t[0::2, 0::2].astype(np.uint16)
    s += t[1::2, 0::2]
    s += t[0::2, 1::2]
    s += t[1::2, 1::2]
    s += 2
    s >>= 2
    dst[y // 2:y // 2 + h, x // 2:x // 2 + w] = s


def _tiles(shape, tile, get, down) -> Iterator[np.ndarray]:
    H, W = shape
    for y in range(0, H, tile):
        for x in range(0, W, tile):
            t = get(y, x, min(y + tile, H), min(x + tile, W))
            if down is not None:
                _downsample_into(down, t, y, x)
            yield t


def write_synthetic_slide(path: str | os.PathLike, *, shape: tuple[int, int] = (8192, 8192),
                          mpp: float = 0.25, seed: int = 0, tile: int = 512,
                          compression: str = "zlib", compression_level: int | None = 1,
                          min_level_size: int = 1024,
                          wbc_mix: Mapping[str, float] | str | None = None,
                          n_wbc: int | None = None, n_platelets: int | None = None,
                          stain: Stain | None = None, name: str | None = None,
                          truth_path: str | os.PathLike | None = None,
                          tmpdir: str | os.PathLike | None = None,
                          **plan_options) -> dict[str, np.ndarray]:
    """Write a synthetic slide as a tiled, pyramidal OME-TIFF; return its truth table.

    Level 0 is rendered tile by tile and streamed to the file; each lower level (halving,
    until the larger side is <= ``min_level_size``) is stored as a SubIFD and built from
    the level above through a temporary memory-mapped file, so memory stays bounded by a
    tile whatever the slide size. The pixel size is in the OME metadata
    (``PhysicalSizeX/Y`` in µm) and in the TIFF resolution tags. Pixels do not depend on
    ``tile``. The compression is lossless by default (``"zlib"``; ``"zstd"`` also works).

    Other keyword arguments go to :func:`plan_slide`.

    Examples
    --------
    >>> import tempfile, tifffile
    >>> d = tempfile.mkdtemp()
    >>> truth = write_synthetic_slide(d + "/s.ome.tif", shape=(1536, 1536), n_wbc=3)
    >>> with tifffile.TiffFile(d + "/s.ome.tif") as tf:
    ...     [lvl.shape for lvl in tf.series[0].levels]
    [(1536, 1536, 3), (768, 768, 3)]
    """
    import tifffile

    if tile % 16 or tile <= 0:
        raise HemoflowError(f"tile must be a positive multiple of 16, got {tile!r}")
    plan = plan_slide(shape, mpp=mpp, seed=seed, wbc_mix=wbc_mix, n_wbc=n_wbc,
                      n_platelets=n_platelets, stain=stain, **plan_options)
    ren = plan.renderer()
    levels = [plan.shape]
    while max(levels[-1]) > min_level_size:
        h, w = levels[-1]
        levels.append(((h + 1) // 2, (w + 1) // 2))
    opts = dict(photometric="rgb", tile=(tile, tile), compression=compression,
                compressionargs=None if compression_level is None else {"level": compression_level},
                resolutionunit="CENTIMETER", maxworkers=1, dtype=np.uint8)
    meta = {"axes": "YXS", "PhysicalSizeX": plan.mpp, "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": plan.mpp, "PhysicalSizeYUnit": "µm"}
    if name:
        meta["Name"] = name
    big = plan.shape[0] * plan.shape[1] * 3 * 1.34 > 2**31
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmpdir) as td, \
            tifffile.TiffWriter(path, bigtiff=big, ome=True) as tw:
        def scratch(lev):
            if lev >= len(levels):
                return None
            return np.memmap(Path(td) / f"level{lev}.raw", np.uint8, "w+", shape=(*levels[lev], 3))

        nxt = scratch(1)
        tw.write(_tiles(plan.shape, tile, ren.region, nxt), shape=(*plan.shape, 3),
                 subifds=len(levels) - 1, resolution=(1e4 / plan.mpp, 1e4 / plan.mpp),
                 metadata=meta, **opts)
        for lev in range(1, len(levels)):
            cur, nxt = nxt, scratch(lev + 1)
            res = 1e4 / (plan.mpp * 2**lev)

            def get(y0, x0, y1, x1, cur=cur):
                return np.array(cur[y0:y1, x0:x1])

            tw.write(_tiles(levels[lev], tile, get, nxt), shape=(*levels[lev], 3),
                     subfiletype=1, resolution=(res, res), metadata=None, **opts)
            del cur
    truth = plan.truth()
    if truth_path is not None:
        write_truth(truth_path, truth)
    return truth


def write_truth(path: str | os.PathLike, table: Mapping[str, np.ndarray]) -> None:
    """Write a truth (or cell) table as CSV, or as Parquet when ``path`` ends in ``.parquet``.

    Examples
    --------
    >>> import tempfile
    >>> write_truth(tempfile.mkdtemp() + "/t.csv", {"id": np.arange(2), "cls": np.array(["rbc", "wbc"])})
    """
    import pandas as pd

    df = pd.DataFrame({k: np.asarray(v) for k, v in table.items()})
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".parquet":
        df.to_parquet(p, index=False)
    else:
        df.to_csv(p, index=False)
