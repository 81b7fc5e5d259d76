"""Self-contained HTML report: one page per patient plus an index.

Every page stands alone: images are inlined as ``data:image/png;base64`` URIs, plots are
inline SVG, styles are inline; nothing is fetched from the network, so a page can be
mailed or archived as one file.

A patient page shows, in this order: the research-use notice; the review section, what
a haematologist checks first (:mod:`hemoflow.report.gallery`: blast review, IG %, band %,
not-identifiable cells, bone-marrow M:E ratio and maturation table, and the gallery of
blast and uncertain-cell crops); the flags explained in plain words; counts and ratios;
the differential, blast % and immature fraction with their 95 % intervals drawn against
the reference bands and the 20 % cut-off; RBC/WBC/platelet morphology; the RBC size
histogram; and a QC thumbnail of each slide with every detected cell outlined in its
class colour.

Pseudonymisation: with ``pseudonymize_key``, patient ids are replaced everywhere (page
text, file names) by :func:`pseudonymize`, and slide names by the same keyed hash with an
``"S-"`` prefix, since slide file names often carry identifiers.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from hemoflow.errors import HemoflowError, OutputNotWritableError
from hemoflow.pseudonym import pseudonymize
from hemoflow.report.gallery import read_review_crops, review_notes, review_section, review_sentences
from hemoflow.report.overlays import CLASS_COLORS, draw_cells, to_png_bytes
from hemoflow.report.slide_status import excluded_section, status_index_row, status_only_body
from hemoflow.report.svg import FLAG_COLORS, IntervalRow, histogram_plot, interval_plot
from hemoflow.stats.reference import explain_cutoff_flag, explain_range_flag

__all__ = ["write_report", "write_report_from_results", "pseudonymize", "RESEARCH_USE_NOTICE"]

log = logging.getLogger(__name__)

RESEARCH_USE_NOTICE = (
    "For research use only. hemoflow is not a medical device: these automated results "
    "have not been reviewed by a specialist and must not be used for diagnosis or "
    "treatment decisions."
)

_THUMB_MAX_SIDE = 1100

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1000px;margin:0 auto;padding:16px 24px 40px;background:#fff}
h1{font-size:1.5em;margin:.4em 0}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:1.6em}
.notice{background:#fff3cd;border:2px solid #e0a800;padding:10px 14px;font-weight:600;border-radius:4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child,td.t,th.t{text-align:left}a{white-space:nowrap}
.flag{display:inline-block;padding:1px 7px;border-radius:9px;color:#fff;font-size:.85em}
ul.flags li{margin:4px 0}.muted{color:#666}.legend span{display:inline-block;margin-right:14px}
.swatch{display:inline-block;width:12px;height:12px;border:2px solid;margin-right:4px;vertical-align:middle}
figure{margin:10px 0}figure img{max-width:100%;border:1px solid #ccc}figcaption{color:#555;font-size:.9em}
footer{margin-top:2em;color:#666;font-size:.85em}
"""


# --------------------------------------------------------------------------- helpers


def _as_list(items: Any) -> list[Mapping[str, Any]]:
    if items is None:
        return []
    if isinstance(items, Mapping):
        return list(items.values())
    return list(items)


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("._")[:64] or "patient"


def _num(v: Any, fmt: str = "{:.1f}", none: str = "–") -> str:
    return none if v is None else fmt.format(v)


def _badge(flag: str) -> str:
    color = FLAG_COLORS.get(flag, "#616161")
    return f'<span class="flag" style="background:{color}">{escape(flag.replace("_", " "))}</span>'


def _settle(d: Mapping[str, Any]) -> str:
    if d["flag"] != "indeterminate":
        return ""
    if d.get("cells_to_resolve") is None:
        return '<span title="the estimate sits on the boundary">n/a</span>'
    return f"{d['cells_to_resolve']:,}"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _page(title: str, body: str, meta: Mapping[str, Any]) -> str:
    made = escape(str(meta.get("created") or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
    extra = "".join(
        f"<br>{escape(str(k))}: {escape(str(v))}" for k, v in meta.items() if k != "created" and v is not None
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>"
        f'<p class="notice" role="note">{escape(RESEARCH_USE_NOTICE)}</p>{body}'
        f"<footer>Generated by hemoflow on {made}.{extra}<br>{escape(RESEARCH_USE_NOTICE)}</footer>"
        "</main></body></html>\n"
    )


# --------------------------------------------------------------------------- sections


def _flag_sentences(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for name, d in s["differential"].items():
        text = explain_range_flag(
            name, d["flag"], percent=d["percent"], ci_low=d["ci_low"], ci_high=d["ci_high"],
            ref_low=d["ref_low"], ref_high=d["ref_high"], n=d["n"], cells_to_resolve=d["cells_to_resolve"],
        )
        out.append((d["flag"], text))
    for key, label in (("blast", "blasts were"), ("immature", "immature cells (blasts and immature granulocytes) were")):
        d = s[key]
        text = explain_cutoff_flag(
            label, d["flag"], percent=d["percent"], ci_low=d["ci_low"], ci_high=d["ci_high"],
            cutoff=d["cutoff"], n=d["n"], cells_to_resolve=d["cells_to_resolve"],
        )
        out.append((d["flag"], text))
    out += review_sentences(s)
    # Abnormal findings first, then undecided, then normal.
    rank = {"high": 0, "low": 0, "above": 0, "review": 0, "indeterminate": 1}
    return sorted(out, key=lambda t: rank.get(t[0], 2))


def _flags_section(s: Mapping[str, Any]) -> str:
    items = "".join(f"<li>{_badge(f)} {escape(t)}</li>" for f, t in _flag_sentences(s))
    return (
        "<h2>Flags in plain words</h2>"
        '<p class="muted">A value is called high or low only when its whole 95 % interval lies '
        "outside the reference range, and normal only when the whole interval lies inside; "
        "otherwise the count is too small to tell (indeterminate).</p>"
        f'<ul class="flags">{items}</ul>'
    )


def _counts_section(s: Mapping[str, Any]) -> str:
    c = s["counts"]
    rows = [
        ("Red cells", f"{c['rbc']:,}"),
        ("White cells (nucleated red cells excluded)", f"{c['wbc']:,}"),
        ("White cells classified (differential count)", f"{c['wbc_classified']:,}"),
        ("White cells not identifiable (outside every percentage)", f"{c.get('wbc_not_identifiable', 0):,}"),
        ("Platelets", f"{c['platelet']:,}"),
        ("Nucleated red cells per 100 WBC", _num(s["nucleated_rbc_per_100_wbc"])),
        ("WBC : RBC ratio", _num(s["wbc_rbc_ratio"], "{:.5f}")),
        ("WBC per 1,000 RBC", _num(s["wbc_per_1000_rbc"], "{:.2f}")),
        ("Platelets per 1,000 RBC", _num(s["platelets_per_1000_rbc"], "{:.1f}")),
    ]
    body = "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in rows)
    return f"<h2>Counts</h2><table>{body}</table>"


def _differential_section(s: Mapping[str, Any]) -> str:
    rows, table = [], []
    for name, d in s["differential"].items():
        rows.append(IntervalRow(name, d["percent"], d["ci_low"], d["ci_high"], d["flag"], d["ref_low"], d["ref_high"]))
        ref = "–" if d["ref_low"] is None else f"{d['ref_low']:g}–{d['ref_high']:g}"
        table.append((name, d, ref))
    for key, label in (("blast", "blast"), ("immature", "immature")):
        d = s[key]
        rows.append(IntervalRow(label, d["percent"], d["ci_low"], d["ci_high"], d["flag"], cutoff=d["cutoff"]))
        table.append((label, d, f"cut-off {d['cutoff']:g}"))
    svg = interval_plot(rows, title="White-cell differential with 95 % intervals")
    trs = "".join(
        f"<tr><td>{escape(n)}</td><td>{d['count']}</td><td>{_num(d['percent'])}</td>"
        f"<td>{_num(d['ci_low'])}–{_num(d['ci_high'])}</td><td>{escape(ref)}</td><td>{_badge(d['flag'])}</td>"
        f"<td>{_settle(d)}</td></tr>"
        for n, d, ref in table
    )
    note = (
        "<p class=\"muted\">Bone-marrow specimen: peripheral-blood reference ranges are not applied.</p>"
        if s["specimen"] == "bone_marrow"
        else ""
    )
    return (
        f"<h2>Differential ({s['counts']['wbc_classified']} classified white cells)</h2>{note}{svg}"
        "<table><tr><th>Class</th><th>Count</th><th>%</th><th>95 % interval</th><th>Reference %</th>"
        "<th>Flag</th><th title='total white cells that would settle the flag if the proportion held'>"
        f"Cells to settle (total)</th></tr>{trs}</table>"
    )


def _morphology_section(s: Mapping[str, Any]) -> str:
    trs = "".join(
        f"<tr><td>{escape(k)}</td><td>{v['n']:,}</td><td>{_num(v['area_um2_mean'])}</td>"
        f"<td>{_num(v['area_um2_sd'])}</td><td>{_num(v['irregular_percent'])}</td></tr>"
        for k, v in s["morphology"].items()
    )
    ri = s["rbc_indices"]
    h = s["rbc_area_histogram"]
    hist = histogram_plot(
        h["edges_um2"], h["counts"], overflow=h["overflow"], title="Red-cell size distribution",
        xlabel="RBC area (µm²)", marker=s["morphology"]["rbc"]["area_um2_mean"], marker_label="mean",
    )
    return (
        "<h2>Morphology</h2><table><tr><th>Class</th><th>n</th><th>Mean area µm²</th><th>SD µm²</th>"
        f"<th>Irregular %</th></tr>{trs}</table>"
        f"<p>Anisocytosis (CV of red-cell area): <b>{_num(ri['anisocytosis_cv_percent'])} %</b>. "
        f"Poikilocytosis (irregular red cells): <b>{_num(ri['poikilocytosis_percent'])} %</b>.</p>{hist}"
    )


def _legend() -> str:
    spans = "".join(
        f'<span><i class="swatch" style="border-color:rgb{c}"></i>{escape(k)}</span>' for k, c in CLASS_COLORS.items()
    )
    return f'<p class="legend">{spans}</p>'


def _thumbnail_figure(
    display: str, thumb: tuple[np.ndarray, float] | None, cells: pd.DataFrame | None, summary: Mapping | None
) -> str:
    counts = ""
    if summary is not None:
        c = summary["counts"]
        counts = f" {c['rbc']:,} red cells, {c['wbc']:,} white cells, {c['platelet']:,} platelets."
    if thumb is None:
        return f"<p>Slide {escape(display)}: no thumbnail.{escape(counts)}</p>"
    rgb, downsample = thumb
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise HemoflowError(f"thumbnail of slide {display!r} must be uint8[H, W, 3], got {rgb.dtype}{list(rgb.shape)}")
    scale = min(1.0, _THUMB_MAX_SIDE / max(rgb.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    ds = float(downsample) / scale
    if cells is not None and len(cells):
        rgb = draw_cells(rgb, cells, downsample=ds)
    uri = _data_uri(to_png_bytes(rgb))
    return (
        f'<figure><img src="{uri}" alt="Slide {escape(display)} with detected cells outlined" '
        f'width="{rgb.shape[1]}" height="{rgb.shape[0]}"><figcaption>Slide {escape(display)}: '
        f"{1 / ds:.3g}× of full resolution.{escape(counts)}</figcaption></figure>"
    )


def _display_names(key: bytes | None) -> tuple[Callable[[Any], str], Callable[[str], str]]:
    """How patient ids and slide names are shown: as given, or as keyed pseudonyms."""

    def show_patient(pid: Any) -> str:
        return pseudonymize(str(pid), key) if key else str(pid)

    def show_slide(name: str) -> str:
        return pseudonymize("slide:" + name, key, prefix="S-") if key else name

    return show_patient, show_slide


def _unique_page_name(display: str, used: set[str]) -> str:
    """File stem for a patient page, distinct from the pages already in ``used`` and from the index."""
    fname = _safe_name(f"patient-{display}")
    while fname + ".html" in used or fname == "index":
        fname += "_"
    used.add(fname + ".html")
    return fname


def _patient_body(
    p: Mapping[str, Any],
    display: str,
    shown: list[str],
    show_slide: Callable[[str], str],
    crops: list[tuple[str, Any]],
    figures: str,
) -> str:
    return (
        f"<h1>Patient {escape(display)}</h1>"
        f"<p>Specimen: <b>{escape(p['specimen'].replace('_', ' '))}</b>. Slides ({len(shown)}): "
        f"{escape(', '.join(shown)) or '–'}. Intervals are exact (Clopper–Pearson) "
        f"{p.get('confidence', 0.95) * 100:g} % binomial intervals on pooled cells of all slides.</p>"
        + excluded_section(p, show_slide)
        + review_section(p, crops)
        + _flags_section(p)
        + _counts_section(p)
        + _differential_section(p)
        + _morphology_section(p)
        + f"<h2>Quality control: detected cells</h2>{_legend()}{figures or '<p>No slides.</p>'}"
    )


def _patient_index_row(page: str, display: str, p: Mapping[str, Any], n_slides: int) -> str:
    notable = [
        f"{k} {d['flag']}" for k, d in p["differential"].items() if d["flag"] in ("high", "low")
    ] + [f"{k} {p[k]['flag']} 20 %" for k in ("blast", "immature") if p[k]["flag"] == "above"]
    notable += review_notes(p)
    undecided = sum(d["flag"] == "indeterminate" for d in p["differential"].values()) + sum(
        p[k]["flag"] == "indeterminate" for k in ("blast", "immature")
    )
    return (
        f'<tr><td><a href="{escape(page)}">{escape(display)}</a></td>'
        f"<td class=\"t\">{escape(p['specimen'].replace('_', ' '))}</td><td>{n_slides}</td>"
        f"<td>{p['counts']['wbc_classified']:,}</td><td>{_num(p['blast']['percent'])}</td>"
        f"<td class=\"t\">{escape('; '.join(notable)) or 'none'}</td><td>{undecided}</td></tr>"
    )


def _index_body(n_patients: int, index_rows: list[str]) -> str:
    return (
        f"<h1>hemoflow report: {n_patients} patient(s)</h1>"
        "<table><tr><th>Patient</th><th class=\"t\">Specimen</th><th>Slides</th><th>WBC classified</th>"
        "<th>Blast %</th><th class=\"t\">Outside reference / above cut-off</th><th>Indeterminate flags</th></tr>"
        + "".join(index_rows)
        + "</table>"
    )


# --------------------------------------------------------------------------- entry point


def write_report(
    results: Mapping[str, Any],
    out_dir: str | Path,
    *,
    thumbnails: Mapping[str, tuple[np.ndarray, float]] | None = None,
    cells: pd.DataFrame | None = None,
    pseudonymize_key: bytes | None = None,
    review_crops: Mapping[str, Mapping[str, np.ndarray] | None] | None = None,
) -> list[Path]:
    """Write one self-contained HTML page per patient and an ``index.html``.

    Parameters
    ----------
    results : mapping
        ``{"patients": [...], "slides": [...], "meta": {...}}``: patient summaries from
        :func:`hemoflow.stats.aggregate.summarize_patient` and slide summaries from
        :func:`~hemoflow.stats.aggregate.summarize_slide` (lists, or mappings whose values
        are summaries); ``meta`` (optional) is shown in the footer (e.g. hemoflow
        version, model hash, ``created``).
    out_dir : path
        Folder for the pages; created if missing.
    thumbnails : mapping, optional
        Slide name -> ``(uint8[H, W, 3] thumbnail, downsample)`` as returned by
        ``ZarrSlide.thumbnail``.
    cells : pandas.DataFrame, optional
        Cell table with a ``slide`` column, for the QC overlays.
    pseudonymize_key : bytes, optional
        Replace patient ids and slide names by keyed pseudonyms (:func:`pseudonymize`).
    review_crops : mapping, optional
        Slide name -> its review crops (:func:`hemoflow.report.gallery.read_review_crops`,
        None where the slide has none), for the review gallery.

    Returns
    -------
    list of Path
        The patient pages in input order, then ``index.html``.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritableError(f"cannot create report folder {out}: {exc}") from exc
    # a patient with no counted slide (all rejected or failed) gets a page saying why
    patients = [p for p in _as_list(results.get("patients")) if "counts" in p or p.get("excluded_slides")]
    slides = {str(s.get("slide")): s for s in _as_list(results.get("slides")) if "counts" in s}
    meta = dict(results.get("meta") or {})
    thumbnails = thumbnails or {}
    by_slide = dict(tuple(cells.groupby(cells["slide"].astype(str)))) if cells is not None and "slide" in cells else {}
    show_patient, show_slide = _display_names(pseudonymize_key)

    written: list[Path] = []
    index_rows = []
    used: set[str] = set()
    for p in patients:
        display = show_patient(p.get("patient_id"))
        path = out / f"{_unique_page_name(display, used)}.html"
        if "counts" not in p:
            path.write_text(_page(f"hemoflow – patient {display}", status_only_body(p, display, show_slide), meta),
                            encoding="utf-8")
            written.append(path)
            index_rows.append(status_index_row(path.name, display, p))
            continue
        slide_names = [str(x) for x in p.get("slides", [])]
        crops = [(show_slide(x), review_crops.get(x)) for x in slide_names] if review_crops is not None else []
        figures = "".join(
            _thumbnail_figure(show_slide(x), thumbnails.get(x), by_slide.get(x), slides.get(x)) for x in slide_names
        )
        body = _patient_body(p, display, [show_slide(x) for x in slide_names], show_slide, crops, figures)
        path.write_text(_page(f"hemoflow – patient {display}", body, meta), encoding="utf-8")
        written.append(path)
        index_rows.append(_patient_index_row(path.name, display, p, len(slide_names)))
    index = out / "index.html"
    index.write_text(_page("hemoflow report", _index_body(len(patients), index_rows), meta), encoding="utf-8")
    written.append(index)
    return written


_OVERLAY_COLUMNS = ["y", "x", "cls", "wbc_type", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]


def write_report_from_results(
    results: str | Path,
    out_dir: str | Path,
    *,
    pseudonymize_key: bytes | None = None,
    storage_options: Mapping[str, Any] | None = None,
    thumbnail_max_pixels: int = 1_000_000,
) -> list[Path]:
    """Write the report of a finished job from its output folder (local or ``s3://``).

    Reads ``patients.json``, ``slides.json`` and ``job.json`` (footer), each slide's
    ``slides/<slide_id>/cells.parquet`` (overlay columns only) and a thumbnail of its
    OME-Zarr image (``slides/<slide_id>/image.ome.zarr``, or the manifest's own ``.zarr``).
    A slide whose cells or image cannot be read is shown without overlay or thumbnail
    (logged); a failed slide has no summary and is left out.

    Returns
    -------
    list of Path
        As :func:`write_report`.
    """
    from hemoflow.io import storage
    from hemoflow.io.omezarr import open_slide

    base = str(results).rstrip("/")
    opts = dict(storage_options) if storage_options else None

    def load(name: str, default: Any) -> Any:
        url = f"{base}/{name}"
        if not storage.exists(url, opts):
            return default
        return json.loads(storage.read_bytes(url, opts))

    patients = load("patients.json", None)
    if patients is None:
        raise HemoflowError(f"no patients.json in {storage.redact(base)!r}: not a hemoflow job output")
    slides = [s for s in load("slides.json", []) if "counts" in s]
    job = load("job.json", {})
    meta = {
        "job": job.get("job_id"),
        "classifier sha256": (job.get("model_sha256") or "")[:16] or None,
        "created": job.get("started"),
    }
    thumbnails: dict[str, tuple[np.ndarray, float]] = {}
    review: dict[str, Any] = {}
    frames = []
    for s in slides:
        name = str(s.get("slide"))
        sid = str(s.get("slide_id") or name)
        review[name] = read_review_crops(f"{base}/slides/{sid}/review_crops.npz", opts)
        try:
            raw = storage.read_bytes(f"{base}/slides/{sid}/cells.parquet", opts)
            df = pd.read_parquet(io.BytesIO(raw))
            df = df[[c for c in _OVERLAY_COLUMNS if c in df.columns]].assign(slide=name)
            frames.append(df)
        except (OSError, ValueError) as exc:
            log.warning("slide %s: no cell overlay (%s)", sid, exc)
        image = f"{base}/slides/{sid}/image.ome.zarr"
        src = str(s.get("source") or "")
        for url in (image, src) if src.rstrip("/").endswith(".zarr") else (image,):
            try:
                thumbnails[name] = open_slide(url, opts).thumbnail(thumbnail_max_pixels)
                break
            except (OSError, ValueError) as exc:
                log.info("slide %s: no thumbnail from %s (%s)", sid, storage.redact(url), exc)
    cells = pd.concat(frames, ignore_index=True) if frames else None
    return write_report(
        {"patients": patients, "slides": slides, "meta": meta},
        out_dir,
        thumbnails=thumbnails,
        cells=cells,
        pseudonymize_key=pseudonymize_key,
        review_crops=review,
    )
