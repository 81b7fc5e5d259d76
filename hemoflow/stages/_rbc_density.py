"""Red-cell density model: how many RBCs each watershed basin holds, learned from boxes.

A small fully convolutional network maps the three optical-density planes of the working
scale (the block means :func:`hemoflow.kernels.stain_planes` already computes) to a
red-cell density on a grid 4 working pixels wide: each cell centre contributes a unit of
mass spread by a Gaussian, so the density summed over an area is the number of red cells
whose centres lie in it. Pale cells with open rims, overlapping pairs and cells pressed
into clumps are what the shape-only basin model (:mod:`hemoflow.stages._rbc_count`) gets
wrong; the density sees their texture and context.

The mass is summed over each watershed basin, and a basin holds ``round(mass)`` cells
(0: dropped; 2 or more: split by the same k-means as before), so the cell table, the
morphology and the counts stay one set of objects, and every decision stays local: the
network's receptive field (about 34 working px, 17 µm at 0.5 µm/px) is well inside the tile
halo, and windows start on the 4-pixel density grid (:data:`ALIGN`), so a tiled slide gives
the same cells as the whole field.

Trained by ``python scripts/train_rbc_density.py DATA/bccd`` on the development part of
the BCCD fields' TXL re-annotations (see the weights' metadata and
``hemoflow/models/rbc_density.md``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import warnings
from pathlib import Path

import numpy as np

from hemoflow.kernels._nhwc import maxpool2_nhwc, unshuffle2_nhwc
from hemoflow.kernels._smear import grown_grid_sum
from hemoflow.models import MODELS_DIR

__all__ = ["ALIGN", "WEIGHTS", "build_net", "read_weights", "load_density_model", "rbc_density", "basin_mass", "pad4"]

#: The density grid is 4 working px wide; windows must start on it.
ALIGN = 4
#: The network is trained on the density times this (stored as ``meta["scale"]``).
TARGET_SCALE = 100.0
WEIGHTS = MODELS_DIR / "rbc_density.pt"


def build_net(width: int = 16, stem: int | None = None):
    """The network (untrained): pixel-unshuffle stem, two conv stages, 1x1 head, softplus.
    The first stage (2 working px) has ``stem`` channels (default ``width``), the second
    (4 working px) ``2 * width``."""
    import torch.nn as nn

    def conv(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    w = int(width)
    s = int(stem) if stem else w
    return nn.Sequential(
        nn.PixelUnshuffle(2),
        *conv(12, s), *conv(s, s),
        nn.MaxPool2d(2),
        *conv(s, 2 * w), *conv(2 * w, 2 * w), *conv(2 * w, 2 * w),
        nn.Conv2d(2 * w, 1, 1),
        nn.Softplus(),
    )


def _fuse(net):
    """Fold each BatchNorm into the convolution before it (inference only)."""
    import torch.nn as nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    mods = list(net)
    out = []
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
            out.append(fuse_conv_bn_eval(m, mods[i + 1]))
            i += 2
        else:
            out.append(m)
            i += 1
    return nn.Sequential(*out).eval()


@contextlib.contextmanager
def _quiet():
    """Silence the deprecation chatter of torch's eager-mode int8 API (pinned torch)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _prepare(net):
    """``net`` (fused fp32) with int8 observers inserted (x86 backend), uncalibrated."""
    import copy

    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    ex = torch.zeros(1, 3, 16, 16)
    return prepare_fx(copy.deepcopy(net).eval(), get_default_qconfig_mapping("x86"), (ex,))


def _int8_shell(net):
    """The int8 graph of ``net`` (fused fp32) with placeholder scales: the target of
    :meth:`load_state_dict` for a saved int8 state."""
    import torch
    from torch.ao.quantization.quantize_fx import convert_fx

    prep = _prepare(net)
    with torch.inference_mode():
        prep(torch.full((1, 3, 16, 16), 0.1))
    return convert_fx(prep)


def quantize(net, ods) -> dict:
    """int8 state of ``net`` calibrated on OD planes ``ods`` (post-training static
    quantisation, x86 backend, BatchNorm folded first); stored beside the fp32 weights."""
    import torch

    with _quiet():
        from torch.ao.quantization.quantize_fx import convert_fx

        prep = _prepare(_fuse(net))
        with torch.inference_mode():
            for od in ods:
                prep(torch.from_numpy(pad4(od))[None])
        return dict(convert_fx(prep).state_dict())


def read_weights(path):
    """``(net, blob)`` of a weights file: the fp32 network in eval mode and the stored
    ``{"state_dict", "meta"[, "int8_state"]}`` plus ``"sha256"`` of the file."""
    import io

    import torch

    data = Path(path).read_bytes()
    with _quiet():  # rebuilding the int8 tensors warns about their deprecation
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    blob["sha256"] = hashlib.sha256(data).hexdigest()
    net = build_net(int(blob["meta"]["width"]), blob["meta"].get("stem"))
    net.load_state_dict(blob["state_dict"])
    return net.eval(), blob


@functools.lru_cache(maxsize=8)  # the shipped network and 5 cross-validation folds
def load_density_model(path: str | None = None, int8: bool = True):
    """``(net, meta)`` from a weights file (default: the shipped one), ready for
    inference: the int8 network when the file holds one and ``int8`` (``meta["int8"]``
    says which), else the fp32 one with BatchNorm folded, channels_last."""
    import torch

    from hemoflow.errors import HemoflowError

    p = Path(path) if path else WEIGHTS
    if not p.is_file():
        raise HemoflowError(
            f"RBC density weights not found at {p}; train them with "
            "`python scripts/train_rbc_density.py DATA/bccd` or set rbc_density_model=False"
        )
    net, blob = read_weights(p)
    meta = dict(blob["meta"])
    meta["sha256"] = blob["sha256"]
    fused = _fuse(net)
    if int8 and blob.get("int8_state") and "x86" in torch.backends.quantized.supported_engines:
        with _quiet():
            torch.backends.quantized.engine = "x86"
            qnet = _int8_shell(fused)
            qnet.load_state_dict(blob["int8_state"])
        meta["int8"] = True
        return _nhwc_layout(qnet), meta
    meta["int8"] = False
    # channels_last: 0.75 -> 0.42 s for a 2048^2 working window on one core
    return fused.to(memory_format=torch.channels_last), meta


def _bytes(q):
    """uint8 view (no copy) of quantised tensor ``q``'s storage, same shape and strides."""
    import torch

    return torch.empty(0, dtype=torch.uint8).set_(q.untyped_storage(), q.storage_offset(), q.shape, q.stride())


def _nhwc_layout(qnet):
    """``qnet`` (int8 graph) with its pixel-unshuffle and 2x2 max-pool done by the NHWC
    kernels of :mod:`hemoflow.kernels._nhwc`: the unshuffle writes the channels-last layout
    the first convolution reads (no layout copy), and the pool works on the stored bytes.
    The same bytes as torch's modules (tested); 0.12 -> 0.09 s per 2048^2 working window."""
    import torch
    import torch.nn as nn

    def quantized_like(q, shape):
        return torch._empty_affine_quantized(shape, scale=q.q_scale(), zero_point=q.q_zero_point(), dtype=q.dtype,
                                             memory_format=torch.channels_last)

    class Unshuffle2(nn.Module):
        def forward(self, q):
            q = q.contiguous()
            n, c, h, w = q.shape
            out = quantized_like(q, (n, 4 * c, h // 2, w // 2))
            src, dst = _bytes(q), _bytes(out).permute(0, 2, 3, 1)
            for b in range(n):
                unshuffle2_nhwc(src[b].numpy(), dst[b].numpy())
            return out

    class MaxPool2(nn.Module):
        def forward(self, q):
            if q.dtype != torch.quint8:  # the bytes compare as unsigned only for quint8
                return torch.nn.functional.max_pool2d(q, 2)
            q = q.contiguous(memory_format=torch.channels_last)
            n, c, h, w = q.shape
            out = quantized_like(q, (n, c, h // 2, w // 2))
            src, dst = _bytes(q).permute(0, 2, 3, 1), _bytes(out).permute(0, 2, 3, 1)
            for b in range(n):
                maxpool2_nhwc(src[b].numpy(), dst[b].numpy())
            return out

    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    for name, m in list(qnet.named_children()):
        if isinstance(m, nn.PixelUnshuffle) and m.downscale_factor == 2:
            setattr(qnet, name, Unshuffle2())
        elif (isinstance(m, nn.MaxPool2d) and pair(m.kernel_size) == (2, 2) and pair(m.stride) == (2, 2)
              and pair(m.padding) == (0, 0) and pair(m.dilation) == (1, 1) and not m.ceil_mode):
            setattr(qnet, name, MaxPool2())
    return qnet


def pad4(od: np.ndarray) -> np.ndarray:
    """Zero-pad float32[3, h, w] (OD 0 = background) up to multiples of :data:`ALIGN`."""
    h, w = od.shape[1:]
    ph, pw = -h % ALIGN, -w % ALIGN
    if ph or pw:
        od = np.pad(od, ((0, 0), (0, ph), (0, pw)))
    return np.ascontiguousarray(od, np.float32)


_OVERRIDE: list[str] = []


@contextlib.contextmanager
def weights_override(path):
    """Within the block, :func:`rbc_density` calls without a ``path`` use the weights at
    ``path`` (e.g. a cross-validation fold's model, to score the fields it did not see).
    For evaluation scripts; not thread-safe."""
    _OVERRIDE.append(str(path))
    try:
        yield
    finally:
        _OVERRIDE.pop()


def rbc_density(od: np.ndarray, path: str | None = None) -> np.ndarray:
    """Red-cell density (cells per grid cell) of OD planes ``float32[3, h, w]`` (working
    scale), on the grid ``float32[ceil(h/4), ceil(w/4)]``."""
    import torch

    net, meta = load_density_model(path or (_OVERRIDE[-1] if _OVERRIDE else None))
    x = torch.from_numpy(pad4(od))[None]
    if not meta["int8"]:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        d = net(x)[0, 0]
    return d.numpy() / np.float32(meta["scale"])


def basin_mass(labels: np.ndarray, n: int, density: np.ndarray, *, reach_px: float = 0.0) -> np.ndarray:
    """Density mass of basins ``1..n`` of a working-scale label image: ``float64[n]``.

    Each working pixel takes 1/16 of its grid cell's density, so the masses of basins
    tiling the grid cell add up to the cell's density. Background pixels within
    ``reach_px`` of a basin give their mass to the nearest basin: a cell's mass sits at
    its centre, which is often its unfilled central pallor, a hole in the mask.
    """
    if n == 0:
        return np.zeros(0)
    return grown_grid_sum(labels, max(reach_px, 0.0), density, n, ALIGN)[1 : n + 1] / (ALIGN * ALIGN)


def kept_mass(labels: np.ndarray, counts: np.ndarray, density: np.ndarray, *, reach_px: float,
              exclude: np.ndarray | None = None) -> np.ndarray:
    """Density mass of each basin ``1..n`` of ``labels`` whose ``counts`` (int[n]) is >= 1,
    over its own pixels, the pixels of dropped basins (count 0) and the background within
    ``reach_px`` of it (nearest kept basin first), leaving out the pixels of ``exclude``
    (bool, e.g. WBCs): ``float64[n]``, 0 for dropped basins.

    Grid cells cut by the array's far edge (the density grid covers the zero-padded array)
    spread their mass over their pixels inside it, so the masses add up to the density of
    the whole array within ``reach_px`` of a kept basin, outside ``exclude``.
    """
    n = len(counts)
    if n == 0:
        return np.zeros(0)
    keep = np.concatenate([[False], np.asarray(counts) > 0])
    h, w = labels.shape
    ny = np.minimum(ALIGN, h - ALIGN * np.arange(density.shape[0]))
    nx = np.minimum(ALIGN, w - ALIGN * np.arange(density.shape[1]))
    per_px = density / np.outer(ny, nx).astype(np.float32)
    return grown_grid_sum(labels, max(reach_px, 0.0), per_px, n, ALIGN, keep=keep, exclude=exclude)[1 : n + 1]


# --------------------------------------------------------------------------- training


def density_target(centres, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Training target on the working grid ``shape``: a unit Gaussian per (y, x) centre,
    each normalised inside the array so the target sums to the number of centres."""
    h, w = shape
    yy = np.arange(h, dtype=np.float64)[:, None] + 0.5
    xx = np.arange(w, dtype=np.float64)[None, :] + 0.5
    out = np.zeros((h, w), np.float64)
    for y, x in centres:
        g = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2.0 * sigma_px**2))
        s = g.sum()
        if s > 0:
            out += g / s
    return out.astype(np.float32)


def train_density(samples, *, width: int = 16, stem: int | None = None, epochs: int = 40, batch: int = 8,
                  lr: float = 2e-3, seed: int = 0, scale_range: tuple[float, float] = (0.8, 1.25),
                  recal_bn: bool = True, progress=None):
    """Train the density network on ``samples`` = list of ``(od float32[3, h, w], target
    float32[h, w])`` of one shape each (h, w multiples of 4). Seeded; returns the net.
    With ``recal_bn`` the BatchNorm statistics are re-estimated on the unaugmented samples
    at the end (:func:`recalibrate_bn`).

    Augmentation: flips, per-channel and global OD gain (stain strength, 0.85-1.15 each)
    and a random rescale in ``scale_range`` (pixel-size error; the target is resampled
    and renormalised, so the count is unchanged).
    """
    import math

    import torch
    import torch.nn.functional as tf

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_net(width, stem)
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(samples) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    scale = TARGET_SCALE  # density values are ~0.01-0.1; scale them for the MSE
    net.train()
    for ep in range(epochs):
        order = rng.permutation(len(samples))
        total = 0.0
        for i in range(0, len(samples), batch):
            xs, ys = [], []
            for j in order[i : i + batch]:
                x, y = samples[j]
                if rng.random() < 0.5:
                    x, y = x[:, :, ::-1], y[:, ::-1]
                if rng.random() < 0.5:
                    x, y = x[:, ::-1], y[::-1]
                gain = rng.uniform(0.85, 1.15, (3, 1, 1)) * rng.uniform(0.85, 1.15)
                xs.append(np.ascontiguousarray(x * gain.astype(np.float32)))
                ys.append(np.ascontiguousarray(y))
            x = torch.from_numpy(np.stack(xs))
            y = torch.from_numpy(np.stack(ys)) * scale
            s = rng.uniform(*scale_range)
            hh = max(ALIGN, int(round(x.shape[2] * s / ALIGN)) * ALIGN)
            ww = max(ALIGN, int(round(x.shape[3] * s / ALIGN)) * ALIGN)
            if (hh, ww) != tuple(x.shape[2:]):
                x = tf.interpolate(x, size=(hh, ww), mode="bilinear", align_corners=False)
                tot = y.sum((1, 2), keepdim=True)
                y = tf.interpolate(y[:, None], size=(hh, ww), mode="bilinear", align_corners=False)[:, 0]
                y = y * tot / y.sum((1, 2), keepdim=True).clamp_min(1e-6)
            y = tf.avg_pool2d(y[:, None], ALIGN)[:, 0] * (ALIGN * ALIGN)
            p = net(x)[:, 0]
            loss = tf.mse_loss(p, y) + 0.01 * tf.l1_loss(p.sum((1, 2)), y.sum((1, 2))) / scale
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(xs)
        if progress is not None:
            progress(ep + 1, epochs, total / len(samples))
    if recal_bn:
        recalibrate_bn(net, [x for x, _ in samples])
    net.eval()
    return net


def recalibrate_bn(net, ods) -> None:
    """Re-estimate the BatchNorm statistics of ``net`` on unaugmented OD planes ``ods``
    (an equal-weight average over the fields, no gradient; ``net`` ends in eval mode).

    Training leaves exponential averages over augmented (rescaled, gain-changed) batches,
    dominated by the last steps; inference sees plain fields. Without this the networks'
    counts were biased by -0.9 (5-fold CV) and varied by run; with it -0.1.
    """
    import torch

    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for od in ods:
            net(torch.from_numpy(pad4(od))[None])
    for m in bns:
        m.momentum = 0.1
    net.eval()


def save_density_model(net, path, meta: dict, int8_state: dict | None = None) -> str:
    """Write ``{"state_dict", "meta"[, "int8_state"]}`` (loads with ``weights_only=True``);
    returns the sha256."""
    import io

    import torch

    buf = io.BytesIO()
    blob = {"state_dict": net.state_dict(), "meta": {"scale": TARGET_SCALE, **meta}}
    if int8_state is not None:
        blob["int8_state"] = int8_state
    torch.save(blob, buf)
    data = buf.getvalue()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    load_density_model.cache_clear()
    return hashlib.sha256(data).hexdigest()


def predict_total(net, od: np.ndarray) -> float:
    """Density summed over a field (the net's own count; for evaluation)."""
    import torch

    with torch.inference_mode():
        return float(net(torch.from_numpy(pad4(od))[None]).sum()) / TARGET_SCALE
