"""The review part of a patient page: clinical indices and the gallery of cells to check.

A haematologist checks the blasts and the cells the model could not place first, so the
pipeline keeps their crops and the report shows them, most blast-like first.

Which cells (:func:`review_candidates`)
---------------------------------------
White-cell rows (``cls == "wbc"``) that are any of:

- labelled ``blast``;
- ``not_identifiable`` (the reject class or the classifier's confidence rule);
- classified with a confidence below :data:`UNCERTAIN_BELOW`;
- given ``p_blast`` of at least :data:`BLAST_LIKE_FROM` whatever their label.

Order (:func:`review_order`)
----------------------------
By blast-likeness, highest first (:func:`hemoflow.stats.clinical.blast_likeness`:
``p_blast``, or the confidence of a cell labelled ``blast`` where the table has no
``p_blast``); cells without one follow, least confident first; ties by slide and position.
The order is total, so the best :data:`GALLERY_MAX` cells of each slide contain the best
of the patient.

Where the crops live
--------------------
The tile tasks cut a 96×96 crop of every white cell (``TileResult.crops``, also in the
ledger's ``tiles/<index>.npz``). When a slide is finalised, :func:`write_review_crops` keeps
the crops of its best :data:`GALLERY_MAX` candidates, with their labels and scores, in
``slides/<slide_id>/review_crops.npz`` (about a megabyte at most), so the report needs no
tile record and no pass over the image. A page shows at most :data:`GALLERY_MAX` crops per
patient, as PNG data URIs, and says how many candidates it left out.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from hemoflow.classify.taxonomy import REJECT
from hemoflow.errors import HemoflowError
from hemoflow.report.overlays import to_png_bytes
from hemoflow.report.svg import FLAG_COLORS
from hemoflow.stats.clinical import blast_likeness, cell_labels
from hemoflow.stats.reference import BAND_RANGE, IG_RANGE, explain_range_flag

__all__ = [
    "GALLERY_MAX",
    "UNCERTAIN_BELOW",
    "BLAST_LIKE_FROM",
    "review_candidates",
    "review_order",
    "review_record",
    "write_review_crops",
    "read_review_crops",
    "review_section",
    "review_notes",
    "review_sentences",
]

log = logging.getLogger(__name__)

#: Most crops shown per patient (and kept per slide).
GALLERY_MAX = 48
#: A classified cell below this confidence is uncertain.
UNCERTAIN_BELOW = 0.6
#: A cell with at least this ``p_blast`` is shown whatever its label.
BLAST_LIKE_FROM = 0.2

_FIELDS = ("y", "x", "label", "confidence", "p_blast", "likeness")


def review_candidates(labels: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the cells to review, from :func:`~hemoflow.stats.clinical.cell_labels`."""
    label = labels["label"].to_numpy(dtype=str)
    group = labels["group"].to_numpy(dtype=str)
    conf = labels["confidence"].to_numpy(dtype=np.float64)
    p_blast = labels["p_blast"].to_numpy(dtype=np.float64)
    classified = group != ""
    with np.errstate(invalid="ignore"):
        return classified & ((label == "blast") | (group == REJECT) | (conf < UNCERTAIN_BELOW)
                             | (p_blast >= BLAST_LIKE_FROM))


def review_order(table: pd.DataFrame) -> np.ndarray:
    """Row positions of ``table`` in gallery order.

    ``table`` has ``likeness`` and ``confidence`` (NaN allowed), and optionally ``slide``,
    ``y`` and ``x`` for the ties.
    """
    n = len(table)
    like = table["likeness"].to_numpy(dtype=np.float64)
    conf = table["confidence"].to_numpy(dtype=np.float64)
    keys = [np.arange(n)]
    for name in ("x", "y", "slide"):  # least significant first, for np.lexsort
        if name in table.columns:
            col = table[name].to_numpy()
            keys.append(pd.factorize(col, sort=True)[0] if col.dtype == object else col)
    keys += [np.where(np.isfinite(conf), conf, np.inf), np.where(np.isfinite(like), -like, np.inf)]
    return np.lexsort(keys)


def review_record(cells: pd.DataFrame, crops: np.ndarray, *, limit: int = GALLERY_MAX) -> dict[str, np.ndarray]:
    """The best ``limit`` review candidates of one slide, with their crops.

    Parameters
    ----------
    cells : pandas.DataFrame
        The slide's cell table with its ``wbc`` rows in crop order (as the tiles produced
        them, before any sorting).
    crops : ndarray of uint8, shape (n_wbc, S, S, 3)
        ``crops[i]`` is the crop of the i-th ``wbc`` row.

    Returns
    -------
    dict of ndarray
        ``crops`` and the columns ``y``, ``x``, ``label``, ``confidence``, ``p_blast``,
        ``likeness`` of the kept cells in gallery order, and ``n_candidates`` (0-d): how
        many cells of the slide qualified.
    """
    crops = np.asarray(crops)
    wbc = cells["cls"].astype(str).to_numpy() == "wbc"
    if crops.ndim != 4 or crops.shape[0] != int(wbc.sum()) or crops.shape[-1] != 3 or crops.dtype != np.uint8:
        raise HemoflowError(
            f"need one uint8 RGB crop per wbc row ({int(wbc.sum())}), got {crops.dtype}{list(crops.shape)}"
        )
    lab = cell_labels(cells[wbc])
    table = pd.DataFrame({
        "y": pd.to_numeric(cells.loc[wbc, "y"], errors="coerce").to_numpy(np.float64) if "y" in cells else np.nan,
        "x": pd.to_numeric(cells.loc[wbc, "x"], errors="coerce").to_numpy(np.float64) if "x" in cells else np.nan,
        "label": np.where(lab["label"] != "", lab["label"], lab["group"]),
        "confidence": lab["confidence"].to_numpy(), "p_blast": lab["p_blast"].to_numpy(),
        "likeness": blast_likeness(lab),
    })
    keep = np.flatnonzero(review_candidates(lab))
    pick = keep[review_order(table.iloc[keep])[: max(0, int(limit))]]
    out = {name: table[name].to_numpy()[pick] for name in _FIELDS}
    out["label"] = out["label"].astype(str)
    out["crops"] = np.ascontiguousarray(crops[pick]) if len(pick) else np.zeros((0, *crops.shape[1:]), np.uint8)
    out["n_candidates"] = np.array(len(keep))
    return out


def write_review_crops(url: str, cells: pd.DataFrame, crops: Sequence[np.ndarray] | np.ndarray) -> None:
    """Write :func:`review_record` of one slide to ``url`` (``.npz``, one object).

    ``crops`` may be the per-tile crop arrays, in the order of the tiles' rows in ``cells``.
    """
    from hemoflow.io import storage

    if isinstance(crops, np.ndarray):
        stack = crops
    else:
        parts = [np.asarray(c) for c in crops if len(c)]
        stack = np.concatenate(parts) if parts else np.zeros((0, 96, 96, 3), np.uint8)
    rec = review_record(cells, stack)
    buf = io.BytesIO()
    np.savez_compressed(buf, **rec)
    storage.atomic_write_bytes(url, buf.getvalue())


def read_review_crops(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, np.ndarray] | None:
    """The record written by :func:`write_review_crops`, or None if missing or unreadable."""
    from hemoflow.io import storage

    try:
        data = storage.read_bytes(url, storage_options)
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError) as exc:
        log.info("no review crops at %s (%s)", storage.redact(url), exc)
        return None


# --------------------------------------------------------------------------- HTML


def _pct(v: Any) -> str:
    return "–" if v is None else f"{v:.1f}"


def _badge(flag: str) -> str:
    color = FLAG_COLORS.get(flag, "#616161")
    return f'<span class="flag" style="background:{color}">{escape(flag.replace("_", " "))}</span>'


def _row(name: str, d: Mapping[str, Any] | None, limit: str = "", flag: str | None = None) -> str:
    if not d:
        return ""
    count = "–" if d.get("count") is None else str(d["count"])
    ci = f"{_pct(d.get('ci_low'))}–{_pct(d.get('ci_high'))}" if d.get("percent") is not None else "–"
    flag = flag if flag is not None else d.get("flag", "")
    limit = "–" if flag == "not_applicable" else limit  # e.g. blood limits on a marrow page
    return (f"<tr><td>{escape(name)}</td><td>{count}</td><td>{d.get('n', 0)}</td><td>{_pct(d.get('percent'))}</td>"
            f"<td>{ci}</td><td class=\"t\">{escape(limit)}</td><td>{_badge(flag) if flag else ''}</td></tr>")


def _indices_table(s: Mapping[str, Any]) -> str:
    b = s.get("blast") or {}
    rows = [_row("blast (of identified WBC)", b, f"cut-off {b.get('cutoff', 20):g} %")]
    if "review" in b:
        rows.append(_row("blast review (confident blasts)", {"count": b["confident_count"], "n": b.get("n", 0)},
                         f"≥ {b['review_min_cells']} blast(s) at p ≥ {b['review_min_confidence']:g}", b["review"]))
    for key, name in (("ig", "immature granulocytes"), ("band", "band neutrophils (left shift)")):
        d = s.get(key)
        if d:
            rows.append(_row(name, d, f"≤ {d['ref_high']:g} %"))
    rows.append(_row("not identifiable (of all WBC)", s.get("not_identifiable"), "counted apart", ""))
    note = ""
    band = s.get("band")
    if band and not band.get("staged", True):
        note = '<p class="muted">Band %: the classifier gave no neutrophil stages, so it is unavailable.</p>'
    return ("<table><tr><th>Index</th><th>Count</th><th>Of</th><th>%</th><th>95 % interval</th>"
            f"<th class=\"t\">Limit</th><th>Flag</th></tr>{''.join(rows)}</table>{note}")


def _marrow_block(m: Mapping[str, Any] | None) -> str:
    if not m:
        return ""
    me = m["me_ratio"]
    ratio = "unbounded" if me["ratio"] is None and me["myeloid"] else (
        "–" if me["ratio"] is None else f"{me['ratio']:.2f}")
    high = "∞" if me["ci_high"] is None else f"{me['ci_high']:.2f}"
    ci = "–" if me["ci_low"] is None else f"{me['ci_low']:.2f}–{high}"
    parts = [f"<h3>Bone marrow</h3><p>M:E ratio <b>{escape(ratio)}</b> (95 % interval {escape(ci)}; "
             f"{me['myeloid']} myeloid / {me['erythroid']} erythroid cells)"
             + (f": {escape(me['note'])}" if me.get("note") else "") + ".</p>"]
    if m["stages_available"]:
        trs = "".join(f"<tr><td>{escape(k.replace('_', ' '))}</td><td>{v['count']}</td><td>{_pct(v['percent'])}</td>"
                      f"<td>{_pct(v['ci_low'])}–{_pct(v['ci_high'])}</td></tr>" for k, v in m["stages"].items())
        parts.append(f"<table><tr><th>Myeloid maturation stage</th><th>Count</th><th>% of series</th>"
                     f"<th>95 % interval</th></tr>{trs}</table>")
    else:
        parts.append(f"<p>Maturation-stage distribution unavailable: {escape(m['stages_note'])}.</p>")
    return "".join(parts)


def _merge(records: Sequence[tuple[str, Mapping[str, np.ndarray] | None]], limit: int) -> tuple[list, int, int]:
    """The best ``limit`` crops over the slides, the candidates in all, and slides without a record."""
    rows, crops, total, missing = [], [], 0, 0
    for slide, rec in records:
        if rec is None:
            missing += 1
            continue
        total += int(rec["n_candidates"])
        for i in range(len(rec["crops"])):
            rows.append({"slide": slide, **{k: rec[k][i] for k in _FIELDS}})
            crops.append(rec["crops"][i])
    if not rows:
        return [], total, missing
    table = pd.DataFrame(rows)
    order = review_order(table)[:limit]
    return [(table.iloc[i], crops[i]) for i in order], total, missing


def _figure(rank: int, row: pd.Series, crop: np.ndarray) -> str:
    like = row["likeness"]
    conf = row["confidence"]
    words = [str(row["label"]).replace("_", " ")]
    if np.isfinite(like):
        words.append(f"blast-like {like:.2f}")
    if np.isfinite(conf):
        words.append(f"conf. {conf:.2f}")
    caption = " · ".join(words)
    uri = "data:image/png;base64," + base64.b64encode(to_png_bytes(crop)).decode("ascii")
    h, w = crop.shape[:2]
    return (f'<figure class="crop" data-rank="{rank}" data-label="{escape(str(row["label"]))}" '
            f'data-likeness="{like if np.isfinite(like) else ""}" style="margin:0;width:{w}px;font-size:.72em">'
            f'<img src="{uri}" width="{w}" height="{h}" alt="{escape(caption)}, slide {escape(str(row["slide"]))}">'
            f"<figcaption>{rank}. {escape(caption)}</figcaption></figure>")


def review_section(summary: Mapping[str, Any], records: Sequence[tuple[str, Mapping[str, np.ndarray] | None]],
                   *, limit: int = GALLERY_MAX) -> str:
    """HTML of the review section of one patient page.

    Parameters
    ----------
    summary : mapping
        The patient summary (:func:`hemoflow.stats.aggregate.summarize_patient`).
    records : sequence of (slide name as shown, record or None)
        :func:`read_review_crops` of each of the patient's slides.
    limit : int, optional
        Most crops shown.
    """
    shown, total, missing = _merge(records, max(0, int(limit)))
    figures = "".join(_figure(i + 1, row, crop) for i, (row, crop) in enumerate(shown))
    if shown:
        head = (f"<p>{len(shown)} of {total} cells to review shown, most blast-like first"
                + (f"; {total - len(shown)} not shown" if total > len(shown) else "") + ".</p>")
    elif total:
        head = f"<p>{total} cells to review; none shown.</p>"
    else:
        head = "<p>No blasts or uncertain cells found.</p>" if records and not missing else ""
    if not records:
        head = '<p class="muted">No review crops were given to this report.</p>'
    if missing:
        head += (f'<p class="muted">{missing} slide(s) have no stored review crops '
                 "(written by an older hemoflow, or not yet finished).</p>")
    gallery = (f'<div class="gallery" style="display:flex;flex-wrap:wrap;gap:6px">{figures}</div>' if figures else "")
    return (
        '<section id="review"><h2>Review: blasts and uncertain cells</h2>'
        + _indices_table(summary) + _marrow_block(summary.get("marrow"))
        + '<h3 id="review-gallery">Gallery</h3>'
        + '<p class="muted">Blasts, cells the model could not identify, cells below '
        + f"{UNCERTAIN_BELOW:g} confidence and cells with p(blast) ≥ {BLAST_LIKE_FROM:g}.</p>"
        + head + gallery + "</section>"
    )


def review_notes(summary: Mapping[str, Any]) -> list[str]:
    """Short notes for the index page: blast review, IG and band flags."""
    notes = []
    if (summary.get("blast") or {}).get("review") == "review":
        notes.append("blasts to review")
    for key, name in (("ig", "IG"), ("band", "bands")):
        if (summary.get(key) or {}).get("flag") == "high":
            notes.append(f"{name} high")
    return notes


def review_sentences(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(flag, sentence)`` in plain words for the blast review, IG %, band % and the cells
    the model could not identify, for the page's list of flags."""
    out = []
    b = summary.get("blast") or {}
    if b.get("review") == "review":
        out.append(("review", f"{b['confident_count']} blast(s) called with p(blast) ≥ "
                              f"{b['review_min_confidence']:g} in peripheral blood, where blasts do not "
                              "circulate in health: check them in the review gallery."))
    elif b.get("review") == "none":
        out.append(("none", f"No blast called with p(blast) ≥ {b['review_min_confidence']:g}."))
    for key, ref in (("ig", IG_RANGE), ("band", BAND_RANGE)):
        d = summary.get(key)
        if d and d.get("flag") not in (None, "not_applicable"):
            out.append((d["flag"], explain_range_flag(
                ref.name, d["flag"], percent=d["percent"], ci_low=d["ci_low"], ci_high=d["ci_high"],
                ref_low=ref.low, ref_high=d["ref_high"], n=d["n"], cells_to_resolve=d["cells_to_resolve"])))
    rej = summary.get("not_identifiable")
    if rej and rej["count"]:
        out.append(("counted_apart", f"{rej['count']} of {rej['n']} classified white cells ({_pct(rej['percent'])} %, "
                                      f"95 % interval {_pct(rej['ci_low'])} to {_pct(rej['ci_high'])} %) could not be "
                                      "identified; they are left out of every percentage and shown in the gallery."))
    return out
