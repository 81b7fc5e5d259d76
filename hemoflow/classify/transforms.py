"""Pre-processing shared by training and inference, and the training augmentation.

Every cell image, whatever its source, is brought to the model's pixel size
(``io.mpp``) and centre-cropped (or padded) to ``io.input_size``: the same field of view
in µm as the pipeline's crops. Training adds random changes of geometry, colour/stain
and capture (scale, resampling filter, JPEG re-encoding, blur, noise) on top, because
robustness to how an image was captured matters more here than fitting one camera.
"""

from __future__ import annotations

import io as _io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from hemoflow.errors import UnsupportedImageError

__all__ = [
    "resample_to_mpp",
    "center_crop_pad",
    "prepare_cell_image",
    "AugmentParams",
    "augment_cell",
    "jpeg_roundtrip",
]

_FILTERS = (
    Image.Resampling.BILINEAR,
    Image.Resampling.BICUBIC,
    Image.Resampling.LANCZOS,
    Image.Resampling.BOX,
    Image.Resampling.HAMMING,
)


def _check_rgb(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        got = f"{getattr(img, 'dtype', type(img).__name__)}{list(getattr(img, 'shape', []))}"
        raise UnsupportedImageError(f"expected a uint8[H,W,3] RGB image, got {got}")
    return img


def border_colour(img: np.ndarray) -> tuple[int, int, int]:
    """Median colour of the 1-px border: the background used for padding."""
    edge = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]], axis=0)
    return tuple(int(v) for v in np.median(edge, axis=0))  # type: ignore[return-value]


def resample_to_mpp(
    img: np.ndarray, src_mpp: float, dst_mpp: float, *, resample: int = Image.Resampling.BILINEAR
) -> np.ndarray:
    """Resize ``img`` from ``src_mpp`` to ``dst_mpp`` µm/px (PIL, antialiased)."""
    _check_rgb(img)
    f = float(src_mpp) / float(dst_mpp)
    h, w = img.shape[:2]
    nh, nw = max(1, round(h * f)), max(1, round(w * f))
    if (nh, nw) == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((nw, nh), resample=resample))


def center_crop_pad(img: np.ndarray, size: int, *, fill: tuple[int, int, int] | None = None) -> np.ndarray:
    """Centre-crop ``img`` to ``size`` x ``size``, padding with ``fill`` (default: border colour)."""
    h, w = img.shape[:2]
    if h >= size and w >= size:
        y0, x0 = (h - size) // 2, (w - size) // 2
        return np.ascontiguousarray(img[y0 : y0 + size, x0 : x0 + size])
    out = np.empty((size, size, 3), np.uint8)
    out[:] = border_colour(img) if fill is None else fill
    ch, cw = min(h, size), min(w, size)
    sy, sx = (h - ch) // 2, (w - cw) // 2
    dy, dx = (size - ch) // 2, (size - cw) // 2
    out[dy : dy + ch, dx : dx + cw] = img[sy : sy + ch, sx : sx + cw]
    return out


def prepare_cell_image(img: np.ndarray, *, mpp: float, size: int, dst_mpp: float) -> np.ndarray:
    """A centred single-cell image at ``mpp`` -> uint8 [size,size,3] crop at ``dst_mpp``.

    >>> import numpy as np
    >>> prepare_cell_image(np.zeros((360, 363, 3), np.uint8), mpp=0.1, size=96, dst_mpp=0.3).shape
    (96, 96, 3)
    """
    return center_crop_pad(resample_to_mpp(_check_rgb(img), mpp, dst_mpp), size)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode ``img`` as JPEG at ``quality`` with Pillow and decode it again."""
    buf = _io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the training augmentation (probabilities in [0, 1])."""

    scale: tuple[float, float] = (0.8, 1.2)  # pixel-size error (+-20 %)
    rotate_deg: float = 20.0
    p_rotate: float = 0.5
    shift_px: int = 4
    hue: float = 0.03
    saturation: tuple[float, float] = (0.75, 1.3)
    brightness: tuple[float, float] = (0.85, 1.15)
    contrast: tuple[float, float] = (0.8, 1.2)
    channel_gain: float = 0.08
    p_jpeg_source: float = 0.4  # re-encode at source resolution (like a capture)
    p_jpeg_crop: float = 0.3  # re-encode the final crop
    jpeg_quality: tuple[int, int] = (50, 95)
    p_blur: float = 0.25
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    p_noise: float = 0.3
    noise_sigma: tuple[float, float] = (1.0, 6.0)
    #: stain jitter in optical density (OD = -log(I/255)): per-channel OD scale
    #: ``1 +- od_scale`` and shift ``+- od_shift`` (0 = off); mimics another stain batch
    od_scale: float = 0.0
    od_shift: float = 0.0


def _hsv_jitter(img: np.ndarray, rng: np.random.Generator, p: AugmentParams) -> np.ndarray:
    hsv = np.asarray(Image.fromarray(img).convert("HSV")).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-p.hue, p.hue) * 255.0) % 256.0
    hsv[..., 1] *= rng.uniform(*p.saturation)
    out = Image.fromarray(np.clip(hsv, 0, 255).astype(np.uint8), mode="HSV").convert("RGB")
    return np.asarray(out)


def _od_jitter(img: np.ndarray, rng: np.random.Generator, p: AugmentParams) -> np.ndarray:
    od = -np.log((img.astype(np.float32) + 1.0) / 256.0)
    a = 1.0 + rng.uniform(-p.od_scale, p.od_scale, size=3).astype(np.float32)
    b = rng.uniform(-p.od_shift, p.od_shift, size=3).astype(np.float32)
    out = 256.0 * np.exp(-np.maximum(od * a + b, 0.0)) - 1.0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def augment_cell(
    img: np.ndarray,
    *,
    src_mpp: float,
    dst_mpp: float,
    size: int,
    rng: np.random.Generator,
    params: AugmentParams = AugmentParams(),
) -> np.ndarray:
    """Random training view of a centred cell image: uint8 [size, size, 3] at ~``dst_mpp``.

    Geometry (scale, rotation, flips, 90° turns, shift), colour and stain (hue,
    saturation, brightness, contrast, per-channel gains) and capture (JPEG quality
    50–95 at source or crop resolution, resampling filter, blur, noise).
    """
    p = params
    fill = border_colour(img)
    # capture: JPEG artefacts at the source resolution
    if rng.random() < p.p_jpeg_source:
        img = jpeg_roundtrip(img, int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1)))
    # geometry: crop the needed source region (with rotation margin), resize once
    s = math.exp(rng.uniform(math.log(p.scale[0]), math.log(p.scale[1])))
    f = float(src_mpp) / (float(dst_mpp) * s)  # source px -> output px
    need = int(math.ceil(size * 1.5 / f)) + 2  # covers rotation + shift
    dy, dx = rng.integers(-p.shift_px, p.shift_px + 1, size=2)
    h, w = img.shape[:2]
    cy, cx = h // 2 + int(round(dy / f)), w // 2 + int(round(dx / f))
    y0, x0 = cy - need // 2, cx - need // 2
    region = np.empty((need, need, 3), np.uint8)
    region[:] = fill
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y0 + need, h), min(x0 + need, w)
    if sy1 > sy0 and sx1 > sx0:
        region[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    n = max(size, int(round(need * f)))
    pil = Image.fromarray(region).resize((n, n), resample=_FILTERS[int(rng.integers(len(_FILTERS)))])
    if rng.random() < p.p_rotate:
        pil = pil.rotate(rng.uniform(-p.rotate_deg, p.rotate_deg), resample=Image.Resampling.BILINEAR, fillcolor=fill)
    out = center_crop_pad(np.asarray(pil), size)
    # flips and 90° turns
    k = int(rng.integers(4))
    if k:
        out = np.rot90(out, k)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = np.ascontiguousarray(out)
    # colour and stain
    if p.od_scale > 0 or p.od_shift > 0:
        out = _od_jitter(out, rng, p)
    out = _hsv_jitter(out, rng, p)
    x = out.astype(np.float32)
    mean = x.mean(axis=(0, 1), keepdims=True)
    x = (x - mean) * rng.uniform(*p.contrast) + mean
    x *= rng.uniform(*p.brightness)
    x *= 1.0 + rng.uniform(-p.channel_gain, p.channel_gain, size=3).astype(np.float32)
    if rng.random() < p.p_noise:
        x += rng.normal(0.0, rng.uniform(*p.noise_sigma), size=x.shape).astype(np.float32)
    out = np.clip(x + 0.5, 0, 255).astype(np.uint8)
    # capture: blur and JPEG at the crop's resolution
    if rng.random() < p.p_blur:
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(rng.uniform(*p.blur_sigma))))
    if rng.random() < p.p_jpeg_crop:
        out = jpeg_roundtrip(out, int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1)))
    return out
