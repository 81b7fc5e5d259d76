"""Count and describe the cells of one microscope field (the ``hemoflow analyze`` path).

>>> import numpy as np
>>> from hemoflow.analyze import analyze_image
>>> analyze_image(np.full((64, 64, 3), 230, np.uint8), mpp=0.25)["wbc"]
0
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hemoflow.errors import HemoflowError
from hemoflow.io.validate import read_rgb8
from hemoflow.stages import CropSpec, SegmentParams, analyze_field, calibrate
from hemoflow.stages.features import rbc_count

__all__ = ["read_image", "analyze_image", "estimate_shared_mpp"]

def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a JPEG / PNG / TIFF field as ``uint8[H, W, 3]`` (first page for TIFF).

    The reader of every command (:func:`hemoflow.io.validate.read_rgb8`): errors start
    with the path.

    Raises
    ------
    SlideNotFoundError
        ``path`` does not exist.
    SlideReadError
        The file exists but cannot be decoded.
    UnsupportedImageError
        The image is not 8-bit RGB (greyscale, 16-bit, ...).
    """
    return read_rgb8(path)


def estimate_shared_mpp(images, *, params: SegmentParams = SegmentParams()) -> tuple[float, int]:
    """One pixel size for fields taken with one microscope: the median of the per-field
    estimates (each from the field's typical RBC diameter, ``params.rbc_diameter_um``).

    A single field holds a few dozen red cells, many of them touching, so its own estimate
    scatters by about 15 % (BCCD: 0.032-0.128 µm/px for fields whose annotated RBC sizes
    agree within 5 %); the median over a batch removes that scatter.

    Parameters
    ----------
    images : iterable of paths or uint8[H, W, 3] arrays
        Read one at a time; fields where no isolated RBC can be measured are skipped.

    Returns
    -------
    (mpp, n) : the median estimate and how many fields it came from.

    Raises
    ------
    HemoflowError
        No field gave an estimate.
    """
    est = []
    for image in images:
        try:  # a bad image is skipped here; the caller reports it when it analyses the image
            arr = read_image(image) if isinstance(image, (str, os.PathLike)) else image
            est.append(calibrate(arr, params=params).mpp)
        except HemoflowError:
            continue
    if not est:
        raise HemoflowError("cannot estimate a pixel size: no field has a measurable red cell; pass mpp")
    return float(np.median(est)), len(est)


def analyze_image(
    image,
    *,
    mpp: float | None = None,
    params: SegmentParams = SegmentParams(),
    classifier: Any = None,
    crop: CropSpec | None = None,
    name: str | None = None,
    tta: bool = False,
    density_weights: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Analyse one field and return counts plus one record per cell.

    Parameters
    ----------
    image : path or uint8[H, W, 3] array
        JPEG / PNG / TIFF file, or an RGB array.
    mpp : float, optional
        Pixel size in µm; None estimates it from the RBC size (``mpp_estimated`` True).
    params : SegmentParams
    classifier : object, optional
        Anything with ``.predict(crops) -> (labels, probs)``; its ``.io.input_size`` and
        ``.io.mpp`` (when present) set the crop geometry. None: cells carry no WBC type.
    crop : CropSpec, optional
        Overrides the crop geometry.
    name : str, optional
        Name reported as ``"image"`` (default: the file stem, or ``"array"``).
    tta : bool
        Classify WBCs with test-time augmentation (``classifier.predict(crops, tta=True)``:
        the softmax averaged over 8 flips and quarter turns). Off by default, as in the
        tiled pipeline, so both give the same types.
    density_weights : path, optional
        Red-cell density weights instead of the shipped ones (evaluation only, e.g. the
        cross-validation fold network that did not see this field).

    Returns
    -------
    dict
        ``{"image", "wbc", "rbc", "rbc_cells", "platelets", "mpp", "mpp_estimated", "cells": [...]}``;
        ``rbc`` is the red-cell count (the rounded sum of the RBC rows' ``count_weight``:
        the red-cell density summed over the field outside WBCs), ``rbc_cells`` the number
        of RBC records;
        each cell has ``cls, y, x, area_um2, circularity, solidity, irregular,
        count_weight`` and, with a
        classifier, ``wbc_type`` and ``wbc_confidence`` on WBCs.
    """
    if isinstance(image, (str, os.PathLike)):
        arr = read_image(image)
        name = name or Path(image).stem
    else:
        arr = image
        name = name or "array"
    if crop is None:
        io = getattr(classifier, "io", None)
        if io is not None and hasattr(io, "input_size") and hasattr(io, "mpp"):
            crop = CropSpec(size=int(io.input_size), mpp=float(io.mpp))
        else:
            crop = CropSpec()
    res = analyze_field(arr, mpp=mpp, params=params, crop=crop, density_weights=density_weights)
    t = res.table
    cls = t["cls"]
    wbc_types: dict[int, dict[str, Any]] = {}
    if classifier is not None and len(res.crops):
        from hemoflow.classify.taxonomy import LABELS, group_of

        labels, probs = classifier.predict(res.crops, tta=True) if tta else classifier.predict(res.crops)
        probs = np.asarray(probs)
        classes = list(getattr(getattr(classifier, "io", None), "classes", ()))
        blast = classes.index("blast") if "blast" in classes else None
        rows = np.flatnonzero(cls == "wbc")
        for k, r in enumerate(rows):
            lab = str(labels[k])
            wbc_types[int(r)] = {"wbc_type": lab, "wbc_confidence": float(np.max(probs[k])),
                                 "group": group_of(lab) if lab in LABELS else lab,
                                 "p_blast": float(probs[k, blast]) if blast is not None else 0.0}
    cells = []
    for i in range(len(cls)):
        rec = {
            "cls": str(cls[i]),
            "y": float(t["y"][i]),
            "x": float(t["x"][i]),
            "area_um2": float(t["area_um2"][i]),
            "circularity": float(t["circularity"][i]),
            "solidity": float(t["solidity"][i]),
            "irregular": bool(t["irregular"][i]),
            "count_weight": float(t["count_weight"][i]),
        }
        if i in wbc_types:
            rec.update(wbc_types[i])
        cells.append(rec)
    return {
        "image": name,
        "wbc": int(np.sum(cls == "wbc")),
        "rbc": rbc_count(t),
        "rbc_cells": int(np.sum(cls == "rbc")),
        "platelets": int(np.sum(cls == "platelet")),
        "mpp": float(res.mpp),
        "mpp_estimated": bool(res.mpp_estimated),
        "cells": cells,
    }
