"""The demo job: a small synthetic archive with ground truth, processed end to end.

:func:`check_out` validates the output folder, :func:`write_demo_slides` writes the
slides, their truth tables and the manifest (reusing slides an earlier demo left), and
:func:`truth_summary` condenses a patient's truth tables into the figures the job
measures. The ``hemoflow demo`` command runs the job between these steps and owns the
console; this module only logs.

>>> sorted(DEMO_PATIENTS)
['DEMO-001', 'DEMO-002', 'DEMO-003']
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hemoflow.errors import OutputNotWritableError

__all__ = ["DEMO_PATIENTS", "TYPES", "DEMO_MPP", "DemoSlides", "check_out", "write_demo_slides", "truth_summary",
           "write_demo_report"]

log = logging.getLogger(__name__)

DEMO_PATIENTS = {
    # patient id: (description, WBC mix of the generator)
    "DEMO-001": ("normal differential",
                 {"neutrophil": 0.56, "lymphocyte": 0.32, "monocyte": 0.07, "eosinophil": 0.04, "basophil": 0.01}),
    "DEMO-002": ("lymphocytosis",
                 {"neutrophil": 0.30, "lymphocyte": 0.60, "monocyte": 0.06, "eosinophil": 0.03, "basophil": 0.01}),
    "DEMO-003": ("blast excess (leukaemia-like)",
                 {"neutrophil": 0.34, "lymphocyte": 0.22, "monocyte": 0.05, "eosinophil": 0.03, "basophil": 0.01,
                  "blast": 0.35}),
}
#: WBC types the demo's table shows, in column order.
TYPES = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil", "blast")
#: Pixel size of the demo slides (µm/px), written into their OME metadata.
DEMO_MPP = 0.25
_FIRST_SEED = 1001


@dataclass
class DemoSlides:
    """What :func:`write_demo_slides` left on disk.

    Attributes
    ----------
    manifest : Path
        The job manifest (``manifest.csv`` in the output folder).
    truth : dict
        Patient id -> list of the truth tables of its slides (column -> array).
    seconds : float
        Time spent writing (or checking) the slides.
    written, reused : int
        Slides generated now, and slides of an earlier demo reused as they were.
    """

    manifest: Path
    truth: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    seconds: float = 0.0
    written: int = 0
    reused: int = 0


def check_out(out: str | os.PathLike) -> Path:
    """Return ``out`` as an absolute path after checking it can hold the demo.

    Raises
    ------
    OutputNotWritableError
        ``out`` is an existing file, or a folder that cannot be created or written.
    """
    from hemoflow.io import storage

    p = Path(out).expanduser().resolve()
    if p.exists() and not p.is_dir():
        raise OutputNotWritableError(f"{p}: exists and is not a folder; give --out a new or existing folder")
    storage.check_writable(str(p))
    try:
        (p / "slides_in").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputNotWritableError(f"{p}: cannot create the output folder ({e.strerror or type(e).__name__})") from None
    return p


def write_demo_slides(out: Path, *, size: int = 8000, slides_per_patient: int = 2,
                      progress: Callable[[int, int, Path, bool], None] | None = None) -> DemoSlides:
    """Write the demo slides, their truth tables and ``manifest.csv`` under ``out``.

    Slides go to ``out/slides_in/<patient>-S<k>.ome.tif`` with ``<...>.truth.csv`` beside
    them. A slide an earlier demo of the same ``size`` left complete is reused.
    ``progress(done, total, path, reused)`` is called after each slide.
    """
    import pandas as pd

    from hemoflow import synth

    t0 = time.perf_counter()
    slides_dir = out / "slides_in"
    slides_dir.mkdir(parents=True, exist_ok=True)
    total = len(DEMO_PATIENTS) * slides_per_patient
    res = DemoSlides(manifest=out / "manifest.csv")
    rows = []
    seed = _FIRST_SEED
    for pid, (_desc, mix) in DEMO_PATIENTS.items():
        for k in range(slides_per_patient):
            path = slides_dir / f"{pid}-S{k + 1}.ome.tif"
            truth_csv = slides_dir / f"{pid}-S{k + 1}.truth.csv"
            table = _reuse_truth(path, truth_csv, size)
            reused = table is not None
            if table is None:
                table = synth.write_synthetic_slide(path, shape=(size, size), mpp=DEMO_MPP, seed=seed, wbc_mix=mix)
                synth.write_truth(truth_csv, table)
            seed += 1
            res.written += not reused
            res.reused += reused
            res.truth.setdefault(pid, []).append(table)
            rows.append({"slide": str(path), "patient_id": pid, "specimen": "peripheral_blood", "mpp": ""})
            if progress is not None:
                progress(len(rows), total, path, reused)
    pd.DataFrame(rows).to_csv(res.manifest, index=False)
    res.seconds = time.perf_counter() - t0
    return res


def _reuse_truth(path: Path, truth_csv: Path, size: int) -> dict[str, np.ndarray] | None:
    """The truth table of an already generated demo slide of the right size, else None."""
    if not (path.exists() and truth_csv.exists()):
        return None
    import pandas as pd
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            if tuple(tf.series[0].shape[:2]) != (size, size):
                return None
        df = pd.read_csv(truth_csv, keep_default_na=False)
    except Exception as exc:  # a half-written slide of an interrupted demo: write it again
        log.info("regenerating %s: %s", path.name, exc)
        return None
    return {c: df[c].to_numpy() for c in df.columns}


def truth_summary(tables: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Counts and differential (% of WBCs per type in :data:`TYPES`) of a patient's truth."""
    cls = np.concatenate([np.asarray(t["cls"]) for t in tables])
    typ = np.concatenate([np.asarray(t["type"]) for t in tables])
    wbc = int((cls == "wbc").sum())
    return {
        "wbc": wbc, "rbc": int((cls == "rbc").sum()), "platelets": int((cls == "platelet").sum()),
        "diff": {t: 100.0 * float((typ == t).sum()) / max(1, wbc) for t in TYPES},
    }


def write_demo_report(out: Path) -> Path | None:
    """Write the HTML report of the finished demo job to ``out/report``; return its index.

    The report is an extra (the job's outputs are already written), so a failure is
    logged and None returned.
    """
    from hemoflow.report.html import write_report_from_results

    try:
        paths = write_report_from_results(str(out), out / "report")
    except Exception as exc:
        log.warning("report not written: %s", exc)
        return None
    index = [p for p in paths if Path(p).name == "index.html"]
    return Path(index[0]) if index else (Path(paths[0]) if paths else out / "report")
