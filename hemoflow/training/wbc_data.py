"""The labelled real cells the WBC classifier learns from, brought to one pixel size.

Sources (folders of ``../shared/data``):

===================  =======================================================================
``pbc``              PBC originals (full size) of the 8 PBC classes
``pbc_maturation``   PBC originals of the five granulocytic stages
``pbc_train``        128-px copies of up to 1,000 PBC cells per class (taken only for file
                     names that no full-size folder holds)
``marrow_mll``       bone-marrow cells of another laboratory, 7 classes
``bccd``             the one annotated WBC of BCCD fields typed by the Kaggle labels
``junk``             generated blank, flat, noise and background-only images, labelled
                     ``not_identifiable``: they teach abstention, not cells
===================  =======================================================================

Each cell carries a *target set*: the labels it may be. A staged cell has one label; PBC's
unstaged ``IG`` and ``NEUTROPHIL`` and BCCD's ``NEUTROPHIL`` allow every label of their
group, and the loss takes the probability of the set (so they teach the group, not a
stage).

Every image is brought to the model's pixel size with the same scale estimate the
classifier uses at inference on a batch (:func:`hemoflow.classify.infer.estimate_scales`:
each image's own estimate, then one median per source and image size), and
centre-cropped to a square a little larger than the network input (room for the random
scale and rotation of training). Crops are cached as ``.npz`` per source, keyed by the
data and the preprocessing, so a rerun skips decoding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from hemoflow.classify.scale import estimate_batch
from hemoflow.classify.taxonomy import IG_LABELS, LABELS, REJECT
from hemoflow.classify.transforms import center_crop_pad, resample_to_mpp
from hemoflow.errors import HemoflowError
from hemoflow.training.splits import bccd_split, cell_split

__all__ = ["CellSet", "PBC_PREFIX", "load_sources", "target_mask", "SOURCES"]

log = logging.getLogger(__name__)

#: PBC ``subtype_prefix`` -> the labels the cell may be.
PBC_PREFIX: dict[str, tuple[str, ...]] = {
    "BA": ("basophil",), "EO": ("eosinophil",), "ERB": ("erythroblast",), "LY": ("lymphocyte",),
    "MO": ("monocyte",), "PLATELET": ("platelet",), "PMY": ("promyelocyte",), "MY": ("myelocyte",),
    "MMY": ("metamyelocyte",), "IG": IG_LABELS, "BNE": ("band_neutrophil",),
    "SNE": ("segmented_neutrophil",), "NEUTROPHIL": ("band_neutrophil", "segmented_neutrophil"),
}
BCCD_TYPES: dict[str, tuple[str, ...]] = {
    "NEUTROPHIL": ("band_neutrophil", "segmented_neutrophil"), "LYMPHOCYTE": ("lymphocyte",),
    "MONOCYTE": ("monocyte",), "EOSINOPHIL": ("eosinophil",), "BASOPHIL": ("basophil",),
}
SOURCES = ("pbc", "marrow_mll", "bccd", "junk", "synth")
#: Bumped whenever the scale estimate, the cropping or the target sets change (part of the
#: cache key).
PREP_VERSION = "wbc-crops/2-pooled"
#: BCCD fields are cut as this many µm around the annotated WBC.
BCCD_FOV_UM = 40.0


@dataclass
class CellSet:
    """Crops of one source at one pixel size: ``crops`` uint8 [N, S, S, 3], ``targets``
    bool [N, 13] (allowed labels, in :data:`LABELS` order), and per-cell ``names``,
    ``split`` (train/validation), ``label`` (the finest label given, or the group for a
    set) and ``mpp_est`` / ``ruler`` (the scale estimate of the original image)."""

    source: str
    crops: np.ndarray
    targets: np.ndarray
    names: np.ndarray
    split: np.ndarray
    label: np.ndarray
    mpp_est: np.ndarray
    ruler: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def take(self, keep: np.ndarray) -> "CellSet":
        keep = np.asarray(keep)
        return CellSet(self.source, self.crops[keep], self.targets[keep], self.names[keep], self.split[keep],
                       self.label[keep], self.mpp_est[keep], self.ruler[keep])

    @staticmethod
    def concat(sets: list["CellSet"], source: str) -> "CellSet":
        f = lambda a: np.concatenate([getattr(s, a) for s in sets])  # noqa: E731
        return CellSet(source, f("crops"), f("targets"), f("names"), f("split"), f("label"), f("mpp_est"), f("ruler"))


def target_mask(allowed: tuple[str, ...]) -> np.ndarray:
    m = np.zeros(len(LABELS), bool)
    for lab in allowed:
        m[LABELS.index(lab)] = True
    return m


def _set_label(allowed: tuple[str, ...]) -> str:
    if len(allowed) == 1:
        return allowed[0]
    return "ig" if set(allowed) == set(IG_LABELS) else "neutrophil"


def prepare(rgb: np.ndarray, *, mpp: float, dst_mpp: float, side: int) -> np.ndarray:
    """One image at pixel size ``mpp`` -> its crop at ``dst_mpp``, ``side`` px square."""
    return center_crop_pad(resample_to_mpp(rgb, mpp, dst_mpp), side)


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _pbc_rows(data: Path) -> pd.DataFrame:
    """One row per PBC cell (file name): the full-size original where one exists."""
    rows = []
    for folder in ("pbc", "pbc_maturation", "pbc_train"):
        df = pd.read_csv(data / folder / "labels.csv", dtype=str, keep_default_na=False)
        df["folder"] = folder
        df["stem"] = df["path"].str.rsplit("/", n=1).str[-1].str.rsplit(".", n=1).str[0]
        rows.append(df[["folder", "path", "stem", "subtype_prefix"]])
    allr = pd.concat(rows, ignore_index=True)
    allr = allr[allr["subtype_prefix"].isin(PBC_PREFIX)]
    return allr.drop_duplicates("stem", keep="first").sort_values("stem").reset_index(drop=True)


def _bccd_cells(data: Path) -> list[tuple[str, np.ndarray, tuple[str, ...]]]:
    """(field, cut around the single annotated WBC, allowed labels) per typed field."""
    root = data / "bccd"
    counts = pd.read_csv(root / "counts.csv", dtype=str, keep_default_na=False)
    out = []
    for name, kind in zip(counts["image"], counts["wbc_type_kaggle"]):
        if kind not in BCCD_TYPES:
            continue
        boxes = []
        for obj in ET.parse(root / "Annotations" / f"{name}.xml").getroot().iter("object"):
            if obj.findtext("name") == "WBC":
                bb = obj.find("bndbox")
                boxes.append([float(bb.findtext(k)) for k in ("ymin", "xmin", "ymax", "xmax")])
        if len(boxes) != 1 or boxes[0][2] <= boxes[0][0]:
            continue
        rgb = _read(root / "JPEGImages" / f"{name}.jpg")
        y0, x0, y1, x1 = boxes[0]
        cy, cx, half = int((y0 + y1) / 2), int((x0 + x1) / 2), 270  # 540 px: ~40 µm at BCCD's ~0.075
        pad = np.pad(rgb, ((half, half), (half, half), (0, 0)), mode="reflect")
        out.append((name, np.ascontiguousarray(pad[cy: cy + 2 * half, cx: cx + 2 * half]), BCCD_TYPES[kind]))
    return out


def junk_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Non-cell images: flat colours, noise, smooth noise, gradients and empty background."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = int(rng.integers(96, 400))
        kind = i % 5
        if kind == 0:
            img = np.broadcast_to(rng.integers(0, 256, 3), (s, s, 3))
        elif kind == 1:
            img = rng.integers(0, 256, (s, s, 3))
        elif kind == 2:
            from scipy.ndimage import gaussian_filter

            img = gaussian_filter(rng.normal(0, 1, (s, s, 3)), (s / 20, s / 20, 0))
            img = (img - img.min()) / (np.ptp(img) + 1e-9) * rng.uniform(40, 255) + rng.uniform(0, 100)
        elif kind == 3:
            yy, xx = np.mgrid[:s, :s] / s
            c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            img = c0 + (c1 - c0) * ((yy + xx) / 2)[..., None]
        else:  # smear background: pale, slightly noisy, no cell
            img = rng.integers(200, 250, 3) + rng.normal(0, 4, (s, s, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def _build(source: str, data: Path, dst_mpp: float, side: int) -> CellSet:
    items: list[tuple[str, np.ndarray | Path, tuple[str, ...], str]] = []
    if source == "pbc":
        for r in _pbc_rows(data).itertuples():
            items.append((r.stem, data / r.folder / r.path, PBC_PREFIX[r.subtype_prefix], cell_split("pbc", r.stem)))
    elif source == "marrow_mll":
        df = pd.read_csv(data / "marrow_mll" / "labels.csv", dtype=str, keep_default_na=False)
        for p, lab in zip(df["path"], df["label"]):
            items.append((p, data / "marrow_mll" / p, (lab,), cell_split("marrow_mll", p)))
    elif source == "bccd":
        for name, rgb, allowed in _bccd_cells(data):
            items.append((name, rgb, allowed, bccd_split(name)))
    elif source == "synth":
        items.extend(_synthetic_cells(dst_mpp))
    elif source == "junk":
        for i, rgb in enumerate(junk_images(400)):
            items.append((f"junk_{i:04d}", rgb, (REJECT,), "validation" if i % 5 == 0 else "train"))
    else:
        raise HemoflowError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")

    def image(img):
        return _read(img) if isinstance(img, Path) else img

    if source == "synth":  # cut at the generator's known pixel size, as the pipeline cuts its crops
        mpps, rulers = np.full(len(items), dst_mpp), ["known"] * len(items)
    else:  # as inference scales a batch: each image's estimate, pooled per image size
        mpps, rulers = estimate_batch(image(img) for _, img, _, _ in items)
    crops = np.empty((len(items), side, side, 3), np.uint8)
    for i, (_, img, _, _) in enumerate(items):
        rgb = image(img)
        crops[i] = center_crop_pad(rgb, side) if source == "synth" else prepare(rgb, mpp=mpps[i], dst_mpp=dst_mpp,
                                                                             side=side)
    return CellSet(source, crops, np.stack([target_mask(a) for _, _, a, _ in items]),
                   np.array([n for n, _, _, _ in items]), np.array([s for _, _, _, s in items]),
                   np.array([_set_label(a) for _, _, a, _ in items]), np.asarray(mpps, float), np.array(rulers))


#: Synthetic fields for the ``synth`` source: the demo's generator, every WBC type equally
#: often, one field in five held out for validation.
SYNTH_FIELDS, SYNTH_SEED, SYNTH_WBC_PER_FIELD = 60, 700_000, 12


def _synthetic_cells(mpp: float) -> list[tuple[str, np.ndarray, tuple[str, ...], str]]:
    """WBCs of :func:`hemoflow.synth.synth_field` fields generated at ``mpp``, each as a
    window around its true centre, labelled with the generator's type (``neutrophil``
    allows band or segmented)."""
    from hemoflow import synth

    types = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil", "blast")
    half = int(round(BCCD_FOV_UM / mpp / 2))
    out = []
    for k in range(SYNTH_FIELDS):
        rgb, truth = synth.synth_field((768, 768), mpp=mpp, seed=SYNTH_SEED + k, n_wbc=SYNTH_WBC_PER_FIELD,
                                       wbc_mix={t: 1.0 for t in types})
        pad = np.pad(rgb, ((half, half), (half, half), (0, 0)), mode="edge")
        for j, (c, t) in enumerate(zip(truth["cls"], truth["type"])):
            if c != "wbc":
                continue
            y, x = int(round(float(truth["y"][j]))), int(round(float(truth["x"][j])))
            allowed = BCCD_TYPES.get(str(t).upper(), (str(t),))
            out.append((f"synth_{k:03d}_{j:03d}", pad[y : y + 2 * half, x : x + 2 * half], allowed,
                        "validation" if k % 5 == 0 else "train"))
    return out


def _data_key(source: str, data: Path, dst_mpp: float, side: int) -> str:
    h = hashlib.sha256(json.dumps([source, dst_mpp, side, list(LABELS)]).encode())
    h.update(PREP_VERSION.encode())
    folders = {"pbc": ("pbc", "pbc_maturation", "pbc_train"), "marrow_mll": ("marrow_mll",),
               "bccd": ("bccd",), "junk": (), "synth": ()}[source]
    for f in folders:
        h.update((data / f / "labels.csv" if f != "bccd" else data / f / "counts.csv").read_bytes())
    return h.hexdigest()[:16]


def load_sources(data: str | Path, *, sources=SOURCES, dst_mpp: float, side: int,
                 cache: str | Path | None = None) -> dict[str, CellSet]:
    """Every source as a :class:`CellSet`, from the cache when it holds the same data.

    The cache key covers the list files, the preprocessing code and ``dst_mpp``/``side``
    (the images themselves are taken to be as their lists say: the folders are read-only
    copies of public data)."""
    data = Path(data)
    out: dict[str, Any] = {}
    for src in sources:
        key = _data_key(src, data, dst_mpp, side)
        f = Path(cache) / f"{src}_{key}.npz" if cache else None
        if f is not None and f.is_file():
            z = np.load(f, allow_pickle=False)
            fields = ("crops", "targets", "names", "split", "label", "mpp_est", "ruler")
            out[src] = CellSet(src, *(z[k] for k in fields))
            continue
        log.info("preparing %s", src)
        cs = _build(src, data, dst_mpp, side)
        if f is not None:
            f.parent.mkdir(parents=True, exist_ok=True)
            np.savez(f, crops=cs.crops, targets=cs.targets, names=cs.names, split=cs.split, label=cs.label,
                     mpp_est=cs.mpp_est, ruler=cs.ruler)
        out[src] = cs
    return out
