"""WBC classifier: a compact residual CNN, kept apart from pre- and post-processing.

:class:`WbcNet` is the bare network (normalised float tensor in, logits out).
:class:`WbcClassifier` wraps it with its :class:`~hemoflow.classify.config.ModelIOConfig`
and does the rest: uint8 crops in, class names and probabilities out, in batches, under
``torch.inference_mode``; on CUDA with autocast (bf16 where supported, else fp16) and
``channels_last`` memory format.

>>> from hemoflow.classify import load_default_model
>>> import numpy as np
>>> clf = load_default_model()
>>> crops = np.full((2, clf.io.input_size, clf.io.input_size, 3), 200, np.uint8)
>>> labels, probs = clf.predict(crops)
>>> probs.shape == (2, len(clf.io.classes))
True
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from hemoflow.classify.config import ModelIOConfig, default_weights_path
from hemoflow.errors import ModelError, UnsupportedImageError

__all__ = [
    "WbcNet",
    "WbcClassifier",
    "load_model",
    "load_default_model",
    "save_model",
    "labels_from_probs",
    "FORMAT",
]

log = logging.getLogger(__name__)

#: Tag stored in every weights file; bumped when the layout changes.
FORMAT = "hemoflow.wbc/1"
DEFAULT_ARCH: dict[str, Any] = {"name": "WbcNet", "widths": [24, 32, 64, 128], "stem_convs": 1, "dropout": 0.1}


def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a (projected) shortcut, ResNet "basic block" style."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin, cout, stride), nn.ReLU(inplace=True), *_conv_bn(cout, cout)
        )
        if stride == 1 and cin == cout:
            self.short: nn.Module = nn.Identity()
        else:
            self.short = nn.Sequential(*_conv_bn(cin, cout, stride, k=1))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.short(x))


class WbcNet(nn.Module):
    """Compact residual CNN for 96x96 crops (~0.3 M parameters, ~28 M MACs per crop).

    stem (3x3/2, optionally a second 3x3) -> 3 residual stages (/2 each) -> global average
    pool -> linear.

    Parameters
    ----------
    n_classes : int
        Number of logits.
    widths : sequence of 4 ints
        Channels of the stem and of the three residual stages.
    stem_convs : int
        1 or 2 convolutions at half resolution.
    dropout : float
        Dropout before the linear head (training only).
    """

    def __init__(
        self, n_classes: int, widths: Sequence[int] = (24, 32, 64, 128), dropout: float = 0.1,
        stem_convs: int = 1,
    ) -> None:
        super().__init__()
        w = [int(v) for v in widths]
        if len(w) != 4 or min(w) < 1:
            raise ModelError(f"widths must be 4 positive ints, got {widths!r}")
        if stem_convs not in (1, 2):
            raise ModelError(f"stem_convs must be 1 or 2, got {stem_convs!r}")
        stem: list[nn.Module] = [*_conv_bn(3, w[0], 2), nn.ReLU(inplace=True)]
        if stem_convs == 2:
            stem += [*_conv_bn(w[0], w[0]), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem)
        self.stages = nn.Sequential(ResBlock(w[0], w[1], 2), ResBlock(w[1], w[2], 2), ResBlock(w[2], w[3], 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(w[3], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(self.drop(torch.flatten(self.pool(x), 1)))


def build_network(arch: Mapping[str, Any], n_classes: int) -> WbcNet:
    """Instantiate the network an ``arch`` dict (as stored in a weights file) describes."""
    if arch.get("name") != "WbcNet":
        raise ModelError(f"unknown network architecture {arch.get('name')!r}")
    return WbcNet(n_classes, widths=arch.get("widths", (24, 32, 64, 128)), dropout=float(arch.get("dropout", 0.1)),
                  stem_convs=int(arch.get("stem_convs", 1)))


def crops_to_tensor(crops: np.ndarray, io: ModelIOConfig) -> torch.Tensor:
    """uint8 [N,S,S,3] crops -> normalised float32 [N,3,S,S] tensor (contiguous NCHW)."""
    arr = np.ascontiguousarray(crops)
    if not arr.flags.writeable:  # torch warns on read-only buffers; the float copy below is ours anyway
        arr = arr.copy()
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(io.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(io.std, dtype=torch.float32).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std).contiguous()


def check_crops(crops: Any, io: ModelIOConfig) -> np.ndarray:
    """Validate a batch of crops against ``io``; return it as a numpy array."""
    if not isinstance(crops, np.ndarray):
        raise UnsupportedImageError(f"crops must be a numpy array, got {type(crops).__name__}")
    s = io.input_size
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (s, s, 3):
        raise UnsupportedImageError(
            f"crops must be uint8[N,{s},{s},3], got {crops.dtype}{list(crops.shape)}"
        )
    return crops


class WbcClassifier:
    """A network bound to its I/O config: uint8 crops in, labels and probabilities out.

    Parameters
    ----------
    network : torch.nn.Module
        Maps normalised float [N,3,S,S] to logits [N,C]; put in eval mode here.
    io : ModelIOConfig
        Classes, crop size, µm/px and normalisation.
    sha256 : str
        Hash of the weights file the network came from ("" when built in memory).
    metadata : dict, optional
        Training metadata (data hash, validation metrics, ...).
    device : str or torch.device, optional
        Default "cpu"; "cuda" turns on autocast and channels_last.
    channels_last : bool, optional
        Use the NHWC memory format. Default: True (faster on CPU and CUDA alike; see
        ``benchmarks/classify.py``).
    amp : bool, optional
        Run under autocast (bf16 where supported, else fp16). Default: True on CUDA only.
    """

    #: most crops per forward pass on CPU (see :meth:`predict_logits`)
    cpu_batch: int = 64

    def __init__(
        self,
        network: nn.Module,
        io: ModelIOConfig,
        *,
        sha256: str = "",
        metadata: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
        channels_last: bool | None = None,
        amp: bool | None = None,
    ) -> None:
        self.io = io
        self.sha256 = sha256
        self.metadata = dict(metadata or {})
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.channels_last = True if channels_last is None else bool(channels_last)
        self.amp = cuda if amp is None else bool(amp)
        if self.amp:
            bf16 = (not cuda) or torch.cuda.is_bf16_supported()
            self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        else:
            self.amp_dtype = torch.float32
        net = network.to(self.device).eval()
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.network = net

    @property
    def classes(self) -> tuple[str, ...]:
        return self.io.classes

    def __repr__(self) -> str:
        return (
            f"WbcClassifier(classes={len(self.io.classes)}, input_size={self.io.input_size}, "
            f"mpp={self.io.mpp}, device={self.device}, sha256={self.sha256[:12]!r})"
        )

    def predict_logits(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Raw logits, float32 [N,C].

        On CPU a forward pass takes at most :attr:`cpu_batch` crops whatever ``batch_size``
        asks: larger passes are no faster there and their activations cost memory
        (measured with the shipped model, one thread: 512 crops per pass 506 cells/s and
        +950 MB peak RSS, 64 crops 535 cells/s and +130 MB).
        """
        return self._run(crops, batch_size, lambda x: self._forward(x).float())

    def predict_proba(self, crops: np.ndarray, batch_size: int = 256, *, tta: bool = False) -> np.ndarray:
        """Softmax probabilities, float32 [N,C]; ``tta`` as in :meth:`predict`."""
        return self._run(crops, batch_size, lambda x: self._probs(x, tta))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            return self.network(x)

    def _probs(self, x: torch.Tensor, tta: bool) -> torch.Tensor:
        if not tta:
            return torch.softmax(self._forward(x).float(), dim=1)
        # the 8 flips and quarter turns of NCHW x, made on x's device: the identity and
        # its quarter turns (np.rot90 convention), then the same of the mirror image
        acc = None
        for base in (x, x.flip(3)):
            for k in range(4):
                p = torch.softmax(self._forward(torch.rot90(base, k, dims=(2, 3))).float(), dim=1)
                acc = p if acc is None else acc + p
        return acc / 8

    def _run(self, crops: np.ndarray, batch_size: int, head) -> np.ndarray:
        """``head(normalised NCHW batch) -> [n, C]`` over ``crops`` in batches; float32 [N, C]."""
        crops = check_crops(crops, self.io)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if self.device.type != "cpu":
            return self._run_device(crops, int(batch_size), head)
        batch_size = min(int(batch_size), self.cpu_batch)
        n = crops.shape[0]
        out = np.empty((n, self.io.n_classes), np.float32)
        with torch.inference_mode():
            for i in range(0, n, batch_size):
                x = crops_to_tensor(crops[i : i + batch_size], self.io)
                out[i : i + len(x)] = head(x).numpy()
        return out

    def _predict_logits_device(self, crops: np.ndarray, batch_size: int) -> np.ndarray:
        """Logits by the accelerator route (also runs on CPU, for tests)."""
        return self._run_device(check_crops(crops, self.io), batch_size, lambda x: self._forward(x).float())

    def _run_device(self, crops: np.ndarray, batch_size: int, head) -> np.ndarray:
        """Accelerator path: uint8 crops travel (4x fewer bytes than float), are normalised on
        the device, and the results come back in one transfer, so the host never waits per batch.

        A uint8 NHWC batch permuted to NCHW already has channels_last strides, so no layout
        copy is made for ``channels_last``.
        """
        n = crops.shape[0]
        dev = self.device
        scale = torch.tensor(self.io.std, dtype=torch.float32, device=dev).view(1, 3, 1, 1) * 255.0
        shift = torch.tensor(self.io.mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1) * 255.0
        arr = np.ascontiguousarray(crops)
        if not arr.flags.writeable:
            arr = arr.copy()
        host = torch.from_numpy(arr)
        outs = []
        with torch.inference_mode():
            for i in range(0, n, batch_size):
                xb = host[i : i + batch_size]
                if dev.type == "cuda":
                    xb = xb.pin_memory()
                x = xb.to(dev, non_blocking=True).permute(0, 3, 1, 2).float()
                outs.append(head((x - shift) / scale))
            if not outs:
                return np.empty((0, self.io.n_classes), np.float32)
            return torch.cat(outs).cpu().numpy()

    def predict(self, crops: np.ndarray, batch_size: int = 256, *, tta: bool = False) -> tuple[list[str], np.ndarray]:
        """Classify crops.

        Parameters
        ----------
        crops : uint8 ndarray [N, S, S, 3]
            RGB crops with ``S == io.input_size``, sampled at ``io.mpp`` µm/px.
        batch_size : int
            Crops per forward pass (on CPU at most :attr:`cpu_batch`).
        tta : bool
            Test-time augmentation: average the softmax over the 8 flips and quarter turns
            of each crop (the symmetries the training augmentation covers), made on the
            model's device. 8x the compute.

        Returns
        -------
        labels : list of str
            Most probable class name per crop.
        probs : float32 ndarray [N, C]
            Softmax probabilities in the order of ``io.classes``.
        """
        probs = self.predict_proba(crops, batch_size=batch_size, tta=tta)
        return labels_from_probs(probs, self.io.classes, abstain_below=self.abstain_below), probs

    @property
    def abstain_below(self) -> float:
        """The confidence rule: a cell whose most probable label has less than this
        probability is reported as ``not_identifiable`` (0: never; from the weights'
        metadata ``abstain_below``)."""
        return float(self.metadata.get("abstain_below", 0.0))


def labels_from_probs(probs: np.ndarray, classes: Sequence[str], *, abstain_below: float = 0.0) -> list[str]:
    """Most probable label per row; ``not_identifiable`` where its probability is below
    ``abstain_below`` (when the classes hold that label).

    >>> labels_from_probs(np.array([[0.9, 0.1, 0.0], [0.4, 0.35, 0.25]]), ("a", "b", "not_identifiable"),
    ...                   abstain_below=0.5)
    ['a', 'not_identifiable']
    """
    from hemoflow.classify.taxonomy import REJECT

    probs = np.asarray(probs)
    if len(probs) == 0:
        return []
    idx = probs.argmax(axis=1)
    out = [classes[i] for i in idx]
    if abstain_below > 0 and REJECT in classes:
        low = probs[np.arange(len(probs)), idx] < abstain_below
        out = [REJECT if lo else lab for lab, lo in zip(out, low)]
    return out


# --------------------------------------------------------------------------- files


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(
    path: str | Path,
    network: nn.Module,
    io: ModelIOConfig,
    *,
    arch: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> str:
    """Write ``path`` (torch weights) and ``path.with_suffix('.json')`` (metadata).

    Returns the sha256 of the weights file. Only plain Python containers and tensors are
    stored, so the file loads with ``torch.load(weights_only=True)``.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    arch = dict(arch or DEFAULT_ARCH)
    meta = json.loads(json.dumps(dict(metadata or {})))  # plain types only
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    blob = {"format": FORMAT, "arch": arch, "io": io.to_dict(), "state_dict": state, "metadata": meta}
    buf = _io.BytesIO()
    torch.save(blob, buf)
    data = buf.getvalue()
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, p)
    digest = _sha256_bytes(data)
    side = {"format": FORMAT, "weights": p.name, "sha256": digest, "arch": arch, "io": io.to_dict(), **meta}
    p.with_suffix(".json").write_text(json.dumps(side, indent=1) + "\n", encoding="utf-8")
    return digest


def load_model(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    channels_last: bool | None = None,
    amp: bool | None = None,
) -> WbcClassifier:
    """Load a weights file written by :func:`save_model`.

    Raises
    ------
    ModelError
        The file is missing, unreadable or corrupt, is not a hemoflow WBC model, its
        tensors do not fit the architecture, or its ``.json`` sidecar (when present)
        disagrees with it.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"model weights not found: {p}") from None
    except OSError as e:
        raise ModelError(f"cannot read model weights {p}: {e}") from None
    digest = _sha256_bytes(data)
    try:
        blob = torch.load(_io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for corrupt files
        raise ModelError(f"model weights {p} are corrupt or not a torch file: {e}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{p} is not a hemoflow WBC model (format {FORMAT!r} expected)")
    try:
        io = ModelIOConfig.from_dict(blob["io"])
        net = build_network(blob["arch"], io.n_classes)
        net.load_state_dict(blob["state_dict"], strict=True)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"model weights {p} do not match their architecture/classes: {e}") from None
    side_path = p.with_suffix(".json")
    if side_path.exists():
        from hemoflow.classify.config import read_metadata

        side = read_metadata(side_path)
        if side.get("sha256") not in (None, digest):
            raise ModelError(f"{side_path} describes a different weights file (sha256 mismatch)")
        if ModelIOConfig.from_dict(side["io"]) != io:
            raise ModelError(f"{side_path} I/O config disagrees with the weights in {p}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return WbcClassifier(
        net, io, sha256=digest, metadata=blob.get("metadata", {}), device=dev, channels_last=channels_last, amp=amp
    )


def load_default_model(**kwargs: Any) -> WbcClassifier:
    """Load the shipped classifier (``hemoflow/models/wbc_classifier.pt``)."""
    return load_model(default_weights_path(".pt"), **kwargs)
