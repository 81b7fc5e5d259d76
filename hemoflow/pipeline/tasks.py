"""The functions Dask runs on workers: prepare a slide, analyse a tile, classify a batch,
finalise a slide, summarise a patient.

Each one is a plain picklable function of plain values; :mod:`hemoflow.pipeline.graph`
is the only module that submits them.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hemoflow.config import JobConfig
from hemoflow.pipeline.ledger import Ledger, slide_key, tile_key, work_key
from hemoflow.pipeline.work import SlideEntry
from hemoflow.pipeline.tiles import (Tile, analyze_window, concat_tables, halo_margin_um, halo_pixels, plan_tiles,
                                    window_align)

log = logging.getLogger(__name__)

__all__ = ["SlidePlan", "TileResult", "prepare_slide", "run_tile", "classify_batch", "finalize_slide"]

# Central region read to estimate the pixel size when neither manifest nor file gives it.
_MPP_PROBE = 2048


@dataclass
class SlidePlan:
    """What a prepared slide needs for its tile tasks (or the reason it failed or was
    rejected by the blood-smear QC gate)."""

    entry: SlideEntry
    status: str  # "ready" | "done" | "failed" | "rejected"
    key: str = ""
    zarr_url: str = ""
    shape: tuple[int, int] = (0, 0)
    mpp: float = float("nan")
    mpp_source: str = ""
    calibration: Any = None
    tiles: list[Tile] = field(default_factory=list)
    error: str = ""
    summary: dict[str, Any] | None = None
    seconds: float = 0.0
    out_url: str = ""  # where tile records go; "" = tiles are not recorded
    work_key: str = ""
    stored_tiles: frozenset = frozenset()  # tile indices with a record when the slide was prepared
    reused_plan: bool = False  # ingest and calibration came from the ledger
    qc: dict[str, Any] | None = None  # QCResult.to_dict() of the smear QC gate; None when it did not run


@dataclass
class TileResult:
    slide_id: str
    tile: int
    table: dict[str, np.ndarray]
    crops: np.ndarray
    seconds: float
    resumed: bool = False  # read back from the ledger, no image work

    @property
    def n_wbc(self) -> int:
        return int(len(self.crops))

    @property
    def n_cells(self) -> int:
        return int(len(self.table.get("y", ()))) if self.table else 0


def _image_url(out_url: str, slide_id: str) -> str:
    return f"{out_url.rstrip('/')}/slides/{slide_id}/image.ome.zarr"


def prepare_slide(
    entry: SlideEntry,
    out_url: str,
    config: JobConfig,
    params: Any,
    crop: Any,
    model_sha: str,
    tile_resume: bool = True,
) -> SlidePlan:
    """Hash, check the ledger, ingest to OME-Zarr, calibrate and plan the tiles of one slide.

    With ``tile_resume`` the prepared plan and every finished tile are recorded in the
    ledger, so a rerun skips ingest and calibration and the tiles already done.

    Never raises for a bad slide: the plan comes back with ``status="failed"`` and the
    reason, so one bad slide does not stop the job.
    """
    from hemoflow import models
    from hemoflow.io import content_hash, storage

    t0 = time.perf_counter()
    try:
        chash = content_hash(entry.slide)
        # The stage models as this worker will load them, and the package version: an
        # upgrade of either recomputes every tile and slide it could change.
        stage_models = models.digest()
        key = slide_key(chash, {"params": params.to_dict(), "crop": _crop_dict(crop), "job": config.to_dict(),
                                "mpp": entry.mpp, "models": stage_models}, model_sha)
        ledger = Ledger(out_url)
        done = ledger.lookup(entry.slide_id, key)
        if done is not None:
            return SlidePlan(entry, "done", key=key, summary=done.get("summary"), seconds=time.perf_counter() - t0)
        wkey = work_key(chash, {"params": params.to_dict(), "crop": _crop_dict(crop), "mpp": entry.mpp,
                                "tile_size": config.tile_size, "halo_um": config.halo_um, "models": stage_models})
        plan = _reuse_plan(ledger, entry, wkey) if tile_resume else None
        if plan is not None:
            plan = _gate_reused(plan, config)
        else:
            plan = _plan_slide(entry, out_url, config, params, crop)
            if tile_resume and plan.status == "ready":
                ledger.record_plan(entry.slide_id, wkey, _plan_record(plan))
        if plan.status == "rejected":
            plan.seconds = time.perf_counter() - t0
            log.info("slide %s rejected by the smear QC gate: %s", entry.slide_id, plan.error)
            return plan
        plan.key, plan.work_key = key, wkey
        if tile_resume:
            plan.out_url = out_url
            # Tile records are written after the plan record of their work key, so a slide
            # prepared afresh has none worth reading (older ones carry other keys).
            plan.stored_tiles = ledger.stored_tiles(entry.slide_id) if plan.reused_plan else frozenset()
        plan.seconds = time.perf_counter() - t0
        return plan
    except Exception as exc:  # one bad slide must not stop the batch
        log.debug("slide %s failed: %s", storage.redact(entry.slide), traceback.format_exc())
        return SlidePlan(entry, "failed", error=f"{type(exc).__name__}: {storage.redact(exc)}",
                         seconds=time.perf_counter() - t0)


def _plan_slide(entry: SlideEntry, out_url: str, config: JobConfig, params: Any, crop: Any) -> SlidePlan:
    """Ingest (unless the slide is already OME-Zarr), find the pixel size, check it is a
    blood smear (``config.smear_qc``), calibrate, tile."""
    from hemoflow.errors import HemoflowError
    from hemoflow.io import ingest, open_slide
    from hemoflow.stages import analyze_field, calibrate

    url = entry.slide
    if not url.rstrip("/").endswith(".zarr"):
        url = _image_url(out_url, entry.slide_id)
        ingest(entry.slide, url, mpp=entry.mpp, chunk=config.chunk, overwrite=True)
    slide = open_slide(url)
    slide.require_rgb8()
    h, w = slide.shape
    mpp = entry.mpp or slide.mpp
    source = "manifest" if entry.mpp else ("file" if slide.mpp else "")
    sample = None
    if not mpp:
        cy, cx = h // 2, w // 2
        r = _MPP_PROBE // 2
        probe = slide.read_region(max(0, cy - r), max(0, cx - r), min(h, cy + r), min(w, cx + r))
        try:
            mpp = analyze_field(probe, mpp=None, params=params, crop=crop).mpp
        except HemoflowError:
            # no red cell to measure: a slide that is no smear gets the gate's reason, not this error
            sample = calibration_sample(slide) if config.smear_qc else None
            qc = smear_qc_dict(sample, None) if sample is not None else None
            if qc is not None and not qc["ok"]:
                return SlidePlan(entry, "rejected", zarr_url=url, shape=(h, w), error=qc["reason"], qc=qc)
            raise
        source = "estimated"
    if sample is None:
        sample = calibration_sample(slide)
    qc = smear_qc_dict(sample, mpp) if config.smear_qc else None
    if qc is not None and not qc["ok"]:
        return SlidePlan(entry, "rejected", zarr_url=url, shape=(h, w), mpp=float(mpp), mpp_source=source,
                         error=qc["reason"], qc=qc)
    calibration = calibrate(sample, params=params, mpp=mpp)
    del sample
    halo = config.halo_um / mpp if config.halo_um else halo_pixels(
        mpp,
        max_cell_diameter_um=params.max_cell_diameter_um,
        margin_um=halo_margin_um(params),
        crop_px=crop.size * crop.mpp / mpp,
    )
    # Windows must start on the working-scale grid so block averaging lines up, and on
    # the red-cell density model's grid (4 working px) so its output does too.
    f = int(calibration.downsample) * window_align(params)
    tiles = plan_tiles((h, w), _round_up(config.tile_size, f), _round_up(int(np.ceil(halo)), f))
    return SlidePlan(entry, "ready", zarr_url=url, shape=(h, w), mpp=float(mpp), mpp_source=source,
                     calibration=calibration, tiles=tiles, qc=qc)


def smear_qc_dict(sample: np.ndarray, mpp: float | None) -> dict[str, Any]:
    """:func:`hemoflow.stages.qc.smear_qc` of a slide's calibration sample, as a dict."""
    from hemoflow.stages.qc import smear_qc

    return smear_qc(sample, mpp=mpp).to_dict()


def _gate_reused(plan: SlidePlan, config: JobConfig) -> SlidePlan:
    """Apply the QC gate to a plan read back from the ledger (run it when the plan was
    made with the gate off)."""
    if not config.smear_qc:
        return plan
    if plan.qc is None:
        from hemoflow.io import open_slide

        plan.qc = smear_qc_dict(calibration_sample(open_slide(plan.zarr_url)), plan.mpp)
    if not plan.qc["ok"]:
        plan.status, plan.error, plan.tiles = "rejected", plan.qc["reason"], []
    return plan


def _plan_record(plan: SlidePlan) -> dict[str, Any]:
    return {"zarr_url": plan.zarr_url, "shape": list(plan.shape), "mpp": plan.mpp, "mpp_source": plan.mpp_source,
            "calibration": plan.calibration.to_dict(), "qc": plan.qc,
            "tiles": [[t.index, t.row, t.col, list(t.core), list(t.window)] for t in plan.tiles]}


def _reuse_plan(ledger: Ledger, entry: SlideEntry, wkey: str) -> SlidePlan | None:
    """The recorded plan of this slide under ``wkey``, if its image is still complete."""
    from hemoflow.io import open_slide
    from hemoflow.stages.field import Calibration

    rec = ledger.lookup_plan(entry.slide_id, wkey)
    if rec is None:
        return None
    try:
        slide = open_slide(rec["zarr_url"])  # refuses a missing or incomplete image
        if tuple(slide.shape) != tuple(rec["shape"]):
            return None
        tiles = [Tile(int(i), int(r), int(c), tuple(core), tuple(win)) for i, r, c, core, win in rec["tiles"]]
        return SlidePlan(entry, "ready", zarr_url=rec["zarr_url"], shape=tuple(rec["shape"]), mpp=float(rec["mpp"]),
                         mpp_source=rec["mpp_source"], calibration=Calibration.from_dict(rec["calibration"]),
                         tiles=tiles, reused_plan=True, qc=rec.get("qc"))
    except Exception as exc:  # image gone or record damaged: prepare again
        log.info("recorded plan of %s not reusable: %s", entry.slide_id, exc)
        return None


def _round_up(v: int, f: int) -> int:
    return int(-(-v // f) * f)


# Calibration reads at most this many level-0 pixels: the whole slide when it is that
# small, else a mosaic of evenly spread level-0 patches.
CALIBRATION_PIXELS = 16_777_216
CALIBRATION_PATCH = 1024


def calibration_sample(slide) -> np.ndarray:
    """Level-0 pixels that represent the slide for calibration, in bounded memory.

    Thresholds are measured at level-0 resolution, never on a downsampled thumbnail:
    block averaging changes the stain histograms, so a threshold found at another scale
    does not carry over (a 4x thumbnail moved the nucleus threshold from 0.08 to 0.17
    and lost pale nuclei). A slide of at most ``CALIBRATION_PIXELS`` is used whole, so a
    field analysed alone and the same field as a slide get the same calibration.
    Otherwise a k x k grid of ``CALIBRATION_PATCH`` patches, centred in k x k equal
    cells of the slide, is joined into one mosaic.
    """
    h, w = slide.shape
    if h * w <= CALIBRATION_PIXELS:
        return slide.read_region(0, 0, h, w)
    p = CALIBRATION_PATCH
    k = max(1, int(np.sqrt(CALIBRATION_PIXELS // (p * p))))
    ph, pw = min(p, h // k), min(p, w // k)
    rows = []
    for i in range(k):
        cy = int((i + 0.5) * h / k)
        row = []
        for j in range(k):
            cx = int((j + 0.5) * w / k)
            y0, x0 = max(0, cy - ph // 2), max(0, cx - pw // 2)
            row.append(slide.read_region(y0, x0, y0 + ph, x0 + pw))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def slide_calibration(slide, mpp: float, params: Any):
    """Calibrate once per slide, on level-0 pixels (see :func:`calibration_sample`)."""
    from hemoflow.stages import calibrate

    return calibrate(calibration_sample(slide), params=params, mpp=mpp)


def _crop_dict(crop: Any) -> dict[str, Any]:
    return {"size": crop.size, "mpp": crop.mpp}


@functools.lru_cache(maxsize=8)
def _open_slide_cached(url: str, key: str = ""):
    """Open each slide once per worker process, not once per tile (``key`` ties the cached
    handle to the slide's content, so a re-ingested image is opened afresh)."""
    from hemoflow.io import open_slide

    return open_slide(url)


def run_tile(plan: SlidePlan, tile: Tile, params: Any, crop: Any) -> TileResult:
    """Read one tile's window from the slide's Zarr and analyse it (owned cells only)."""
    t0 = time.perf_counter()
    sid = plan.entry.slide_id
    ledger = Ledger(plan.out_url) if plan.out_url else None
    key = tile_key(plan.work_key, tile.index, tile.window) if ledger else ""
    if ledger is not None and tile.index in plan.stored_tiles:
        rec = ledger.lookup_tile(sid, tile.index, key)
        if rec is not None:
            return TileResult(sid, tile.index, rec[0], rec[1], time.perf_counter() - t0, resumed=True)
    slide = _open_slide_cached(plan.zarr_url, plan.key)
    window = slide.read_region(*tile.window, interleave=False)  # planar: the stages read it in place
    table, crops = analyze_window(window, tile, mpp=plan.mpp, calibration=plan.calibration, params=params, crop=crop)
    seconds = time.perf_counter() - t0
    if ledger is not None:
        ledger.record_tile(sid, tile.index, key, table, crops)
    return TileResult(sid, tile.index, table, crops, seconds)


def classify_batch(tiles: list[TileResult], batch_size: int, model_path: str | None = None,
                   tta: bool = False) -> dict[str, Any]:
    """Classify the WBC crops of several tiles (of any slides) in large batches
    (``tta``: test-time augmentation, see :meth:`WbcClassifier.predict`).

    Returns ``{"labels": [per tile array], "confidence": [...], "group": [...], "p_blast": [...], "worker": address,
    "n": crops classified, "seconds": ...}``.
    """
    from hemoflow.classify.infer import crop_columns, get_worker_model

    t0 = time.perf_counter()
    sizes = [t.n_wbc for t in tiles]
    crops = [t.crops for t in tiles if t.n_wbc]
    cols: dict[str, np.ndarray] = {"wbc_type": np.zeros(0, object), "wbc_confidence": np.zeros(0, np.float32),
                                   "group": np.zeros(0, object), "p_blast": np.zeros(0, np.float32)}
    if crops:
        batch = np.concatenate(crops)
        model = get_worker_model(model_path) if model_path else None
        cols = crop_columns(batch, model=model, batch_size=batch_size, tta=tta)
    per_tile: dict[str, list[np.ndarray]] = {k: [] for k in cols}
    i = 0
    for n in sizes:
        for k, v in cols.items():
            per_tile[k].append(v[i : i + n])
        i += n
    return {"labels": per_tile["wbc_type"], "confidence": per_tile["wbc_confidence"], "group": per_tile["group"],
            "p_blast": per_tile["p_blast"], "worker": _worker_address(), "n": int(sum(sizes)),
            "n_cells": int(sum(t.n_cells for t in tiles)), "n_tiles": len(tiles),
            "n_resumed": int(sum(t.resumed for t in tiles)), "seconds": time.perf_counter() - t0}


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:
        return "local"


def finalize_slide(plan: SlidePlan, tiles: list[TileResult], labels: list[tuple[dict[str, Any], int]], out_url: str):
    """Join tiles and labels into the slide's cell table, write ``cells.parquet``, summarise
    the slide, and record it in the ledger (last).

    Returns ``{"cells": DataFrame, "summary": dict}``.
    """
    import pandas as pd

    from hemoflow.io import storage
    from hemoflow.report.gallery import write_review_crops

    order = sorted(range(len(tiles)), key=lambda i: tiles[i].tile)
    tables, types, confs, groups, pblast = [], [], [], [], []
    for i in order:
        t = tiles[i]
        batch, pos = labels[i]
        tables.append(t.table)
        n = t.n_cells
        wt, wg = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
        wc, wp = np.full(n, np.nan), np.full(n, np.nan)
        if t.n_wbc:
            is_wbc = np.asarray(t.table["cls"]) == "wbc"
            wt[is_wbc] = batch["labels"][pos]
            wc[is_wbc] = batch["confidence"][pos]
            wg[is_wbc] = batch["group"][pos]
            wp[is_wbc] = batch["p_blast"][pos]
        types.append(wt)
        confs.append(wc)
        groups.append(wg)
        pblast.append(wp)
    table = concat_tables(tables)
    df = pd.DataFrame({k: v for k, v in table.items()})
    if len(df):
        df["wbc_type"] = np.concatenate(types).astype(str)
        df["wbc_confidence"] = np.concatenate(confs)
        df["group"] = np.concatenate(groups).astype(str)
        df["p_blast"] = np.concatenate(pblast)
    else:
        df = _empty_cells()
    df.insert(0, "slide", plan.entry.slide_id)
    df.insert(1, "patient_id", plan.entry.patient_id)
    df["y_um"] = df["y"] * plan.mpp
    df["x_um"] = df["x"] * plan.mpp
    base = f"{out_url.rstrip('/')}/slides/{plan.entry.slide_id}"
    # before sorting: the wbc rows are still in the order of the tiles' crops
    write_review_crops(f"{base}/review_crops.npz", df, [tiles[i].crops for i in order])
    df = df.sort_values(["y", "x"], kind="stable").reset_index(drop=True)
    storage.atomic_write_bytes(f"{base}/cells.parquet", _parquet_bytes(df))
    write_viewer_outputs(plan, df, base)
    summary = slide_summary(plan, df, tiles)
    Ledger(out_url).record(plan.entry.slide_id, plan.key, summary)
    return {"cells": df, "summary": summary}


# Label images beside the slide are written at a power-of-two downsample that keeps them
# at or under this many pixels (uint32), so a whole-slide label stays cheap.
LABEL_MAX_PIXELS = 16_000_000


def write_viewer_outputs(plan: SlidePlan, df, base: str) -> None:
    """GeoJSON detections for QuPath, and NGFF labels beside the image for napari."""
    import json

    from hemoflow.io import storage
    from hemoflow.report.geojson import cells_to_geojson
    from hemoflow.io.labels import write_points_labels

    fc = cells_to_geojson(df, mpp=plan.mpp)
    storage.atomic_write_bytes(f"{base}/cells.geojson", json.dumps(fc, separators=(",", ":")).encode())
    if plan.zarr_url.startswith(base):  # only into images this job ingested, never a user's input
        h, w = plan.shape
        ds = 1
        while (h // ds) * (w // ds) > LABEL_MAX_PIXELS:
            ds *= 2
        write_points_labels(plan.zarr_url, df, (h, w), mpp=plan.mpp, downsample=ds)


def _redact(url: str) -> str:
    from hemoflow.io import storage

    return storage.redact(url)


def slide_summary(plan: SlidePlan, df, tiles: list[TileResult]) -> dict[str, Any]:
    from hemoflow.stats.aggregate import summarize_slide

    e = plan.entry
    head = {
        "slide_id": e.slide_id,
        "source": None if e.private else _redact(e.slide),
        "image": plan.zarr_url,
        "patient_id": e.patient_id,
        "specimen": e.specimen,
        "status": "ok",
        "mpp": plan.mpp,
        "mpp_source": plan.mpp_source,
        "shape": list(plan.shape),
        "n_tiles": len(plan.tiles),
        "tile_seconds": float(sum(t.seconds for t in tiles)),
    }
    if plan.qc is not None:
        head["qc"] = plan.qc
    return {**head, **summarize_slide(df, specimen=e.specimen, slide=e.slide_id, patient_id=e.patient_id)}


def summarize_patient_cells(patient_id: str, specimen: str, cells: list, slide_ids: list[str]) -> dict[str, Any]:
    """Pool a patient's slides and summarise them."""
    import pandas as pd

    from hemoflow.stats.aggregate import summarize_patient

    frames = [c for c in cells if c is not None and len(c)]
    df = pd.concat(frames, ignore_index=True) if frames else _empty_cells()
    return {"patient_id": patient_id, "specimen": specimen, "slides": slide_ids,
            **summarize_patient(df, specimen=specimen, patient_id=patient_id)}


def _empty_cells():
    import pandas as pd

    from hemoflow.schema import CELL_COLUMNS, CLASS_COLUMNS

    cols = {**CELL_COLUMNS, **CLASS_COLUMNS}
    return pd.DataFrame({k: pd.Series([], dtype=("object" if v == "U" else v)) for k, v in cols.items()})


def _parquet_bytes(df) -> bytes:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def read_cells(out_url: str, slide_id: str):
    """Read a finished slide's ``cells.parquet`` back as a DataFrame."""
    import io

    import pandas as pd

    from hemoflow.io import storage

    return pd.read_parquet(io.BytesIO(storage.read_bytes(f"{out_url.rstrip('/')}/slides/{slide_id}/cells.parquet")))
