"""Train the shipped 13-label WBC classifier from ``../shared/data``.

``python -m hemoflow.training.wbc --data ../shared/data`` reproduces
``hemoflow/models/wbc_classifier.pt`` and its provenance sidecar (seeded; CPU).

Recipe
------
- data: :mod:`hemoflow.training.wbc_data` (PBC, PBC maturation, marrow_mll, BCCD, generated
  non-cell images), the training side of :func:`hemoflow.training.splits.cell_split` /
  ``bccd_split``;
- sampling: every label equally often; within a label, every source that has it equally
  often (marrow and PBC neutrophils alike), so the other laboratory is not drowned;
  unstaged cells (PBC ``IG``/``NEUTROPHIL``, BCCD neutrophils) at a third of a label's mass;
- loss: the negative log of the probability of the cell's target set (one label, or
  every label of its group), with 5 % label smoothing;
- augmentation: :class:`hemoflow.training.augment.BatchAugment` (rotation, mirror, ±33 %
  scale, optical-density stain jitter, saturation, blur, noise);
- initialisation: the previous shipped network's convolutions when given (``--init``),
  its head rows copied to the labels they cover; AdamW with a one-cycle schedule.
"""

from __future__ import annotations

import argparse
import tempfile
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from hemoflow.classify.config import ModelIOConfig
from hemoflow.classify.model import WbcClassifier, WbcNet, build_network, save_model
from hemoflow.classify.taxonomy import LABELS, REJECT
from hemoflow.training.augment import BatchAugment
from hemoflow.training.wbc_data import SOURCES, CellSet, load_sources

__all__ = ["ARCH", "IO", "train_network", "init_from", "predict_sets", "main"]

log = logging.getLogger(__name__)

ARCH: dict[str, Any] = {"name": "WbcNet", "widths": [32, 48, 96, 192], "stem_convs": 2, "dropout": 0.1}
#: 80 px at 0.3 µm/px: a 24 µm field (the largest blasts included), at the pixel size
#: the previous network was trained at; 80 rather than 96 px costs a third less compute.
IO = ModelIOConfig(classes=LABELS, input_size=80, mpp=0.3, mean=(0.8478, 0.7317, 0.7278), std=(0.1898, 0.2024, 0.0676))
#: Pixel size and side of the cached crops (finer than the input, with room for the random
#: scale and rotation: 32 µm).
CACHE_MPP = 0.25
CACHE_SIDE = 128
#: Batches per one-cycle round of the shipped recipe (``--steps``).
DEFAULT_STEPS = "1000,6000,6000"
#: The network the shipped classifier is fine-tuned from (9 PBC classes + synthetic blast).
INIT_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "wbc_init_pbc9.pt"
#: Old 9-class head rows -> the new labels they initialise.
_HEAD_MAP = {"ig": ("promyelocyte", "myelocyte", "metamyelocyte"),
             "neutrophil": ("band_neutrophil", "segmented_neutrophil")}


def init_from(net: WbcNet, path: str | Path) -> None:
    """Copy a previous model's weights into ``net`` (same trunk); map its head by class name."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    old_classes = blob["io"]["classes"]
    state = blob["state_dict"]
    own = net.state_dict()
    trunk = {k: v for k, v in state.items() if not k.startswith("head.") and k in own and own[k].shape == v.shape}
    net.load_state_dict(trunk, strict=False)
    with torch.no_grad():
        for i, c in enumerate(old_classes):
            for new in _HEAD_MAP.get(c, (c,)):
                if new in LABELS:
                    j = LABELS.index(new)
                    net.head.weight[j] = state["head.weight"][i]
                    net.head.bias[j] = state["head.bias"][i]
    log.info("initialised from %s (%d tensors)", path, len(trunk))


def _item_weights(train: CellSet) -> np.ndarray:
    """Each label equally likely; within it, each source equally likely; unstaged sets at 1/3."""
    keys = np.array([f"{lab}|{src}" for lab, src in zip(train.label, train.names_source)])
    w = np.zeros(len(keys))
    for lab in np.unique(train.label):
        m = train.label == lab
        srcs = np.unique(keys[m])
        mass = 1.0 if lab in LABELS else 1.0 / 3.0
        for k in srcs:
            mk = keys == k
            w[mk] = mass / len(srcs) / mk.sum()
    return w / w.sum()


def _to_float(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0)


def _normalise(x: torch.Tensor, io: ModelIOConfig) -> torch.Tensor:
    mean = torch.tensor(io.mean).view(1, 3, 1, 1)
    std = torch.tensor(io.std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def set_nll(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.05) -> torch.Tensor:
    """-log P(target set), mixed with ``smoothing`` of the uniform cross-entropy."""
    logp = F.log_softmax(logits.float(), dim=1)
    nll = -torch.logsumexp(logp.masked_fill(~targets, -torch.inf), dim=1)
    return ((1 - smoothing) * nll - smoothing * logp.mean(1)).mean()


def train_network(
    train: CellSet, *, steps: int, io: ModelIOConfig = IO, init: str | Path | None = None, batch: int = 64,
    lr: float = 2e-3, weight_decay: float = 5e-4, seed: int = 0, threads: int = 2, log_every: int = 100,
) -> tuple[WbcNet, dict[str, Any]]:
    """Train a :class:`WbcNet` on the cached crops of ``train`` for ``steps`` batches."""
    torch.manual_seed(seed)
    prev = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    net = build_network(ARCH, len(io.classes))
    if init is not None:
        init_from(net, init)
    net = net.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    aug = BatchAugment(out=io.input_size, src_step=io.mpp / CACHE_MPP)
    p = _item_weights(train)
    targets = torch.from_numpy(train.targets)
    t0, losses = time.perf_counter(), []
    try:
        for step in range(steps):
            idx = np.sort(rng.choice(len(p), size=batch, p=p))
            x = _normalise(aug(_to_float(train.crops[idx]), g), io)
            loss = set_nll(net(x), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if log_every and (step + 1) % log_every == 0:
                log.info("step %d/%d loss %.4f (%.1f cells/s)", step + 1, steps, np.mean(losses[-log_every:]),
                         (step + 1) * batch / (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(prev)
    info = {"steps": steps, "batch": batch, "lr": lr, "weight_decay": weight_decay, "seed": seed, "threads": threads,
            "optimizer": "AdamW + OneCycleLR", "loss": "target-set NLL, 5 % smoothing",
            "augment": dict(BatchAugment().__dict__), "init": None if init is None else Path(init).name,
            "final_loss": round(float(np.mean(losses[-100:])), 4), "train_seconds": round(time.perf_counter() - t0, 1)}
    return net.eval(), info


def centre(crops: np.ndarray, io: ModelIOConfig = IO) -> np.ndarray:
    """The model's input cut from cached crops: the central ``io.input_size * io.mpp`` µm,
    resampled (antialiased) to ``io.input_size`` px, as inference cuts the same image."""
    side = int(round(io.input_size * io.mpp / CACHE_MPP))
    o = (crops.shape[1] - side) // 2
    out = np.empty((len(crops), io.input_size, io.input_size, 3), np.uint8)
    for i in range(0, len(crops), 512):
        x = torch.from_numpy(np.ascontiguousarray(crops[i : i + 512, o : o + side, o : o + side])).permute(0, 3, 1, 2)
        y = F.interpolate(x.float(), size=(io.input_size, io.input_size), mode="bilinear", antialias=True,
                          align_corners=False)
        out[i : i + 512] = y.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return out


def predict_sets(clf: WbcClassifier, cs: CellSet) -> np.ndarray:
    """Probabilities [N, 13] for the cached crops of ``cs``."""
    return clf.predict_proba(centre(cs.crops, clf.io), batch_size=256)


def _attach_sources(sets: Mapping[str, CellSet]) -> CellSet:
    allc = CellSet.concat(list(sets.values()), "all")
    allc.names_source = np.concatenate([np.full(len(s), s.source) for s in sets.values()])
    return allc


def training_set(sets: Mapping[str, CellSet], sources=None) -> CellSet:
    """The training side of ``sources`` (default all), as one :class:`CellSet` with
    ``names_source``."""
    use = {k: v.take(v.split == "train") for k, v in sets.items() if sources is None or k in sources}
    return _attach_sources(use)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hemoflow.training.wbc", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data", help="folder holding pbc/, pbc_train/, marrow_mll/, bccd/ ...")
    ap.add_argument("--out", default=None, help="weights file (default: the shipped hemoflow/models/wbc_classifier.pt)")
    ap.add_argument("--cache", default=None, help="folder for the preprocessed crops (.npz)")
    ap.add_argument("--init", default=str(INIT_WEIGHTS),
                    help="weights to start from (default: the shipped 9-class PBC model; 'none': from scratch)")
    ap.add_argument("--steps", default=DEFAULT_STEPS,
                    help="batches per round, comma-separated: each round is one one-cycle schedule that starts "
                         "from the previous round's network, with seed + round index")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sources", default=",".join(SOURCES), help="comma-separated training sources")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from hemoflow.training.wbc_report import provenance

    sets = load_sources(args.data, dst_mpp=CACHE_MPP, side=CACHE_SIDE, cache=args.cache)
    sources = tuple(s for s in args.sources.split(",") if s)
    train = training_set(sets, sources)
    init = None if args.init.lower() == "none" else args.init
    out = Path(args.out) if args.out else Path(__file__).resolve().parents[1] / "models" / "wbc_classifier.pt"
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, steps in enumerate(int(v) for v in args.steps.split(",")):
            net, info = train_network(train, steps=steps, init=init, batch=args.batch, lr=args.lr,
                                      seed=args.seed + k, threads=args.threads)
            rounds.append(info)
            init = Path(tmp) / f"round{k}.pt"
            save_model(init, net, IO, arch=ARCH)
    info = {"rounds": rounds}
    clf = WbcClassifier(net, IO)
    argv_used = sys.argv if argv is None else ["hemoflow.training.wbc", *argv]
    meta = provenance(clf, sets, args.data, sources=sources, info=info, argv=argv_used)
    digest = save_model(out, net, IO, arch=ARCH, metadata=meta)
    log.info("wrote %s (sha256 %s, %d bytes)", out, digest[:12], out.stat().st_size)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
