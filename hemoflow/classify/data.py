"""Labelled cell images for training and evaluation.

A labelled folder holds images and a ``labels.csv`` with at least the columns
``path,label`` (``path`` relative to the folder). A :class:`CellSource` is a set of
decoded, centred cell images at one pixel size, with their labels.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from hemoflow.errors import HemoflowError, SlideNotFoundError, SlideReadError

__all__ = [
    "CellSource",
    "read_labels",
    "load_images",
    "folder_sha256",
    "pbc_holdout",
    "synthetic_source",
    "bccd_source",
]

log = logging.getLogger(__name__)


@dataclass
class CellSource:
    """Centred single-cell images at ``mpp`` µm/px with labels.

    ``weight`` sets how often a class's examples are drawn from this source relative to
    other sources holding the same class (classes themselves are drawn uniformly).
    """

    name: str
    images: list[np.ndarray]
    labels: list[str]
    mpp: float
    weight: float = 1.0
    sha256: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise HemoflowError(f"source {self.name!r}: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: Sequence[bool] | np.ndarray, name: str | None = None) -> "CellSource":
        keep = np.asarray(keep, bool)
        return CellSource(
            name or self.name,
            [im for im, k in zip(self.images, keep) if k],
            [lb for lb, k in zip(self.labels, keep) if k],
            self.mpp,
            self.weight,
            self.sha256,
            dict(self.info),
        )

    def describe(self) -> dict[str, Any]:
        counts = pd.Series(self.labels).value_counts().sort_index()
        return {
            "name": self.name,
            "n": len(self),
            "mpp": self.mpp,
            "weight": self.weight,
            "sha256": self.sha256,
            "counts": {str(k): int(v) for k, v in counts.items()},
            **self.info,
        }


def read_labels(folder: str | Path) -> pd.DataFrame:
    """Read ``folder/labels.csv``; it needs the columns ``path`` and ``label``."""
    f = Path(folder) / "labels.csv"
    if not f.is_file():
        raise SlideNotFoundError(f"no labels.csv in {folder}")
    df = pd.read_csv(f, dtype=str, keep_default_na=False)
    missing = {"path", "label"} - set(df.columns)
    if missing:
        raise HemoflowError(f"{f} lacks columns {sorted(missing)} (has {list(df.columns)})")
    if len(df) == 0:
        raise HemoflowError(f"{f} lists no images")
    return df


def load_images(folder: str | Path, paths: Iterable[str]) -> list[np.ndarray]:
    """Decode images (RGB uint8) listed relative to ``folder``."""
    out = []
    for p in paths:
        fp = Path(folder) / p
        try:
            with Image.open(fp) as im:
                out.append(np.asarray(im.convert("RGB")))
        except FileNotFoundError:
            raise SlideNotFoundError(f"image not found: {fp}") from None
        except OSError as e:
            raise SlideReadError(f"cannot decode {fp}: {e}") from None
    return out


def folder_sha256(folder: str | Path, paths: Iterable[str] | None = None) -> str:
    """sha256 over ``labels.csv`` and, in order, every listed file's path and content hash."""
    folder = Path(folder)
    h = hashlib.sha256((folder / "labels.csv").read_bytes())
    if paths is None:
        paths = read_labels(folder)["path"]
    for p in paths:
        h.update(p.encode() + b"\0" + hashlib.sha256((folder / p).read_bytes()).digest())
    return h.hexdigest()


def pbc_holdout(pbc_labels: pd.DataFrame, *, per_class: int = 30) -> set[str]:
    """sha256 of the PBC originals held out from training: per class, the ``per_class``
    cells with the smallest sha256 (a fixed 20 % of the 150-per-class dev subset)."""
    from hemoflow.training.splits import pbc_validation

    col = "sha256" if "sha256" in pbc_labels else "source_sha256"
    return pbc_validation(zip(pbc_labels["label"], pbc_labels[col]), per_class=per_class)


def synthetic_source(
    *,
    n_fields: int,
    seed: int = 0,
    mpp: float = 0.25,
    io_mpp: float = 0.3,
    input_size: int = 96,
    shape: tuple[int, int] = (512, 512),
    margin: float = 1.6,
    weight: float = 1.0,
    synth_kwargs: dict[str, Any] | None = None,
) -> CellSource:
    """WBC images cut from synthetic fields (:func:`hemoflow.synth.synth_field`).

    Each WBC becomes a square of ``margin * input_size * io_mpp / mpp`` px around its true
    centroid (background-padded at the field edge), labelled with its true type.
    """
    from hemoflow import synth  # optional at import time: only needed here

    side = int(round(margin * input_size * io_mpp / mpp))
    images, labels = [], []
    for k in range(n_fields):
        rgb, truth = synth.synth_field(shape, mpp=mpp, seed=seed + k, **(synth_kwargs or {}))
        cls = np.asarray(truth["cls"])
        fill = np.median(rgb.reshape(-1, 3), axis=0).astype(np.uint8)
        for i in np.flatnonzero(cls == "wbc"):
            cy, cx = int(round(float(truth["y"][i]))), int(round(float(truth["x"][i])))
            images.append(_cut(rgb, cy, cx, side, fill))
            labels.append(str(truth["type"][i]))
    h = hashlib.sha256(Path(synth.__file__).read_bytes())
    h.update(repr((n_fields, seed, mpp, shape, sorted((synth_kwargs or {}).items()))).encode())
    return CellSource(
        "synthetic",
        images,
        labels,
        mpp,
        weight,
        h.hexdigest(),
        {"generator": "hemoflow.synth.synth_field", "seeds": [seed, seed + n_fields - 1], "field_shape": list(shape)},
    )


def bccd_source(
    bccd_dir: str | Path,
    *,
    mpp: float,
    split: str = "train",
    weight: float = 1.0,
    fov_um: float = 36.0,
) -> CellSource:
    """WBCs of BCCD fields labelled with one Kaggle type (``counts.csv``'s
    ``wbc_type_kaggle``), where hemoflow's segmentation finds exactly one WBC.

    Each becomes a ``fov_um`` square around the detected centroid (background-padded at the
    field edge) at the fields' pixel size ``mpp`` (give the pooled estimate, as
    ``hemoflow analyze`` uses it). ``split``: "train" or "validation"
    (:func:`hemoflow.training.splits.bccd_split`), or "all".
    """
    from hemoflow.analyze import analyze_image, read_image
    from hemoflow.training.splits import bccd_split

    if split not in ("train", "validation", "all"):
        raise HemoflowError(f"split must be train, validation or all, got {split!r}")
    root = Path(bccd_dir)
    counts = pd.read_csv(root / "counts.csv", dtype=str, keep_default_na=False)
    counts = counts[counts["wbc_type_kaggle"].str.fullmatch(r"[A-Z]+")]
    side = int(round(fov_um / mpp))
    images, labels, names = [], [], []
    for name, kaggle in zip(counts["image"], counts["wbc_type_kaggle"]):
        if split != "all" and bccd_split(name) != split:
            continue
        rgb = read_image(root / "JPEGImages" / f"{name}.jpg")
        wbcs = [c for c in analyze_image(rgb, mpp=mpp, name=name)["cells"] if c["cls"] == "wbc"]
        if len(wbcs) != 1:
            continue
        fill = np.median(rgb.reshape(-1, 3), axis=0).astype(np.uint8)
        images.append(_cut(rgb, int(round(wbcs[0]["y"])), int(round(wbcs[0]["x"])), side, fill))
        labels.append(kaggle.lower())
        names.append(name)
    h = hashlib.sha256((root / "counts.csv").read_bytes())
    for n in names:
        h.update(n.encode() + b"\0" + hashlib.sha256((root / "JPEGImages" / f"{n}.jpg").read_bytes()).digest())
    return CellSource(
        f"bccd_{split}", images, labels, float(mpp), weight, h.hexdigest(),
        {"fields": len(names), "split": split, "labels": "counts.csv wbc_type_kaggle", "fov_um": fov_um},
    )


def _cut(rgb: np.ndarray, cy: int, cx: int, side: int, fill: np.ndarray) -> np.ndarray:
    out = np.empty((side, side, 3), np.uint8)
    out[:] = fill
    h, w = rgb.shape[:2]
    y0, x0 = cy - side // 2, cx - side // 2
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y0 + side, h), min(x0 + side, w)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return out
