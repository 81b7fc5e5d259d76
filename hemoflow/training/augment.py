"""Batched training augmentation in torch: geometry, stain and capture, on whole batches.

Cells from another laboratory differ in stain (dye batch, staining time), in pixel size
(the scale estimate scatters by tens of percent) and in optics. Each draw changes:

- geometry: any rotation, a mirror, a shift of a few pixels and a log-uniform scale in
  ``scale`` (one bilinear resampling by ``grid_sample``, border pixels repeated);
- stain, in optical density (OD = -log(I)) per channel: a gain ``1 ± od_gain`` and an
  offset ``± od_shift``, which mimics more or less of each dye (a HED-like jitter done on
  the RGB absorbances), then saturation and brightness/contrast;
- capture: Gaussian blur and pixel noise, each with some probability.

Everything runs on the batch at once (no per-image Python), so augmentation costs little
next to the network on CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["BatchAugment"]


@dataclass(frozen=True)
class BatchAugment:
    """Ranges of the augmentation; ``out`` is the side of the output crops, ``src_step`` their
    pixel size in source pixels."""

    out: int = 96
    #: output pixel size / source pixel size (the output is resampled as well as cut)
    src_step: float = 1.0
    scale: tuple[float, float] = (0.75, 1.33)
    shift_px: float = 4.0
    od_gain: float = 0.25
    od_shift: float = 0.08
    saturation: tuple[float, float] = (0.6, 1.4)
    brightness: tuple[float, float] = (0.85, 1.15)
    contrast: tuple[float, float] = (0.8, 1.2)
    p_blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.4, 1.4)
    p_noise: float = 0.3
    noise_sigma: tuple[float, float] = (0.005, 0.03)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """``x``: float [N, 3, S, S] in [0, 1] (S >= out) -> float [N, 3, out, out] in [0, 1]."""
        x = self.geometry(x, g)
        x = self.stain(x, g)
        return self.capture(x, g)

    def _u(self, n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
        return torch.rand(n, generator=g) * (hi - lo) + lo

    def geometry(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, _, s, _ = x.shape
        theta = self._u(n, 0.0, 2 * math.pi, g)
        # zoom factor z > 1 shows the cell larger: the output samples a smaller source window
        z = torch.exp(self._u(n, math.log(self.scale[0]), math.log(self.scale[1]), g))
        span = self.out * self.src_step / s / z  # output side as a fraction of the source side
        flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(theta) * span, torch.sin(theta) * span
        t = (torch.rand(n, 2, generator=g) * 2 - 1) * (2 * self.shift_px / s)
        mat = torch.stack([torch.stack([cos * flip, -sin, t[:, 0]], 1), torch.stack([sin * flip, cos, t[:, 1]], 1)], 1)
        grid = F.affine_grid(mat, [n, 3, self.out, self.out], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def stain(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        od = -torch.log(x.clamp(1 / 255, 1.0))
        gain = 1 + (torch.rand(n, 3, 1, 1, generator=g) * 2 - 1) * self.od_gain
        shift = (torch.rand(n, 3, 1, 1, generator=g) * 2 - 1) * self.od_shift
        x = torch.exp(-(od * gain + shift).clamp_min(0.0))
        grey = x.mean(1, keepdim=True)
        sat = self._u(n, *self.saturation, g).view(n, 1, 1, 1)
        x = grey + (x - grey) * sat
        mean = x.mean((1, 2, 3), keepdim=True)
        x = (x - mean) * self._u(n, *self.contrast, g).view(n, 1, 1, 1) + mean
        return (x * self._u(n, *self.brightness, g).view(n, 1, 1, 1)).clamp(0.0, 1.0)

    def capture(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        blur = torch.rand(n, generator=g) < self.p_blur
        if blur.any():
            sigma = float(self._u(1, *self.blur_sigma, g))
            r = max(1, int(math.ceil(2 * sigma)))
            k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
            k = (k / k.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
            xb = x[blur]
            xb = F.conv2d(F.pad(xb, (r, r, 0, 0), mode="replicate"), k, groups=3)
            xb = F.conv2d(F.pad(xb, (0, 0, r, r), mode="replicate"), k.transpose(2, 3), groups=3)
            x = x.clone()
            x[blur] = xb
        noise = (torch.rand(n, 1, 1, 1, generator=g) < self.p_noise).float()
        sig = self._u(n, *self.noise_sigma, g).view(n, 1, 1, 1) * noise
        return (x + torch.randn(x.shape, generator=g) * sig).clamp(0.0, 1.0)
