"""Batched WBC classification for the pipeline and the CLI.

- :func:`get_worker_model` loads a model once per process (and device) and caches it;
  :class:`ModelPlugin` does that when a Dask worker starts, on the GPU when the worker
  has one, so no task pays for loading.
- :func:`classify_crops` classifies pooled crops with the cached model.
- :func:`classify_images` classifies single-cell image files (one centred cell each, like
  the PBC dataset) for ``hemoflow classify IMAGE...``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hemoflow.classify.config import default_weights_path
from hemoflow.errors import HemoflowError
from hemoflow.classify.model import WbcClassifier, load_model
from hemoflow.classify.scale import estimate_batch
from hemoflow.classify.taxonomy import LABELS
from hemoflow.classify.transforms import prepare_cell_image

try:  # distributed is a core dependency; keep this module importable without it anyway
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover
    WorkerPlugin = object  # type: ignore[misc,assignment]

__all__ = ["get_worker_model", "clear_model_cache", "classify_crops", "crop_columns", "classify_images",
           "estimate_scales", "ModelPlugin"]

log = logging.getLogger(__name__)

_LABEL_SET = frozenset(LABELS)
_CACHE: dict[tuple[str, str], WbcClassifier] = {}
_LOCK = threading.Lock()


def _pick_device(device: str | None) -> str:
    if device is not None:
        return device
    env = os.environ.get("HEMOFLOW_DEVICE")
    if env:
        return env
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def get_worker_model(path: str | os.PathLike | None = None, *, device: str | None = None) -> WbcClassifier:
    """The classifier for this process, loaded on first use and cached.

    Parameters
    ----------
    path : path, optional
        Weights file; default: the shipped model.
    device : str, optional
        "cpu" or "cuda[:i]"; default ``$HEMOFLOW_DEVICE``, else CUDA when available.
    """
    p = str(Path(path) if path is not None else default_weights_path(".pt"))
    dev = _pick_device(device)
    key = (p, dev)
    with _LOCK:
        clf = _CACHE.get(key)
        if clf is None:
            t0 = time.perf_counter()
            clf = load_model(p, device=dev)
            _CACHE[key] = clf
            log.info("loaded %s on %s in %.2fs", Path(p).name, dev, time.perf_counter() - t0)
        return clf


def clear_model_cache() -> None:
    """Forget cached models (tests, or after replacing a weights file)."""
    with _LOCK:
        _CACHE.clear()


def classify_crops(
    crops: np.ndarray, model: WbcClassifier | None = None, *, batch_size: int = 256, tta: bool = False
) -> tuple[list[str], np.ndarray]:
    """Classify uint8 [N,S,S,3] crops with ``model`` (default: this process's cached model).

    Returns ``(labels, probs)`` as :meth:`WbcClassifier.predict` does (``tta`` likewise).
    """
    clf = model if model is not None else _plugin_model() or get_worker_model()
    return clf.predict(crops, batch_size=batch_size, tta=tta)


def crop_columns(
    crops: np.ndarray, model: WbcClassifier | None = None, *, batch_size: int = 256, tta: bool = False
) -> dict[str, np.ndarray]:
    """Classify crops into the cell-table columns of :data:`hemoflow.schema.CLASS_COLUMNS`:
    ``wbc_type`` (the label, after the confidence rule), ``wbc_confidence`` (top
    probability), ``group`` (its differential group) and ``p_blast`` (probability of
    ``blast``; 0 for a model without that class)."""
    from hemoflow.classify.taxonomy import group_of

    clf = model if model is not None else _plugin_model() or get_worker_model()
    labels, probs = clf.predict(crops, batch_size=batch_size, tta=tta)
    probs = np.asarray(probs, dtype=np.float32)
    n = len(labels)
    blast = clf.io.classes.index("blast") if "blast" in clf.io.classes else None
    return {
        "wbc_type": np.asarray(labels, dtype=object),
        "wbc_confidence": probs.max(axis=1) if n else np.zeros(0, np.float32),
        "group": np.asarray([group_of(lb) if lb in _LABEL_SET else lb for lb in labels], dtype=object),
        "p_blast": probs[:, blast] if blast is not None and n else np.zeros(n, np.float32),
    }


def _plugin_model() -> WbcClassifier | None:
    """The model a :class:`ModelPlugin` put on the current Dask worker, if any."""
    try:
        from distributed import get_worker

        return getattr(get_worker(), "hemoflow_wbc_model", None)
    except (ImportError, ValueError):
        return None


class ModelPlugin(WorkerPlugin):
    """Load the WBC classifier once per Dask worker, at worker start.

    The model goes on the GPU when the worker advertises a ``GPU`` resource and CUDA is
    available, else on the CPU. It is stored as ``worker.hemoflow_wbc_model`` and in this
    module's per-process cache, where :func:`classify_crops` finds it.

    >>> client.register_plugin(ModelPlugin())  # doctest: +SKIP
    """

    name = "hemoflow-wbc-model"

    def __init__(self, path: str | os.PathLike | None = None, device: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.device = device

    def setup(self, worker) -> None:
        device = self.device
        if device is None:
            import torch

            gpu = bool(getattr(worker, "state", None) and worker.state.total_resources.get("GPU"))
            device = "cuda" if gpu and torch.cuda.is_available() else "cpu"
        t0 = time.perf_counter()
        worker.hemoflow_wbc_model = get_worker_model(self.path, device=device)
        worker.hemoflow_wbc_model_load_s = time.perf_counter() - t0

    def teardown(self, worker) -> None:
        if hasattr(worker, "hemoflow_wbc_model"):
            del worker.hemoflow_wbc_model


def _read_rgb(path: str | os.PathLike) -> np.ndarray:
    # the reader of `hemoflow analyze` too: greyscale and 16-bit images are refused, not converted
    from hemoflow.io.validate import read_rgb8

    return read_rgb8(path)


def estimate_scales(
    paths: Sequence[str | os.PathLike], *, pool: bool = True, on_error=None, progress=None,
) -> list[tuple[float, str] | None]:
    """Pixel size and ruler of each single-cell image, estimated from the images themselves.

    Each image is measured on its own (:func:`hemoflow.classify.scale.estimate_cell_mpp`);
    with ``pool`` (default), images of the same size then share the median estimate of
    their group (:func:`hemoflow.classify.scale.pool_estimates`: one camera, one pixel
    size), so the size of a cell stays a cue the model can use.

    An image that cannot be read raises, unless ``on_error(path, exc)`` is given: then it
    is reported there, its entry is None and it takes no part in the pooling.
    ``progress(done, total)`` is called every 256 images.
    """
    ok: list[bool] = []

    def readable():
        for k, p in enumerate(paths):
            try:
                rgb = _read_rgb(p)
            except HemoflowError as e:
                if on_error is None:
                    raise
                on_error(p, e)
                ok.append(False)
                continue
            ok.append(True)
            yield rgb
            if progress is not None and (k + 1) % 256 == 0:
                progress(k + 1, len(paths))

    mpps, rulers = estimate_batch(readable(), pool=pool)
    it = iter(zip(mpps, rulers))
    return [next(it) if good else None for good in ok]


def classify_images(
    paths: Sequence[str | os.PathLike],
    *,
    mpp: float | None = None,
    scales: Sequence[tuple[float, str]] | None = None,
    pool: bool = True,
    model: WbcClassifier | None = None,
    batch_size: int = 256,
    tta: bool = True,
    chunk: int = 512,
    progress=None,
) -> list[dict[str, Any]]:
    """Classify image files, each holding one centred cell (like the PBC dataset).

    Each image is resampled from its pixel size to the model's ``io.mpp`` and
    centre-cropped/padded to ``io.input_size``. The pixel size is ``mpp`` when given, else
    ``scales[i]`` (``(mpp, ruler)`` per image, as :func:`estimate_scales` returns) when
    given, else estimated here by :func:`estimate_scales` (the red cells around the white
    cell, or failing those the white cell's own size; with ``pool``, one median per image
    size).
    ``tta`` (default on: a handful of images costs little) averages the softmax over each
    crop's 8 flips and quarter turns (:meth:`WbcClassifier.predict`).

    Abstention: a cell whose best label is below the model's confidence rule
    (:attr:`WbcClassifier.abstain_below`) is ``not_identifiable``, and so is an image with
    no stained matter at all (the scale estimate finds nothing to measure).

    Images are read and classified ``chunk`` at a time (memory stays bounded for any number
    of images); ``progress(done, total)`` is called after each chunk.

    Returns
    -------
    list of dict
        Per image: ``image`` (the path as given), ``label``, ``group`` (its differential
        group), ``probability`` (of the top class), ``p_blast``, ``probabilities``
        (class -> p), ``mpp`` (the pixel size used) and ``mpp_source`` (``given``,
        ``pooled``, ``rbc``, ``wbc`` or ``none``) — the JSON contract of
        ``hemoflow classify --json``.
    """
    from hemoflow.classify.taxonomy import REJECT, group_of

    clf = model if model is not None else get_worker_model()
    classes = clf.io.classes
    paths = list(paths)
    if mpp is not None:
        scales = [(float(mpp), "given")] * len(paths)
    elif scales is None:
        scales = estimate_scales(paths, pool=pool)
    if len(scales) != len(paths):
        raise ValueError(f"scales: {len(scales)} entries for {len(paths)} images")
    out: list[dict[str, Any]] = []
    step = max(1, int(chunk))
    for i in range(0, len(paths), step):
        part = paths[i : i + step]
        cut = [prepare_cell_image(_read_rgb(p), mpp=m, size=clf.io.input_size, dst_mpp=clf.io.mpp)
               for p, (m, _) in zip(part, scales[i : i + step])]
        labels, probs = clf.predict(np.stack(cut), batch_size=batch_size, tta=tta)
        for p, lb, pr, (src, ruler) in zip(part, labels, probs, scales[i : i + step]):
            if ruler == "none" and REJECT in classes:
                lb = REJECT  # nothing stained: no cell to name
            out.append({
                "image": str(p),
                "label": lb,
                "group": group_of(lb) if lb in _LABEL_SET else lb,
                "probability": float(pr.max()),
                "p_blast": float(pr[classes.index("blast")]) if "blast" in classes else 0.0,
                "probabilities": {c: round(float(v), 5) for c, v in zip(classes, pr)},
                "mpp": round(float(src), 5),
                "mpp_source": ruler,
            })
        if progress is not None:
            progress(len(out), len(paths))
    return out
