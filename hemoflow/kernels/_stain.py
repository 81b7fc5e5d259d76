"""Stain planes at the working scale (Numba).

- :func:`stain_planes` -- block-average an RGB image by an integer factor (or an
  area-weighted ratio p/q) and return the optical-density cell and nucleus scores in one
  pass (lookup tables instead of logs), optionally the three OD planes too.
- :func:`binomial3` -- 3x3 binomial smoothing of a plane.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._nhwc import interleave

__all__ = ["stain_planes", "binomial3"]


@njit(cache=True, nogil=True)
def _pairs_row(r0, r1, w, i, lut, bg, green_minus_red, cell, nuc, od):
    # output row i of _stain_planes at factor 2 from input rows r0, r1 (flattened RGB)
    wp = cell.shape[1]
    want_od = od.shape[1] > 0
    for j in range(wp):
        b = 6 * j
        if 2 * j + 1 < w:
            o0 = lut[0, np.int64(r0[b]) + np.int64(r0[b + 3]) + np.int64(r1[b]) + np.int64(r1[b + 3])]
            o1 = lut[1, np.int64(r0[b + 1]) + np.int64(r0[b + 4]) + np.int64(r1[b + 1]) + np.int64(r1[b + 4])]
            o2 = lut[2, np.int64(r0[b + 2]) + np.int64(r0[b + 5]) + np.int64(r1[b + 2]) + np.int64(r1[b + 5])]
        else:  # a last column of one pixel (odd width): a partial block of 2
            o0 = np.float32(np.log(bg[0] / max((np.int64(r0[b]) + np.int64(r1[b])) / 2, 1.0)))
            o1 = np.float32(np.log(bg[1] / max((np.int64(r0[b + 1]) + np.int64(r1[b + 1])) / 2, 1.0)))
            o2 = np.float32(np.log(bg[2] / max((np.int64(r0[b + 2]) + np.int64(r1[b + 2])) / 2, 1.0)))
        if green_minus_red:
            cell[i, j] = o1 - o0
        else:
            cell[i, j] = o1
        nuc[i, j] = o0 - o2
        if want_od:
            od[0, i, j] = o0
            od[1, i, j] = o1
            od[2, i, j] = o2


@njit(cache=True, nogil=True)
def _stain_planes(rgb, f, lut, bg, green_minus_red, smooth, od):
    h, w = rgb.shape[0], rgb.shape[1]
    hp = (h + f - 1) // f
    wp = (w + f - 1) // f
    cell = np.empty((hp, wp), np.float32)
    nuc = np.empty((hp, wp), np.float32)
    sums = np.zeros((wp, 3), np.int64)
    flat = rgb.reshape(h, w * 3)
    acc = np.zeros(w * 3, np.int32)
    for i in range(hp):
        y0 = i * f
        y1 = min(y0 + f, h)
        if f == 2 and y1 - y0 == 2:
            # the commonest factor (0.25 um/px scans): 2x2 blocks summed straight from the rows
            _pairs_row(flat[y0], flat[y0 + 1], w, i, lut, bg, green_minus_red, cell, nuc, od)
            continue
        acc[:] = 0
        for y in range(y0, y1):
            row = flat[y]
            for k in range(w * 3):
                acc[k] += row[k]
        for j in range(wp):
            x0 = j * f
            x1 = min(x0 + f, w)
            s0 = 0
            s1 = 0
            s2 = 0
            for x in range(x0, x1):
                s0 += acc[3 * x]
                s1 += acc[3 * x + 1]
                s2 += acc[3 * x + 2]
            sums[j, 0] = s0
            sums[j, 1] = s1
            sums[j, 2] = s2
        for j in range(wp):
            n = (y1 - y0) * (min(j * f + f, w) - j * f)
            if n == f * f:
                o0 = lut[0, sums[j, 0]]
                o1 = lut[1, sums[j, 1]]
                o2 = lut[2, sums[j, 2]]
            else:
                o0 = np.float32(np.log(bg[0] / max(sums[j, 0] / n, 1.0)))
                o1 = np.float32(np.log(bg[1] / max(sums[j, 1] / n, 1.0)))
                o2 = np.float32(np.log(bg[2] / max(sums[j, 2] / n, 1.0)))
            if green_minus_red:
                cell[i, j] = o1 - o0
            else:
                cell[i, j] = o1
            nuc[i, j] = o0 - o2
            if od.shape[1]:
                od[0, i, j] = o0
                od[1, i, j] = o1
                od[2, i, j] = o2
    if smooth:
        cell = _binomial3(cell)
        nuc = _binomial3(nuc)
    return cell, nuc


@njit(cache=True, nogil=True)
def _spans(n_in, p, q):
    # output pixel k of an axis of n_in input pixels resampled by p/q covers the input span
    # [k p / q, (k + 1) p / q): each input pixel repeated q times, then blocks of p. Returns
    # the first input index of each output pixel, the per-input-pixel weights (repeats
    # inside the block, 1..q) packed in one array, and where each pixel's weights start.
    n_rep = n_in * q
    n_out = (n_rep + p - 1) // p
    first = np.empty(n_out, np.int64)
    start = np.empty(n_out + 1, np.int64)
    wts = np.empty(n_out * (p // q + 2), np.int64)
    m = 0
    for k in range(n_out):
        r0 = k * p
        r1 = min(r0 + p, n_rep)
        first[k] = r0 // q
        start[k] = m
        for i in range(r0 // q, (r1 - 1) // q + 1):
            wts[m] = min(r1, (i + 1) * q) - max(r0, i * q)
            m += 1
    start[n_out] = m
    return first, start, wts


@njit(cache=True, nogil=True)
def _stain_planes_rational(rgb, p, q, lut, bg, green_minus_red, smooth, od):
    # _stain_planes for a working pixel of p/q input pixels (area-weighted means): the
    # weighted sums are integers, so full pixels (weight p * p) read the same lookup table
    h, w = rgb.shape[0], rgb.shape[1]
    fy, sy, wy = _spans(h, p, q)
    fx, sx, wx = _spans(w, p, q)
    hp, wp = len(fy), len(fx)
    cell = np.empty((hp, wp), np.float32)
    nuc = np.empty((hp, wp), np.float32)
    flat = rgb.reshape(h, w * 3)
    acc = np.zeros(w * 3, np.int64)
    for i in range(hp):
        acc[:] = 0
        ny = 0
        for t in range(sy[i], sy[i + 1]):
            c = wy[t]
            ny += c
            row = flat[fy[i] + t - sy[i]]
            for k in range(w * 3):
                acc[k] += c * np.int64(row[k])
        for j in range(wp):
            s0 = np.int64(0)
            s1 = np.int64(0)
            s2 = np.int64(0)
            nx = 0
            for t in range(sx[j], sx[j + 1]):
                c = wx[t]
                nx += c
                x = fx[j] + t - sx[j]
                s0 += c * acc[3 * x]
                s1 += c * acc[3 * x + 1]
                s2 += c * acc[3 * x + 2]
            n = ny * nx
            if n == p * p:
                o0 = lut[0, s0]
                o1 = lut[1, s1]
                o2 = lut[2, s2]
            else:
                o0 = np.float32(np.log(bg[0] / max(s0 / n, 1.0)))
                o1 = np.float32(np.log(bg[1] / max(s1 / n, 1.0)))
                o2 = np.float32(np.log(bg[2] / max(s2 / n, 1.0)))
            if green_minus_red:
                cell[i, j] = o1 - o0
            else:
                cell[i, j] = o1
            nuc[i, j] = o0 - o2
            if od.shape[1]:
                od[0, i, j] = o0
                od[1, i, j] = o1
                od[2, i, j] = o2
    if smooth:
        cell = _binomial3(cell)
        nuc = _binomial3(nuc)
    return cell, nuc


@njit(cache=True, nogil=True, inline="always")
def _plane_pairs(p0, p1, two, lut_c, bg_c, out):
    # out[j] = optical density of block j (2 x 2 px) of rows p0, p1 of one plane; a block
    # cut by the right edge (odd width) or the bottom (``two`` False: p1 unused) takes the
    # mean of its pixels, as in _stain_planes
    w = p0.shape[0]
    wf = w // 2
    if two:
        for j in range(wf):
            x = 2 * j
            out[j] = lut_c[np.int64(p0[x]) + np.int64(p0[x + 1]) + np.int64(p1[x]) + np.int64(p1[x + 1])]
        if w % 2:
            out[wf] = np.float32(np.log(bg_c / max((np.int64(p0[w - 1]) + np.int64(p1[w - 1])) / 2, 1.0)))
    else:
        for j in range(wf):
            x = 2 * j
            out[j] = np.float32(np.log(bg_c / max((np.int64(p0[x]) + np.int64(p0[x + 1])) / 2, 1.0)))
        if w % 2:
            out[wf] = np.float32(np.log(bg_c / max(np.int64(p0[w - 1]) / 1, 1.0)))


@njit(cache=True, nogil=True)
def _stain_planes2_planar(P, lut, bg, green_minus_red, smooth, od):
    # _stain_planes at factor 2 for planar uint8[3, H, W] (C order), the layout a Zarr
    # window reads: the same values without interleaving the window first; one plane at
    # a time per output row (simple loops the compiler vectorises)
    h, w = P.shape[1], P.shape[2]
    hp = (h + 1) // 2
    wp = (w + 1) // 2
    cell = np.empty((hp, wp), np.float32)
    nuc = np.empty((hp, wp), np.float32)
    want_od = od.shape[1] > 0
    tmp = np.empty((3, wp), np.float32)
    for i in range(hp):
        y0 = 2 * i
        two = y0 + 1 < h
        y1 = y0 + 1 if two else y0
        o = od[:, i] if want_od else tmp
        for c in range(3):
            _plane_pairs(P[c, y0], P[c, y1], two, lut[c], bg[c], o[c])
        o0, o1, o2 = o[0], o[1], o[2]
        ci = cell[i]
        ni = nuc[i]
        for j in range(wp):
            ci[j] = o1[j] - o0[j] if green_minus_red else o1[j]
            ni[j] = o0[j] - o2[j]
    if smooth:
        cell = _binomial3(cell)
        nuc = _binomial3(nuc)
    return cell, nuc


@njit(cache=True, nogil=True)
def _binomial3(a):
    """Separable [1, 2, 1] / 4 smoothing, edges replicated."""
    h, w = a.shape
    t = np.empty_like(a)
    for i in range(h):
        for j in range(w):
            jl = j - 1 if j > 0 else 0
            jr = j + 1 if j < w - 1 else w - 1
            t[i, j] = np.float32(0.25) * a[i, jl] + np.float32(0.5) * a[i, j] + np.float32(0.25) * a[i, jr]
    out = np.empty_like(a)
    for i in range(h):
        iu = i - 1 if i > 0 else 0
        idn = i + 1 if i < h - 1 else h - 1
        for j in range(w):
            out[i, j] = np.float32(0.25) * t[iu, j] + np.float32(0.5) * t[i, j] + np.float32(0.25) * t[idn, j]
    return out


def stain_planes(rgb: np.ndarray, factor: int, background, *, green_minus_red: bool = True, smooth: bool = False,
                 od: bool = False, upsample: int = 1):
    """Block-average ``rgb`` (uint8[H, W, 3]) by ``factor`` and return ``(cell, nucleus)``.

    ``OD_c = log(background_c / max(mean_c, 1))``; cell = ``OD_g - OD_r`` (or ``OD_g``),
    nucleus = ``OD_r - OD_b``, float32 of shape ``(ceil(H/f), ceil(W/f))``. Blocks are
    anchored at pixel (0, 0); partial blocks at the bottom/right edge average the pixels
    they hold. ``smooth`` applies a 3x3 binomial filter at the working scale. ``od=True``
    also returns the three unsmoothed optical densities, float32[3, h, w], as a third value.
    ``rgb`` may also be a transposed view of planar ``uint8[3, H, W]`` planes
    (``np.moveaxis(planes, 0, -1)``, as :meth:`hemoflow.io.omezarr.ZarrSlide.read_region`
    gives with ``interleave=False``): at factor 2 the planes are read where they lie.

    ``upsample`` = q > 1 makes the working pixel ``factor / q`` input pixels (a rational
    scale, for pixel sizes no integer factor brings near the working pixel): each input
    pixel counts q x q times and blocks of ``factor`` x ``factor`` of those are averaged
    (area weighting), shape ``(ceil(H q / f), ceil(W q / f))``; q = 1 is the block mean.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8[H, W, 3], got {rgb.dtype} shape {rgb.shape}")
    f = max(int(factor), 1)
    q = int(upsample)
    if q < 1:
        raise ValueError(f"upsample must be >= 1, got {upsample}")
    if q > 1 and math.gcd(f, q) != 1:
        raise ValueError(f"factor {f} / upsample {q} is not in lowest terms")
    planes = np.moveaxis(rgb, -1, 0)
    planar = f == 2 and q == 1 and planes.flags.c_contiguous and not rgb.flags.c_contiguous
    if not planar and not rgb.flags.c_contiguous:
        rgb = interleave(planes)
    bg = np.maximum(np.asarray(background, np.float64).reshape(3), 1.0)
    # a full working pixel sums f * f (area-weighted) input values: one lookup per channel
    nn = f * f
    s = np.arange(255 * nn + 1, dtype=np.float64)
    lut = np.ascontiguousarray(np.log(bg[:, None] / np.maximum(s[None, :] / nn, 1.0)).astype(np.float32))
    hp, wp = -(-rgb.shape[0] * q // f), -(-rgb.shape[1] * q // f)
    out = np.empty((3, hp, wp) if od else (3, 0, 0), np.float32)
    gmr, sm = bool(green_minus_red), bool(smooth)
    if q > 1:
        cell, nuc = _stain_planes_rational(rgb, f, q, lut, bg, gmr, sm, out)
    elif planar:
        cell, nuc = _stain_planes2_planar(planes, lut, bg, gmr, sm, out)
    else:
        cell, nuc = _stain_planes(rgb, f, lut, bg, gmr, sm, out)
    return (cell, nuc, out) if od else (cell, nuc)


def binomial3(a: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 smoothing of a float32 plane, edges replicated (the
    ``smooth`` step of :func:`stain_planes`, for one plane)."""
    return _binomial3(np.ascontiguousarray(a, np.float32))
