"""The HTML report: content, self-containment, pseudonyms, and a real headless browser."""

from __future__ import annotations

import base64
import html
import json
import re
import subprocess
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hemoflow.errors import HemoflowError
from hemoflow.report.html import RESEARCH_USE_NOTICE, pseudonymize, write_report
from hemoflow.stats.aggregate import summarize_patient, summarize_slide

KEY = b"test-key-not-secret"


def _results(cells, specimen="peripheral_blood"):
    slides = [summarize_slide(c, specimen=specimen) for _, c in cells.groupby("slide")]
    return {
        "patients": [summarize_patient(cells, specimen=specimen)],
        "slides": slides,
        "meta": {"hemoflow": "0.1.0", "created": "2026-01-01 00:00 UTC"},
    }


@pytest.fixture()
def report(tmp_path, patient_cells, thumbnails):
    paths = write_report(_results(patient_cells), tmp_path / "report", thumbnails=thumbnails, cells=patient_cells,
                         pseudonymize_key=None)
    return paths


def test_pages_written(report):
    assert [p.name for p in report] == ["patient-patient-001.html", "index.html"]
    page = report[0].read_text(encoding="utf-8")
    assert html.escape(RESEARCH_USE_NOTICE) in page
    assert "Flags in plain words" in page
    assert page.count("<svg") == 2  # differential + RBC histogram
    assert page.count("<img") == 2  # one QC thumbnail per slide
    for name in ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil", "blast", "immature"):
        assert name in page
    index = report[1].read_text(encoding="utf-8")
    assert 'href="patient-patient-001.html"' in index
    assert html.escape(RESEARCH_USE_NOTICE) in index


def test_pages_are_self_contained(report):
    for path in report:
        page = path.read_text(encoding="utf-8")
        # No network or file references: only data: images and in-folder links.
        for attr, url in re.findall(r'\b(src|href)="([^"]*)"', page):
            if attr == "src":
                assert url.startswith("data:image/png;base64,"), url
            else:
                assert "/" not in url and url.endswith(".html"), url
        assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in page
        for b64 in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
            img = Image.open(BytesIO(base64.b64decode(b64)))
            assert img.format == "PNG" and img.mode == "RGB" and min(img.size) > 100


def test_pseudonyms_hide_patient_and_slide_names(tmp_path, patient_cells, thumbnails):
    paths = write_report(_results(patient_cells), tmp_path, thumbnails=thumbnails, cells=patient_cells,
                         pseudonymize_key=KEY)
    pseudo = pseudonymize("patient-001", KEY)
    assert re.fullmatch(r"P-[0-9a-f]{12}", pseudo)
    assert paths[0].name == f"patient-{pseudo}.html"
    for p in paths:
        page = p.read_text(encoding="utf-8")
        assert "patient-001" not in page and "slide-A" not in page and "slide-B" not in page
    assert pseudo in paths[0].read_text(encoding="utf-8")


def test_pseudonymize():
    assert pseudonymize("patient-001", b"secret") == "P-326cf52d675e"
    assert pseudonymize("a", KEY) == pseudonymize("a", KEY) != pseudonymize("b", KEY)
    assert pseudonymize("a", KEY) != pseudonymize("a", b"other key")
    with pytest.raises(HemoflowError):
        pseudonymize("a", b"")


def test_marrow_page_and_missing_thumbnails(tmp_path, patient_cells):
    paths = write_report(_results(patient_cells, "bone_marrow"), tmp_path, thumbnails=None, cells=None,
                         pseudonymize_key=None)
    page = paths[0].read_text(encoding="utf-8")
    assert "Bone marrow" in page and "M:E ratio" in page
    assert "Maturation-stage distribution unavailable" in page
    assert "no thumbnail" in page and "<img" not in page


def test_summaries_as_mapping_and_empty(tmp_path, patient_cells):
    r = _results(patient_cells)
    r = {"patients": {"p": r["patients"][0]}, "slides": {s["slide"]: s for s in r["slides"]}}
    assert len(write_report(r, tmp_path / "a", cells=patient_cells, pseudonymize_key=None)) == 2
    assert [p.name for p in write_report({}, tmp_path / "b", pseudonymize_key=None)] == ["index.html"]


# --------------------------------------------------------------------------- headless browser

# Inserted before the page's Content-Security-Policy, which applies only to what follows
# it: records resource errors, CSP violations, console.error calls and, once loaded, the
# decode state of every <img> into attributes of <html> for --dump-dom to show.
_PROBE = """<script>
window.__errors = [];
document.addEventListener("securitypolicyviolation", e => __errors.push("CSP " + e.violatedDirective + " " + e.blockedURI));
addEventListener("error", e => __errors.push("error " + (e.message || (e.target && (e.target.src || e.target.href)))), true);
const __ce = console.error; console.error = (...a) => { __errors.push("console " + a.join(" ")); __ce(...a); };
addEventListener("load", () => {
  const root = document.documentElement;
  root.setAttribute("data-probe-imgs", JSON.stringify([...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])));
  root.setAttribute("data-probe-errors", JSON.stringify(__errors));
  root.setAttribute("data-probe-done", "1");
});
</script>"""


def _browse(chromium: str, page: Path, work: Path, *, window=(1200, 2600)) -> tuple[list, list, list, Path]:
    probe = work / page.name
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    shot = work / (page.stem + ".png")
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={work / 'profile'}",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
        f"--window-size={window[0]},{window[1]}", f"--screenshot={shot}", "--dump-dom", probe.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    root = re.search(r"<html[^>]*>", proc.stdout)
    assert root, proc.stdout[:500]
    attrs = dict(re.findall(r'(data-probe-[a-z]+)="([^"]*)"', root.group(0)))
    assert attrs.get("data-probe-done") == "1", "page load event not reached"
    imgs = json.loads(html.unescape(attrs["data-probe-imgs"]))
    errors = json.loads(html.unescape(attrs["data-probe-errors"]))
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    return imgs, errors, console, shot


def test_report_in_headless_chromium(chromium, report, tmp_path):
    work = tmp_path / "browser"
    work.mkdir()
    for page in report:
        imgs, errors, console, shot = _browse(chromium, page, work)
        assert errors == [], errors
        assert console == [], console
        expected = 2 if page.name != "index.html" else 0
        assert len(imgs) == expected
        for complete, w, h in imgs:
            assert complete and w > 0 and h > 0
        img = np.asarray(Image.open(shot).convert("RGB"))
        assert img.shape[:2] == (2600, 1200)
        assert img.std() > 10, "screenshot is blank"


def test_browser_probe_catches_a_broken_image(chromium, report, tmp_path):
    """The probe is not vacuous: an undecodable image and a blocked fetch are reported."""
    page = report[0]
    bad = tmp_path / "bad.html"
    text = page.read_text(encoding="utf-8")
    text = re.sub(r'src="data:image/png;base64,[^"]+"', 'src="data:image/png;base64,AAAA"', text, count=1)
    text = text.replace("</main>", '<img src="https://example.invalid/x.png"></main>')
    bad.write_text(text, encoding="utf-8")
    work = tmp_path / "browser"
    work.mkdir()
    imgs, errors, console, _ = _browse(chromium, bad, work, window=(800, 600))
    assert [i[1] for i in imgs].count(0) == 2
    assert any("CSP" in e for e in errors) and console
