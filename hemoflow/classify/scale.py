"""Pixel size of a single-cell image, estimated from the image itself.

Images of one centred white cell (CellaVision exports, marrow crops, another lab's
camera) come without a pixel size. The red cells around the white cell are the ruler:
a normal erythrocyte is about 7.5 µm across whatever the lab. The estimate is

1. background: the brightest mode of the image (the median of the pixels brighter than
   the 75th percentile of luminance);
2. stained matter: pixels at least ``stain_delta`` darker than the background in the
   sum of the three channels, holes filled;
3. white-cell matter: pixels whose blue-minus-green exceeds an Otsu threshold (nuclei and
   the blue cytoplasm of the Romanowsky stain); every stained component that touches it
   (after a small dilation) is removed, so what is left are the red cells;
4. per remaining component, the largest value of its Euclidean distance transform (its
   inscribed radius; for touching red cells it is still about one radius). The image
   border is not taken as an edge, so a red cell cut by the border still measures its
   radius when its centre lies inside;
5. the diameter is twice the median of those radii over components whose radius is
   plausible (at least ``min_radius_px``), and ``mpp = rbc_um / diameter``.

When no red cell can be measured, the white cell's own size is the ruler: the
equivalent diameter of the central white-cell component taken as ``wbc_um`` (a typical
white cell). This fallback is coarser (a lymphocyte is smaller than a monocyte), which
the model tolerates because it is trained with a ±25 % random scale.

:func:`estimate_cell_mpp` returns the estimate and which ruler gave it.

Limits, measured on the development cells: on PBC (CellaVision, red cells all around) the
estimate is 0.100 µm/px (10th-90th percentile 0.09-0.11), the camera's known value. On the
marrow crops, where the white cell fills most of a 250-px image and red cells are cut or
pressed against it, half the images fall back to the white cell and the estimates spread
from 0.046 to 0.12 µm/px around a median of 0.067. A pale cytoplasm ring around a dark
nucleus can pass for a red cell when no red cell is visible. The classifier is trained on
crops cut with this same estimate, plus a random ±33 % scale, so its errors are part of
what it learned.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["estimate_cell_mpp", "pool_estimates", "estimate_batch", "RBC_DIAMETER_UM", "WBC_DIAMETER_UM",
           "POOL_MIN_IMAGES"]

#: Diameter of a normal red cell on a smear, µm.
RBC_DIAMETER_UM = 7.5
#: Typical white-cell diameter used when no red cell is visible, µm.
WBC_DIAMETER_UM = 12.0
#: Fewest images of one size that share a pooled estimate (:func:`pool_estimates`).
POOL_MIN_IMAGES = 8


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=128)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between))])


def _downsample(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    step = max(1, int(np.ceil(max(h, w) / max_side)))
    if step == 1:
        return rgb.astype(np.float32), 1.0
    hh, ww = h // step * step, w // step * step
    small = rgb[:hh, :ww].astype(np.float32).reshape(hh // step, step, ww // step, step, 3).mean(axis=(1, 3))
    return small, float(step)


def _fit_circle(ys: np.ndarray, xs: np.ndarray) -> tuple[float, float]:
    """Algebraic (Kasa) circle fit; returns (radius, RMS residual / radius)."""
    a = np.column_stack([xs, ys, np.ones_like(xs)])
    b = xs * xs + ys * ys
    (c0, c1, c2), *_ = np.linalg.lstsq(a, b, rcond=None)
    cx, cy = c0 / 2, c1 / 2
    r2 = c2 + cx * cx + cy * cy
    if r2 <= 0:
        return 0.0, np.inf
    r = float(np.sqrt(r2))
    res = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) - r
    return r, float(np.sqrt(np.mean(res * res)) / r)


def _rbc_radii(rbc: np.ndarray, near_wbc: np.ndarray, min_radius_px: float) -> np.ndarray:
    """Radius of every red-cell component whose free outline (not on the image border, not
    against the white cell) is a circular arc: a cut or partly hidden red cell still
    measures its full radius from the arc that is visible."""
    rbc = ndi.binary_opening(rbc, iterations=2)
    h, w = rbc.shape
    lab, n = ndi.label(rbc)
    edge = rbc & ~ndi.binary_erosion(rbc, border_value=1)
    edge[:2], edge[-2:], edge[:, :2], edge[:, -2:] = False, False, False, False
    edge &= ~ndi.binary_dilation(near_wbc, iterations=2)
    radii = []
    for k, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        ys, xs = np.nonzero(edge[sl] & (lab[sl] == k))
        if ys.size < 20:
            continue
        r, err = _fit_circle(ys.astype(np.float64) + sl[0].start, xs.astype(np.float64) + sl[1].start)
        if err < 0.12 and min_radius_px <= r <= max(h, w):
            radii.append(r)
    return np.asarray(radii)


def estimate_cell_mpp(
    rgb: np.ndarray,
    *,
    rbc_um: float = RBC_DIAMETER_UM,
    wbc_um: float = WBC_DIAMETER_UM,
    stain_delta: float = 60.0,
    min_radius_px: float = 6.0,
    max_side: int = 200,
) -> tuple[float, str]:
    """Pixel size (µm/px) of a centred single-cell RGB image, and its ruler.

    Parameters
    ----------
    rgb : uint8[H, W, 3]
    rbc_um, wbc_um : float
        Diameters taken for a red cell and, in the fallback, for the white cell.
    stain_delta : float
        How much darker than the background (sum of R, G, B) a pixel must be to be cell.
    min_radius_px : float
        Smallest inscribed radius (in the working image) of a component counted as a red
        cell; smaller ones are platelets, debris or slivers at the border.
    max_side : int
        The image is box-averaged to at most this side first (speed; the estimate is
        scaled back).

    Returns
    -------
    (mpp, ruler) : float and ``"rbc"``, ``"wbc"`` or ``"none"`` (a blank image: 0.1 µm/px
        is returned so the caller can still run, and ``"none"`` says it is a guess).

    >>> import numpy as np
    >>> yy, xx = np.mgrid[:200, :200]
    >>> img = np.full((200, 200, 3), 235, np.uint8)
    >>> for cy, cx in [(40, 40), (40, 160), (160, 40), (160, 160)]:
    ...     img[(yy - cy) ** 2 + (xx - cx) ** 2 < 30 ** 2] = (200, 120, 130)  # red cells, 60 px
    >>> img[(yy - 100) ** 2 + (xx - 100) ** 2 < 25 ** 2] = (90, 50, 150)  # a nucleus
    >>> mpp, ruler = estimate_cell_mpp(img)
    >>> ruler, round(mpp / (7.5 / 60), 1)  # 60 px red cells: 0.125 µm/px
    ('rbc', 1.0)
    """
    small, step = _downsample(np.asarray(rgb), max_side)
    total = small.sum(axis=2)
    lum_hi = np.percentile(total, 75)
    bg = np.median(total[total >= lum_hi])
    stained = ndi.binary_fill_holes(total < bg - stain_delta)
    if stained.sum() < 20:
        return 0.1, "none"
    bmg = small[..., 2] - small[..., 1]
    t = _otsu(bmg[stained])
    wbc = stained & (bmg > max(t, 20.0))
    wbc = ndi.binary_opening(wbc, iterations=1)
    lab, n = ndi.label(stained)
    near_wbc = ndi.binary_dilation(wbc, iterations=3)
    radii = _rbc_radii(stained & ~near_wbc, near_wbc, min_radius_px)
    if radii.size:
        return float(rbc_um / (2.0 * np.median(radii) * step)), "rbc"
    if wbc.any():
        wl, wn = ndi.label(ndi.binary_closing(wbc, iterations=2))
        h, w = wl.shape
        ys, xs = np.nonzero(wl)
        k = int(np.argmin((ys - h / 2) ** 2 + (xs - w / 2) ** 2))
        centre = int(wl[ys[k], xs[k]])
        comp = wl == centre
        # the white cell is the stained component holding the central nucleus (cytoplasm included)
        cell = (lab == np.bincount(lab[comp]).argmax()) if lab[comp].any() else comp
        d_px = 2.0 * np.sqrt(cell.sum() / np.pi) * step
        if d_px > 4:
            return float(wbc_um / d_px), "wbc"
    return 0.1, "none"


def pool_estimates(
    mpps, rulers, shapes, *, min_images: int = POOL_MIN_IMAGES, min_rbc_share: float = 0.2,
) -> tuple[np.ndarray, list[str]]:
    """One pixel size per camera: pool per-image estimates over images of the same size.

    Images of one size in one batch are taken to come from one camera, so they share one
    pixel size. Pooling matters for white-cell types that differ mostly in size
    (lymphocyte, blast, monocyte): a per-image estimate that falls back to the white
    cell's own size (``ruler == "wbc"``) makes every cell the same size and so hides that
    cue, and the red-cell ruler alone scatters by about 10 % per image.

    Per group of same-size images with at least ``min_images`` measurable images: the
    median of the red-cell estimates when at least ``min_rbc_share`` of the group has one
    (the physical ruler), else the median of all estimates. Smaller groups and blank
    images (``ruler == "none"``) keep their own estimate.

    Returns
    -------
    (mpp, ruler) : float array and list of str, per image; a pooled image's ruler is
        ``"pooled"``.

    >>> m, r = pool_estimates([0.08, 0.09, 0.07] * 3, ["rbc", "rbc", "wbc"] * 3, [(250, 250)] * 9)
    >>> round(float(m[0]), 3), r[0]
    (0.085, 'pooled')
    """
    mpps = np.asarray(mpps, dtype=np.float64).copy()
    rulers = [str(r) for r in rulers]
    keys = [tuple(int(v) for v in s[:2]) for s in shapes]
    out = list(rulers)
    for key in set(keys):
        members = [i for i, k in enumerate(keys) if k == key and rulers[i] != "none"]
        if len(members) < min_images:
            continue
        rbc = [i for i in members if rulers[i] == "rbc"]
        use = rbc if len(rbc) >= max(1, min_rbc_share * len(members)) else members
        value = float(np.median(mpps[use]))
        for i in members:
            mpps[i], out[i] = value, "pooled"
    return mpps, out


def estimate_batch(images, *, pool: bool = True) -> tuple[list[float], list[str]]:
    """Pixel size and ruler of each single-cell image of a batch: :func:`estimate_cell_mpp`
    per image, then (with ``pool``) :func:`pool_estimates` over images of the same size.

    ``images`` is any iterable of uint8 [H, W, 3] arrays, consumed once (images are not
    kept), so it can read files lazily."""
    mpps, rulers, shapes = [], [], []
    for rgb in images:
        m, r = estimate_cell_mpp(rgb)
        mpps.append(m)
        rulers.append(r)
        shapes.append(rgb.shape[:2])
    if pool:
        pooled, rulers = pool_estimates(mpps, rulers, shapes)
        mpps = [float(v) for v in pooled]
    return mpps, rulers
