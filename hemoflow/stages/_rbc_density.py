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

Trained by :mod:`hemoflow.training.rbc_density` (``python -m hemoflow.training.rbc_density
DATA/bccd``) on the training split of the BCCD fields' TXL re-annotations (see the
weights' metadata and ``hemoflow/models/rbc_density.md``). This module holds the network
and its inference only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import warnings
from pathlib import Path

import numpy as np

from hemoflow.kernels._growth import grown_grid_sum
from hemoflow.kernels._nhwc import maxpool2_nhwc, unshuffle2_nhwc
from hemoflow.models import MODELS_DIR

__all__ = ["ALIGN", "WEIGHTS", "build_net", "read_weights", "load_density_model", "rbc_density", "basin_mass",
           "kept_mass", "pad4"]

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
            "`python -m hemoflow.training.rbc_density DATA/bccd` or set rbc_density_model=False"
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
    # channels_last: the fp32 convolutions run almost twice as fast on one core
    return fused.to(memory_format=torch.channels_last), meta


def _bytes(q):
    """uint8 view (no copy) of quantised tensor ``q``'s storage, same shape and strides."""
    import torch

    return torch.empty(0, dtype=torch.uint8).set_(q.untyped_storage(), q.storage_offset(), q.shape, q.stride())


def _nhwc_layout(qnet):
    """``qnet`` (int8 graph) with its pixel-unshuffle and 2x2 max-pool done by the NHWC
    kernels of :mod:`hemoflow.kernels._nhwc`: the unshuffle writes the channels-last layout
    the first convolution reads (no layout copy), and the pool works on the stored bytes.
    The same bytes as torch's modules (tested), without their layout copies."""
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


def rbc_density(od: np.ndarray, path=None) -> np.ndarray:
    """Red-cell density (cells per grid cell) of OD planes ``float32[3, h, w]`` (working
    scale), on the grid ``float32[ceil(h/4), ceil(w/4)]``, under the shipped network or
    the weights file ``path``."""
    import torch

    net, meta = load_density_model(str(path) if path else None)
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
