"""Evaluation helpers: held-out PBC originals, capture changes, synthetic agreement.

Used by ``scripts/evaluate_classifier.py`` and the tests; crops are cut the way the
pipeline cuts them (:func:`hemoflow.stages.crops.crop_cells`, a window of
``input_size * io.mpp / mpp`` px around the centroid resized to ``input_size``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from hemoflow.classify.config import PBC_CAMERA_MPP, ModelIOConfig
from hemoflow.classify.data import load_images, pbc_holdout, read_labels
from hemoflow.classify.metrics import classification_metrics
from hemoflow.classify.transforms import jpeg_roundtrip, prepare_cell_image

__all__ = ["pipeline_crops", "pbc_heldout", "degrade", "evaluate_pbc", "synthetic_agreement"]


def pipeline_crops(images: Sequence[np.ndarray], mpp: float, io: ModelIOConfig) -> np.ndarray:
    """Centre crop of each single-cell image, cut as the pipeline cuts WBCs."""
    from hemoflow.stages.crops import CropSpec, crop_cells

    spec = CropSpec(size=io.input_size, mpp=io.mpp)
    out = np.empty((len(images), io.input_size, io.input_size, 3), np.uint8)
    for i, im in enumerate(images):
        h, w = im.shape[:2]
        out[i] = crop_cells(im, [(h - 1) / 2], [(w - 1) / 2], mpp=mpp, crop=spec)[0]
    return out


def pbc_heldout(data_dir: str | Path, *, per_class: int = 30, limit_per_class: int | None = None):
    """(images, labels) of the PBC originals held out from training (30 per class)."""
    folder = Path(data_dir) / "pbc"
    df = read_labels(folder)
    df = df[df["sha256"].isin(pbc_holdout(df, per_class=per_class))].sort_values(["label", "sha256"])
    if limit_per_class is not None:
        df = df.groupby("label", group_keys=False).head(limit_per_class)
    return load_images(folder, df["path"]), list(df["label"])


def degrade(img: np.ndarray, *, jpeg_quality: int | None = None, scale: float = 1.0) -> np.ndarray:
    """Re-encode as JPEG at ``jpeg_quality`` and/or resize by ``scale`` (bicubic)."""
    if jpeg_quality is not None:
        img = jpeg_roundtrip(img, jpeg_quality)
    if scale != 1.0:
        h, w = img.shape[:2]
        img = np.asarray(Image.fromarray(img).resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC))
    return img


def evaluate_pbc(predict, images, labels, io: ModelIOConfig, *, mpp: float = PBC_CAMERA_MPP,
                 classes: Sequence[str] | None = None, cropper: str = "pipeline") -> dict[str, Any]:
    """Metrics of ``predict(crops) -> (labels, probs)`` on single-cell images at ``mpp``.

    ``cropper``: "pipeline" cuts crops with :func:`hemoflow.stages.crops.crop_cells`
    (Gaussian pre-filter + bilinear, as the pipeline does); "pil" resamples with Pillow
    (:func:`~hemoflow.classify.transforms.prepare_cell_image`, as ``hemoflow classify`` does).
    """
    if cropper == "pipeline":
        crops = pipeline_crops(images, mpp, io)
    elif cropper == "pil":
        crops = np.stack([prepare_cell_image(im, mpp=mpp, size=io.input_size, dst_mpp=io.mpp) for im in images])
    else:
        raise ValueError(f"cropper must be 'pipeline' or 'pil', got {cropper!r}")
    pred, _ = predict(crops)
    return classification_metrics(labels, pred, classes=classes or io.classes)


def synthetic_agreement(clf, *, n_fields: int = 6, seed: int = 500_000, shape=(768, 768), mpp: float = 0.25,
                        tta: bool = False, **synth_kwargs: Any) -> dict[str, Any]:
    """Share of synthetic WBCs whose predicted type equals the generator's truth.

    Fields come from :func:`hemoflow.synth.synth_field` with seeds ``seed, seed+1, ...``
    (not used in training); crops are cut at the true centroids as the pipeline cuts them.
    """
    from hemoflow import synth
    from hemoflow.stages.crops import CropSpec, crop_cells

    spec = CropSpec(size=clf.io.input_size, mpp=clf.io.mpp)
    truth_all, pred_all = [], []
    for k in range(n_fields):
        rgb, truth = synth.synth_field(shape, mpp=mpp, seed=seed + k, **synth_kwargs)
        sel = np.asarray(truth["cls"]) == "wbc"
        if not sel.any():
            continue
        ys, xs = np.asarray(truth["y"], float)[sel], np.asarray(truth["x"], float)[sel]
        crops = crop_cells(rgb, ys, xs, mpp=mpp, crop=spec)
        labels, _ = clf.predict(crops, tta=True) if tta else clf.predict(crops)
        truth_all += [str(t) for t in np.asarray(truth["type"])[sel]]
        pred_all += labels
    m = classification_metrics(truth_all, pred_all, classes=clf.io.classes)
    m["agreement"] = m["accuracy"]
    return m
