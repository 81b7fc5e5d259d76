"""Train a WBC classifier: seeded, reproducible on CPU, any set of class names.

Classes are balanced by oversampling (``WeightedRandomSampler``); every draw is a fresh
random view of the cell (:func:`hemoflow.classify.transforms.augment_cell`): geometry,
colour/stain and capture changes. All images are brought to ``io.mpp`` first, so the
network sees the same µm field of view as the pipeline's crops.

>>> from hemoflow.classify.train import train_from_folder            # doctest: +SKIP
>>> clf = train_from_folder("cells/", "model.pt", epochs=10, seed=0, mpp=0.28)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from hemoflow.classify.config import ModelIOConfig
from hemoflow.classify.data import CellSource, folder_sha256, load_images, read_labels
from hemoflow.classify.metrics import classification_metrics
from hemoflow.classify.model import DEFAULT_ARCH, WbcClassifier, build_network, save_model
from hemoflow.classify.transforms import AugmentParams, augment_cell, prepare_cell_image
from hemoflow.errors import HemoflowError

__all__ = [
    "train_model",
    "train_from_folder",
    "evaluate_source",
    "prepare_source",
    "seeded",
]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def seeded(seed: int, threads: int) -> Iterator[None]:
    """Seed torch, fix the thread count and turn on deterministic algorithms; restore after."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(int(seed))
    try:
        yield
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


class _AugmentedCells(Dataset):
    """Index -> (augmented crop as normalised tensor, class index).

    The random view of draw ``j`` in epoch ``e`` depends only on ``(seed, e, j)``, so
    results do not depend on the number of loader workers.
    """

    def __init__(self, sources: Sequence[CellSource], io: ModelIOConfig, seed: int, augment: AugmentParams | None):
        self.items = [(s, i) for s in sources for i in range(len(s))]
        self.targets = np.array([io.classes.index(s.labels[i]) for s, i in self.items], np.int64)
        self.io, self.seed, self.augment = io, seed, augment
        self.epoch = 0
        self.mean = torch.tensor(io.mean).view(3, 1, 1)
        self.std = torch.tensor(io.std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        draw, idx = key
        src, i = self.items[idx]
        io = self.io
        if self.augment is None:
            crop = prepare_cell_image(src.images[i], mpp=src.mpp, size=io.input_size, dst_mpp=io.mpp)
        else:
            rng = np.random.default_rng([self.seed, self.epoch, draw])
            crop = augment_cell(
                src.images[i], src_mpp=src.mpp, dst_mpp=io.mpp, size=io.input_size, rng=rng, params=self.augment
            )
        x = torch.from_numpy(np.array(crop)).permute(2, 0, 1).float().div_(255.0)
        return (x - self.mean) / self.std, int(self.targets[idx])


def _sample_weights(ds: _AugmentedCells, sources: Sequence[CellSource], n_classes: int) -> torch.Tensor:
    """Each class equally likely; within a class, sources mix by their ``weight``."""
    src_of = np.array([sources.index(s) for s, _ in ds.items])
    w = np.zeros(len(ds), np.float64)
    for k in range(n_classes):
        in_k = ds.targets == k
        if not in_k.any():
            continue
        present = np.unique(src_of[in_k])
        total = sum(sources[j].weight for j in present)
        for j in present:
            sel = in_k & (src_of == j)
            w[sel] = sources[j].weight / total / sel.sum()
    return torch.from_numpy(w)


def channel_stats(sources: Sequence[CellSource], io_mpp: float, size: int, *, max_images: int = 2000, seed: int = 0):
    """Per-channel mean and std (0-1 scale) of prepared crops, from up to ``max_images``."""
    rng = np.random.default_rng(seed)
    pool = [(s, i) for s in sources for i in range(len(s))]
    pick = rng.choice(len(pool), size=min(max_images, len(pool)), replace=False)
    acc = np.stack(
        [
            prepare_cell_image(pool[j][0].images[pool[j][1]], mpp=pool[j][0].mpp, size=size, dst_mpp=io_mpp)
            .reshape(-1, 3)
            .mean(0)
            for j in pick
        ]
    )
    sq = np.stack(
        [
            (prepare_cell_image(pool[j][0].images[pool[j][1]], mpp=pool[j][0].mpp, size=size, dst_mpp=io_mpp).reshape(-1, 3).astype(np.float64) ** 2).mean(0)
            for j in pick[:500]
        ]
    )
    mean = acc.mean(0) / 255.0
    std = np.sqrt(np.maximum(sq.mean(0) / 255.0**2 - mean**2, 1e-6))
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def prepare_source(src: CellSource, io: ModelIOConfig) -> np.ndarray:
    """All images of ``src`` as model crops, uint8 [N,S,S,3] (the inference pre-processing)."""
    s = io.input_size
    if len(src) == 0:
        return np.zeros((0, s, s, 3), np.uint8)
    return np.stack([prepare_cell_image(im, mpp=src.mpp, size=s, dst_mpp=io.mpp) for im in src.images])


def evaluate_source(clf: WbcClassifier, src: CellSource, *, batch_size: int = 256) -> dict[str, Any]:
    """Metrics of ``clf`` on ``src`` with the inference pre-processing."""
    pred, _ = clf.predict(prepare_source(src, clf.io), batch_size=batch_size)
    return classification_metrics(src.labels, pred, classes=clf.io.classes)


def train_model(
    sources: Sequence[CellSource],
    io: ModelIOConfig,
    *,
    epochs: int = 12,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.05,
    samples_per_epoch: int | None = None,
    threads: int = 2,
    num_workers: int = 0,
    arch: dict[str, Any] | None = None,
    augment: AugmentParams | None = AugmentParams(),
    progress: bool = False,
    init_state: dict[str, torch.Tensor] | None = None,
    epoch_offset: int = 0,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a network on ``sources``; return it (eval mode) and a training record.

    ``init_state`` starts from given weights (a state dict of the same architecture) instead
    of a random initialisation; ``epoch_offset`` numbers the epochs from there, so a
    continued run draws other cells and other augmented views than the first one.
    """
    if epochs < 1:
        raise HemoflowError(f"epochs must be >= 1, got {epochs!r}")
    unknown = sorted({lb for s in sources for lb in s.labels} - set(io.classes))
    if unknown:
        raise HemoflowError(f"labels {unknown} are not in the class list {list(io.classes)}")
    arch = dict(arch or DEFAULT_ARCH)
    t0 = time.perf_counter()
    history = []
    with seeded(seed, threads):
        ds = _AugmentedCells(sources, io, seed, augment)
        if len(ds) == 0:
            raise HemoflowError("no training images")
        n_per_epoch = int(samples_per_epoch or len(ds))
        gen = torch.Generator().manual_seed(int(seed) if not epoch_offset else int(seed) * 1_000_003 + int(epoch_offset))
        sampler = WeightedRandomSampler(_sample_weights(ds, sources, io.n_classes), n_per_epoch, replacement=True, generator=gen)
        net = build_network(arch, io.n_classes)
        if init_state is not None:
            net.load_state_dict(init_state, strict=True)
        net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        steps = epochs * math.ceil(n_per_epoch / batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        for epoch in range(epochs):
            ds.epoch = epoch_offset + epoch
            keys = list(enumerate(int(i) for i in sampler))
            loader = DataLoader(
                _Keyed(ds, keys), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                persistent_workers=False, drop_last=False,
            )
            net.train()
            tot, correct, seen = 0.0, 0, 0
            te = time.perf_counter()
            for x, y in loader:
                opt.zero_grad(set_to_none=True)
                out = net(x.contiguous(memory_format=torch.channels_last))
                loss = loss_fn(out, y)
                loss.backward()
                opt.step()
                sched.step()
                tot += float(loss.detach()) * len(y)
                correct += int((out.argmax(1) == y).sum())
                seen += len(y)
            rec = {"epoch": epoch + 1, "loss": round(tot / seen, 4), "train_acc": round(correct / seen, 4),
                   "seconds": round(time.perf_counter() - te, 1)}
            history.append(rec)
            log.log(logging.INFO if progress else logging.DEBUG,
                    "epoch %d/%d loss=%s train_acc=%s (%s s)", rec["epoch"], epochs, rec["loss"],
                    rec["train_acc"], rec["seconds"])
    net = net.to(memory_format=torch.contiguous_format).eval()
    record = {
        "epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "label_smoothing": label_smoothing, "samples_per_epoch": n_per_epoch, "threads": threads,
        "optimizer": "AdamW + OneCycleLR", "sampler": "WeightedRandomSampler (classes uniform)",
        "augment": asdict(augment) if augment is not None else None,
        "epoch_offset": int(epoch_offset), "init": "weights" if init_state is not None else "random",
        "wall_s": round(time.perf_counter() - t0, 1), "history": history,
        "torch": torch.__version__, "python": platform.python_version(),
        "sources": [s.describe() for s in sources],
    }
    return net, record


class _Keyed(Dataset):
    def __init__(self, ds: _AugmentedCells, keys: list[tuple[int, int]]):
        self.ds, self.keys = ds, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int):
        return self.ds[self.keys[i]]


def train_from_folder(
    folder: str | Path,
    out_path: str | Path,
    *,
    epochs: int = 12,
    seed: int = 0,
    mpp: float | None = None,
    io_mpp: float = 0.3,
    input_size: int = 96,
    classes: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    exclude: set[str] | None = None,
    extra_sources: Sequence[CellSource] = (),
    val_sources: Sequence[CellSource] | None = None,
    **train_kwargs: Any,
) -> WbcClassifier:
    """Train on a labelled folder (``labels.csv`` with ``path,label``) and write the model.

    Parameters
    ----------
    folder : path
        Folder with ``labels.csv``; ``path`` relative to it, ``label`` any class name.
    out_path : path
        Weights file to write (``.pt``); its metadata goes to the ``.json`` beside it.
    epochs, seed : int
        Training length and seed (the result is reproducible on CPU for a fixed
        ``threads``).
    mpp : float, optional
        Pixel size of the folder's images; default: already at ``io_mpp``.
    io_mpp, input_size : float, int
        Model pixel size and crop side.
    classes : sequence of str, optional
        Output classes (default: sorted labels of the folder and ``extra_sources``).
    val_fraction : float
        Share of the folder held out for validation, chosen by a hash of the path
        (ignored when ``val_sources`` is given).
    exclude : set of str, optional
        Values of a ``source_sha256``/``sha256`` column (or paths) never used for
        training, e.g. cells whose originals form an evaluation set.
    extra_sources : sequence of CellSource
        More training data (other capture, synthetic cells).
    val_sources : sequence of CellSource, optional
        Validation sets; metrics for each are stored in the metadata.
    **train_kwargs
        Passed to :func:`train_model` (batch_size, lr, threads, augment, ...).

    Returns
    -------
    dict
        JSON-ready summary: ``weights`` (path), ``sha256``, ``classes``, ``io``,
        ``n_train``, ``validation`` (metrics per validation set) and ``wall_s``.
        Load the model itself with :func:`hemoflow.classify.load_model`.
    """
    import hashlib

    folder = Path(folder)
    df = read_labels(folder)
    mpp = float(mpp) if mpp is not None else float(io_mpp)
    keep = np.ones(len(df), bool)
    if exclude:
        keys = df["path"]
        for col in ("source_sha256", "sha256"):
            if col in df:
                keys = df[col]
                break
        keep &= ~keys.isin(exclude).to_numpy() & ~df["path"].isin(exclude).to_numpy()
    own_val = None
    if val_sources is None and val_fraction > 0:
        u = np.array([int(hashlib.sha256(p.encode()).hexdigest()[:8], 16) / 2**32 for p in df["path"]])
        is_val = u < val_fraction
        own_val = df[keep & is_val]
        keep &= ~is_val
    train_df = df[keep]
    src = CellSource(folder.name, load_images(folder, train_df["path"]), list(train_df["label"]), mpp,
                     sha256=folder_sha256(folder), info={"folder": folder.name, "excluded": int((~keep).sum())})
    sources = [src, *extra_sources]
    if classes is None:
        classes = sorted({lb for s in sources for lb in s.labels})
    if val_sources is None:
        val_sources = []
        if own_val is not None and len(own_val):
            val_sources = [CellSource(f"{folder.name}-val", load_images(folder, own_val["path"]),
                                      list(own_val["label"]), mpp)]
    mean, std = channel_stats(sources, io_mpp, input_size, seed=seed)
    io = ModelIOConfig(classes=tuple(classes), input_size=input_size, mpp=io_mpp, mean=mean, std=std)
    net, record = train_model(sources, io, seed=seed, epochs=epochs, **train_kwargs)
    clf = WbcClassifier(net, io)
    validation = {v.name: evaluate_source(clf, v) for v in val_sources}
    arch = dict(train_kwargs.get("arch") or DEFAULT_ARCH)
    meta = {
        "training_data_sha256": src.sha256,
        "training": record,
        "validation": validation,
    }
    digest = save_model(out_path, net, io, arch=arch, metadata=meta)
    return {
        "weights": str(out_path),
        "sha256": digest,
        "classes": list(io.classes),
        "io": io.to_dict(),
        "n_train": int(sum(len(s) for s in sources)),
        "validation": validation,
        "wall_s": record["wall_s"],
    }
