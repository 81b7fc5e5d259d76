"""Drawing primitives of the synthetic smear generator (used by :mod:`hemoflow.synth`).

Everything here works in level-0 pixel coordinates of a slide, and a pixel's value depends
only on the slide plan and on its own coordinates:

- every cell is drawn on its own patch, in its own frame, from its own parameters and seed,
  whatever part of the slide is being rendered;
- the slide is composed in fixed ``BLOCK x BLOCK`` blocks of the slide grid (illumination,
  per-pixel noise, Beer-Lambert colour), and any region is cut from those blocks.

So a region rendered alone, or as part of any tiling, has the same pixels.

Colour model: each component (haemoglobin, chromatin, cytoplasm, granules) has an optical
density (OD) vector per RGB channel; densities add where components overlap and the pixel is
``background * gain * exp(-OD) + noise``.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

import numpy as np
from scipy import ndimage

from hemoflow.errors import HemoflowError

BLOCK = 256  # composition unit, px

TYPE_NAMES = ("rbc", "platelet", "neutrophil", "lymphocyte", "monocyte", "eosinophil",
              "basophil", "blast")
RBC, PLATELET, NEUTROPHIL, LYMPHOCYTE, MONOCYTE, EOSINOPHIL, BASOPHIL, BLAST = range(8)
# Outline kinds: regular disc, elliptocyte, dacrocyte (tear drop), echinocyte (crenated).
ROUND, ELLIPTIC, TEARDROP, CRENATED = range(4)

_BG = (232.0, 226.0, 228.0)


def _od(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    """OD vector that turns the reference background into ``rgb``."""
    return tuple(round(float(np.log(b / c)), 4) for b, c in zip(_BG, rgb))


Vec3 = tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class Stain:
    """Colours of one slide: background RGB and OD vectors of each stained component.

    The defaults resemble a May-Grünwald-Giemsa / Wright smear; :meth:`jittered` draws a
    slide-specific variant (stain intensity, hue, background, noise, illumination).

    Examples
    --------
    >>> s = Stain().jittered(3)
    >>> Stain.from_dict(s.to_dict()) == s
    True
    """

    background: Vec3 = _BG
    rbc: Vec3 = _od((198, 140, 150))
    nucleus: Vec3 = _od((72, 34, 128))
    nucleus_pale: Vec3 = _od((128, 92, 168))
    blast_nucleus: Vec3 = _od((118, 82, 165))
    neutrophil_cytoplasm: Vec3 = _od((218, 192, 206))
    lymphocyte_cytoplasm: Vec3 = _od((165, 186, 220))
    monocyte_cytoplasm: Vec3 = _od((186, 180, 210))
    blast_cytoplasm: Vec3 = _od((140, 152, 206))
    eosinophil_granules: Vec3 = _od((222, 112, 88))
    basophil_granules: Vec3 = _od((58, 24, 92))
    platelet: Vec3 = _od((150, 98, 178))
    noise_sd: float = 2.0  # grey levels
    illumination: float = 0.04  # amplitude of the smooth gain field

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stain:
        return cls(**{k: (tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else float(v))
                      for k, v in d.items()})

    def jittered(self, seed: int) -> Stain:
        """A slide-specific variant, drawn from ``seed``."""
        rng = np.random.default_rng([int(seed), 0x57A1])
        basic = rng.uniform(0.82, 1.18)  # azure / methylene-blue uptake
        acid = rng.uniform(0.82, 1.18)  # eosin uptake
        hue = 1.0 + rng.normal(0.0, 0.05, 3)
        sat = rng.uniform(-0.12, 0.12)

        def adj(v: Vec3, f: float) -> Vec3:
            a = np.asarray(v) * hue
            a = a + sat * (a - a.mean())
            return tuple(float(x) for x in np.clip(a * f, 0.0, None))

        bg = np.asarray(self.background) + rng.uniform(-12.0, 5.0) + rng.normal(0.0, 3.0, 3)
        changes: dict[str, Any] = {"background": tuple(float(x) for x in np.clip(bg, 150, 250))}
        for f in dataclasses.fields(self):
            if f.name in ("rbc", "eosinophil_granules", "neutrophil_cytoplasm"):
                changes[f.name] = adj(getattr(self, f.name), acid)
            elif f.type == "Vec3" and f.name != "background":
                changes[f.name] = adj(getattr(self, f.name), basic)
        changes["noise_sd"] = float(rng.uniform(1.2, 3.0))
        changes["illumination"] = float(rng.uniform(0.02, 0.06))
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------- outlines

def outline_radius(theta, R, e, phi, wa, wp, kind, amp, k):
    """Radius of a star-shaped cell outline at polar angle ``theta`` (broadcasts).

    ``r = R (1 + e cos 2(θ-φ)) (1 + wa cos(3θ - wp)) * shape``, where ``shape`` adds the
    tail of a tear drop or the spicules of a crenated cell.
    """
    r = R * (1 + e * np.cos(2 * (theta - phi))) * (1 + wa * np.cos(3 * theta - wp))
    if np.ndim(kind) == 0:
        if kind == TEARDROP:
            d = (theta - phi + np.pi) % (2 * np.pi) - np.pi
            r = r * (1 + amp * np.exp(-(d / 0.38) ** 2))
        elif kind == CRENATED:
            r = r * (1 + amp * ((0.5 + 0.5 * np.cos(k * (theta - phi))) ** 4 - 0.273))
        return r
    d = (theta - phi + np.pi) % (2 * np.pi) - np.pi
    tear = 1 + amp * np.exp(-(d / 0.38) ** 2)
    cren = 1 + amp * ((0.5 + 0.5 * np.cos(k * (theta - phi))) ** 4 - 0.273)
    return r * np.where(kind == TEARDROP, tear, np.where(kind == CRENATED, cren, 1.0))


def outline_stats(cells: dict[str, np.ndarray], n_theta: int = 128, chunk: int = 512):
    """Area (px) and centroid offset (dy, dx) of every outline, by polar integration."""
    n = len(cells["R"])
    area = np.empty(n)
    oy = np.empty(n)
    ox = np.empty(n)
    th = (np.arange(n_theta) + 0.5) * (2 * np.pi / n_theta)
    for s in range(0, n, chunk):
        sl = slice(s, s + chunk)
        p = [cells[c][sl, None].astype(np.float64) for c in
             ("R", "e", "phi", "wa", "wp", "kind", "amp", "k")]
        r = outline_radius(th[None, :], *p)
        a = 0.5 * np.mean(r**2, axis=1) * 2 * np.pi
        r3 = r**3
        area[sl] = a
        ox[sl] = 2 * np.pi * np.mean(r3 * np.cos(th), axis=1) / (3 * a)
        oy[sl] = 2 * np.pi * np.mean(r3 * np.sin(th), axis=1) / (3 * a)
    return area, oy, ox


# ----------------------------------------------------------------------------- patches

def _texture(shape, rng, sigma_px: float) -> np.ndarray:
    """Smooth unit-variance noise (chromatin, granules)."""
    g = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px)
    return g / (g.std() + 1e-6)


def _blob(dy, dx, cy, cx, r, e=0.0, phi=0.0, edge=1.0):
    """Soft coverage of an ellipse-like blob centred at (cy, cx) of the patch frame."""
    y = dy - cy
    x = dx - cx
    rho = np.hypot(y, x)
    if e:
        r = r * (1 + e * np.cos(2 * (np.arctan2(y, x) - phi)))
    return np.clip((r - rho) / edge + 0.5, 0.0, 1.0)


class CellPainter:
    """Draws one cell's OD patch from the plan columns; results are cached by cell id."""

    def __init__(self, cells: dict[str, np.ndarray], stain: Stain, mpp: float, seed: int,
                 cache_size: int = 256):
        self.c = cells
        self.stain = stain
        self.mpp = float(mpp)
        self.seed = int(seed)
        self.edge = max(0.8, 0.3 / self.mpp)  # optical blur of edges, px
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_size = cache_size
        self.vec = {f.name: np.asarray(getattr(stain, f.name), np.float32)
                    for f in dataclasses.fields(stain) if f.type == "Vec3"}

    def patch(self, i: int) -> np.ndarray:
        """OD patch (h, w, 3) float32 of cell ``i`` over its bbox."""
        p = self.cache.get(i)
        if p is not None:
            self.cache.move_to_end(i)
            return p
        p = self._draw(i)
        self.cache[i] = p
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return p

    def _draw(self, i: int) -> np.ndarray:
        c = self.c
        cy, cx = float(c["cy"][i]), float(c["cx"][i])
        dy = (np.arange(c["y0"][i], c["y1"][i]) - cy).astype(np.float32)[:, None]
        dx = (np.arange(c["x0"][i], c["x1"][i]) - cx).astype(np.float32)[None, :]
        rho = np.hypot(dy, dx)
        theta = np.arctan2(dy, dx)
        t = int(c["type"][i])
        R = float(c["R"][i])
        r = outline_radius(theta, R, float(c["e"][i]), float(c["phi"][i]), float(c["wa"][i]),
                           float(c["wp"][i]), int(c["kind"][i]), float(c["amp"][i]),
                           float(c["k"][i]))
        cov = np.clip((r - rho) / self.edge + 0.5, 0.0, 1.0)
        s = rho / r
        if t == RBC:
            p = float(c["pallor"][i])
            thick = (1 - p * np.exp(-((s / 0.42) ** 2))
                     + 0.15 * np.exp(-(((s - 0.78) / 0.13) ** 2)))
            return (cov * thick * float(c["inten"][i]))[..., None] * self.vec["rbc"]
        rng = np.random.default_rng([self.seed, 0xCE11, int(c["id"][i])])
        if t == PLATELET:
            tex = np.clip(0.6 + 0.5 * _texture(cov.shape, rng, 0.15 / self.mpp), 0, 1.6)
            dens = cov * (0.35 + 0.65 * tex) * (1.1 - 0.5 * np.clip(s, 0, 1))
            return dens[..., None] * (self.vec["platelet"] * float(c["inten"][i]))
        return self._draw_wbc(t, dy, dx, R, cov, s, rng)

    def _draw_wbc(self, t, dy, dx, R, cov, s, rng) -> np.ndarray:
        ang = rng.uniform(0, 2 * np.pi)
        u = (np.cos(ang), np.sin(ang))  # (x, y) of a random axis
        draw = {NEUTROPHIL: self._wbc_neutrophil, LYMPHOCYTE: self._wbc_lymphocyte, MONOCYTE: self._wbc_monocyte,
                EOSINOPHIL: self._wbc_eosinophil, BASOPHIL: self._wbc_basophil}.get(t, self._wbc_blast)
        nuc, chrom, ctex, cyto, cytex, gran = draw(dy, dx, R, cov, s, rng, ang, u)
        nuc = nuc * cov
        cm = cov - nuc
        od = (cm * cytex)[..., None] * cyto + (nuc * ctex)[..., None] * chrom
        if gran is not None:
            od += gran
        return od.astype(np.float32)

    def _wbc_neutrophil(self, dy, dx, R, cov, s, rng, ang, u):
        v, um, shape, ed = self.vec, 1.0 / self.mpp, cov.shape, self.edge
        gran = None
        n = int(rng.choice([3, 4, 5], p=[0.45, 0.4, 0.15]))
        span = rng.uniform(3.0, 4.4)
        ra = 0.4 * R
        angs = ang + np.linspace(0, span, n) + rng.normal(0, 0.12, n)
        ly, lx = ra * np.sin(angs), ra * np.cos(angs)
        nuc = np.zeros(shape, np.float32)
        for j in range(n):
            rl = R * rng.uniform(0.25, 0.3)
            nuc = np.maximum(nuc, _blob(dy, dx, ly[j], lx[j], rl, rng.uniform(.15, .3),
                                        angs[j] + np.pi / 2, ed))
            if j:
                for f in np.linspace(0.2, 0.8, 4):
                    my = ly[j - 1] + f * (ly[j] - ly[j - 1])
                    mx = lx[j - 1] + f * (lx[j] - lx[j - 1])
                    nuc = np.maximum(nuc, _blob(dy, dx, my, mx, 0.09 * R, edge=ed))
        chrom = v["nucleus"] * 0.95
        ctex = 0.82 + 0.2 * _texture(shape, rng, 0.35 * um)
        cyto = v["neutrophil_cytoplasm"]
        cytex = 1 + 0.2 * _texture(shape, rng, 0.12 * um)
        return nuc, chrom, ctex, cyto, cytex, gran

    def _wbc_lymphocyte(self, dy, dx, R, cov, s, rng, ang, u):
        v, um, shape, ed = self.vec, 1.0 / self.mpp, cov.shape, self.edge
        gran = None
        off = rng.uniform(0, 0.12) * R
        nuc = _blob(dy, dx, off * u[1], off * u[0], R * rng.uniform(0.78, 0.88),
                    rng.uniform(0, 0.08), ang, ed)
        chrom = v["nucleus"] * rng.uniform(1.0, 1.12)
        ctex = 0.88 + 0.14 * _texture(shape, rng, 0.4 * um)
        cyto = v["lymphocyte_cytoplasm"]
        cytex = 0.9 + 0.25 * np.clip(s, 0, 1) ** 2
        return nuc, chrom, ctex, cyto, cytex, gran

    def _wbc_monocyte(self, dy, dx, R, cov, s, rng, ang, u):
        v, um, shape, ed = self.vec, 1.0 / self.mpp, cov.shape, self.edge
        gran = None
        off = 0.12 * R
        ny, nx = -off * u[1], -off * u[0]
        rn = R * rng.uniform(0.55, 0.64)
        nuc = _blob(dy, dx, ny, nx, rn, rng.uniform(0.05, 0.18), ang, ed)
        nuc *= 1 - _blob(dy, dx, ny + 0.95 * rn * u[1], nx + 0.95 * rn * u[0],
                         rn * rng.uniform(0.4, 0.55), edge=ed)
        chrom = v["nucleus_pale"]
        ctex = 0.8 + 0.25 * _texture(shape, rng, 0.5 * um)
        cyto = v["monocyte_cytoplasm"]
        cytex = 1 + 0.15 * _texture(shape, rng, 0.2 * um)
        for _ in range(int(rng.integers(2, 9))):
            a, q = rng.uniform(0, 2 * np.pi), R * np.sqrt(rng.uniform(0.2, 0.75))
            cytex = cytex * (1 - 0.85 * _blob(dy, dx, q * np.sin(a), q * np.cos(a),
                                              rng.uniform(0.4, 1.0) * um, edge=ed))
        return nuc, chrom, ctex, cyto, cytex, gran

    def _wbc_eosinophil(self, dy, dx, R, cov, s, rng, ang, u):
        v, um, shape, ed = self.vec, 1.0 / self.mpp, cov.shape, self.edge
        gran = None
        d = 0.36 * R
        nuc = np.zeros(shape, np.float32)
        for sgn in (-1, 1):  # two lobes of at least ~2 um radius each
            nuc = np.maximum(nuc, _blob(dy, dx, sgn * d * u[1], sgn * d * u[0],
                                        R * rng.uniform(0.31, 0.36), 0.15, ang, ed))
        nuc = np.maximum(nuc, _blob(dy, dx, 0, 0, 0.09 * R, edge=ed))
        chrom = v["nucleus"] * 0.95
        ctex = 0.82 + 0.2 * _texture(shape, rng, 0.35 * um)
        g = np.clip(0.55 + 0.5 * _texture(shape, rng, 0.22 * um), 0, 1.4)
        cyto = v["eosinophil_granules"] * 0.8
        cytex = 0.3 + 0.7 * g
        return nuc, chrom, ctex, cyto, cytex, gran

    def _wbc_basophil(self, dy, dx, R, cov, s, rng, ang, u):
        v, um, shape, ed = self.vec, 1.0 / self.mpp, cov.shape, self.edge
        gran = None
        nuc = _blob(dy, dx, 0, 0, R * rng.uniform(0.45, 0.55), 0.2, ang, ed)
        chrom = v["nucleus"] * 0.7
        ctex = 0.9 + 0.1 * _texture(shape, rng, 0.4 * um)
        cyto = v["nucleus_pale"] * 0.3
        cytex = 1.0
        g = np.clip((_texture(shape, rng, 0.25 * um) + 0.3) * 1.2, 0, 1.3)
        gran = (cov * g * (1 - 0.4 * s ** 4))[..., None] * (v["basophil_granules"] * 0.75)
        return nuc, chrom, ctex, cyto, cytex, gran

    def _wbc_blast(self, dy, dx, R, cov, s, rng, ang, u):
        v, um, shape, ed = self.vec, 1.0 / self.mpp, cov.shape, self.edge
        gran = None
        off = rng.uniform(0, 0.08) * R
        ny, nx = off * u[1], off * u[0]
        rn = R * rng.uniform(0.76, 0.84)
        nuc = _blob(dy, dx, ny, nx, rn, rng.uniform(0, 0.08), ang, ed)
        chrom = v["blast_nucleus"]
        ctex = 0.9 + 0.1 * _texture(shape, rng, 0.12 * um)
        nucleoli = np.zeros(shape, np.float32)
        for _ in range(int(rng.integers(1, 4))):
            a, q = rng.uniform(0, 2 * np.pi), rn * rng.uniform(0.0, 0.45)
            nucleoli = np.maximum(nucleoli, _blob(dy, dx, ny + q * np.sin(a),
                                                  nx + q * np.cos(a),
                                                  rng.uniform(0.6, 1.1) * um, edge=ed))
        ctex = ctex * (1 - 0.55 * nucleoli)
        gran = (nuc * nucleoli)[..., None] * (v["blast_cytoplasm"] * 0.35)
        cyto = v["blast_cytoplasm"]
        cytex = 0.85 + 0.3 * np.clip(s, 0, 1) ** 2
        return nuc, chrom, ctex, cyto, cytex, gran

# ----------------------------------------------------------------------------- composition

class Compositor:
    """Turns summed OD blocks into RGB: illumination, background, noise (slide-global)."""

    def __init__(self, stain: Stain, mpp: float, seed: int):
        self.stain = stain
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 0x111])
        n = 4
        wavelength = rng.uniform(400.0, 2500.0, n) / mpp  # px
        ang = rng.uniform(0, 2 * np.pi, n)
        self.ky = (2 * np.pi / wavelength * np.sin(ang))[None, :]
        self.kx = (2 * np.pi / wavelength * np.cos(ang))[None, :]
        self.ph = rng.uniform(0, 2 * np.pi, n)[None, :]
        self.amp = stain.illumination * rng.dirichlet(np.ones(n))[None, :]
        self.tint = (1 + rng.normal(0, 0.3, 3)).astype(np.float32)
        self.bg = np.asarray(stain.background, np.float32)

    def gain(self, y0: int, x0: int) -> np.ndarray:
        """Smooth illumination gain (BLOCK, BLOCK) at block origin (y0, x0): a few plane
        waves, separable so it costs one small matrix product."""
        y = np.arange(y0, y0 + BLOCK, dtype=np.float64)[:, None]
        x = np.arange(x0, x0 + BLOCK, dtype=np.float64)[None, :]
        A, B = self.ky * y + self.ph, self.kx.T * x  # (BLOCK, n), (n, BLOCK)
        left = np.concatenate([self.amp * np.cos(A), -self.amp * np.sin(A)], axis=1)
        return (left @ np.concatenate([np.cos(B), np.sin(B)], axis=0)).astype(np.float32)

    def compose(self, od: np.ndarray, by: int, bx: int) -> np.ndarray:
        """RGB uint8 of block (by, bx) from its summed OD (BLOCK, BLOCK, 3) float32 (which
        is overwritten)."""
        light = self.gain(by * BLOCK, bx * BLOCK)[..., None] * self.tint
        light += 1
        light *= self.bg
        np.negative(od, out=od)
        np.exp(od, out=od)
        od *= light
        # Per-pixel noise, a function of the block position only (triangular, SD noise_sd).
        rng = np.random.default_rng([self.seed, 0x2015E, by, bx])
        b = np.frombuffer(rng.bytes(2 * od.size), np.uint8).reshape(2, *od.shape)
        noise = b[0].astype(np.float32)
        noise += b[1]
        noise -= 255
        noise *= np.float32(self.stain.noise_sd / 104.5)
        od += noise
        np.rint(od, out=od)
        np.clip(od, 0, 255, out=od)
        return od.astype(np.uint8)


class Renderer:
    """Renders any region of a planned slide from the fixed blocks of the slide grid."""

    def __init__(self, cells: dict[str, np.ndarray], shape: tuple[int, int], stain: Stain,
                 mpp: float, seed: int):
        self.cells = c = cells
        B = BLOCK
        self.nbx = -(-shape[1] // B) + 1
        self.key = (c["cy"] // B).astype(np.int64) * self.nbx + (c["cx"] // B).astype(np.int64)
        self.order = np.argsort(self.key, kind="stable")
        self.sorted_key = self.key[self.order]
        self.reach = int(np.ceil((float(c["rb"].max(initial=0)) + 3) / B))
        self.painter = CellPainter(c, stain, mpp, seed)
        self.comp = Compositor(stain, mpp, seed)

    def _cells_in(self, by: int, bx: int) -> np.ndarray:
        c, B, r = self.cells, BLOCK, self.reach
        parts = []
        for yy in range(max(by - r, 0), by + r + 1):
            k0 = yy * self.nbx + max(bx - r, 0)
            k1 = yy * self.nbx + min(bx + r, self.nbx - 1)
            s, e = np.searchsorted(self.sorted_key, [k0, k1 + 1])
            parts.append(self.order[s:e])
        idx = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.intp)
        y0, x0 = by * B, bx * B
        hit = ((c["y0"][idx] < y0 + B) & (c["y1"][idx] > y0)
               & (c["x0"][idx] < x0 + B) & (c["x1"][idx] > x0))
        return idx[hit]

    def block(self, by: int, bx: int) -> np.ndarray:
        """RGB uint8 (BLOCK, BLOCK, 3) of block (by, bx): cells added in id order."""
        c, B = self.cells, BLOCK
        od = np.zeros((B, B, 3), np.float32)
        y0, x0 = by * B, bx * B
        for i in self._cells_in(by, bx).tolist():
            p = self.painter.patch(i)
            py0, px0 = int(c["y0"][i]), int(c["x0"][i])
            sy0, sx0 = max(py0, y0), max(px0, x0)
            sy1, sx1 = min(py0 + p.shape[0], y0 + B), min(px0 + p.shape[1], x0 + B)
            od[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] += p[sy0 - py0:sy1 - py0, sx0 - px0:sx1 - px0]
        return self.comp.compose(od, by, bx)

    def region(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        """RGB uint8 of ``[y0:y1, x0:x1]``, cut from the blocks it overlaps."""
        if y1 <= y0 or x1 <= x0 or min(y0, x0) < 0:
            raise HemoflowError(f"bad region [{y0}:{y1}, {x0}:{x1}]")
        B = BLOCK
        out = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        for by in range(y0 // B, -(-y1 // B)):
            for bx in range(x0 // B, -(-x1 // B)):
                blk = self.block(by, bx)
                sy0, sx0 = max(by * B, y0), max(bx * B, x0)
                sy1, sx1 = min(by * B + B, y1), min(bx * B + B, x1)
                out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = \
                    blk[sy0 - by * B:sy1 - by * B, sx0 - bx * B:sx1 - bx * B]
        return out
