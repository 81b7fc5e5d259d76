"""Report sections for slides that were not counted: rejected by the blood-smear QC gate
or failed, each with its reason (from the patient row's ``excluded_slides``, see
:mod:`hemoflow.stats.status`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from html import escape
from typing import Any

__all__ = ["excluded_section", "status_only_body", "status_index_row"]

_WHAT = {
    "rejected": "rejected by the blood-smear check (not a stained blood smear)",
    "failed": "failed (could not be processed)",
}


def excluded_section(p: Mapping[str, Any], show_slide: Callable[[str], str] = str) -> str:
    """A table of the patient's slides that were not counted, with their reasons ("" if none)."""
    ex = p.get("excluded_slides") or []
    if not ex:
        return ""
    rows = "".join(
        f"<tr><td>{escape(show_slide(str(e.get('slide_id'))))}</td><td class=\"t\">{escape(str(e.get('status')))}"
        f"</td><td class=\"t\">{escape(str(e.get('reason') or ''))}</td></tr>"
        for e in ex
    )
    kinds = sorted({str(e.get("status")) for e in ex})
    what = "; ".join(f"{k}: {_WHAT.get(k, k)}" for k in kinds)
    return (
        f"<h2>Slides not counted ({len(ex)})</h2>"
        f'<p class="muted">These slides are left out of every count and percentage on this page ({escape(what)}).</p>'
        '<table><tr><th>Slide</th><th class="t">Status</th><th class="t">Reason</th></tr>' + rows + "</table>"
    )


def status_only_body(p: Mapping[str, Any], display: str, show_slide: Callable[[str], str] = str) -> str:
    """The page of a patient none of whose slides was counted: why, and no numbers."""
    status = str(p.get("status") or "failed")
    return (
        f"<h1>Patient {escape(display)}</h1>"
        f"<p>Specimen: <b>{escape(str(p.get('specimen', '')).replace('_', ' '))}</b>. "
        f"<b>No results</b>: no slide of this patient was counted (status: {escape(status)}).</p>"
        + excluded_section(p, show_slide)
    )


def status_index_row(href: str, display: str, p: Mapping[str, Any]) -> str:
    """An index row (7 columns, as the index table's) for a patient with no counts."""
    n = len(p.get("excluded_slides") or [])
    return (
        f'<tr><td><a href="{escape(href)}">{escape(display)}</a></td>'
        f"<td class=\"t\">{escape(str(p.get('specimen', '')).replace('_', ' '))}</td><td>{n}</td>"
        f"<td>–</td><td>–</td><td class=\"t\">no results: {escape(str(p.get('status') or 'failed'))}</td>"
        "<td>–</td></tr>"
    )
