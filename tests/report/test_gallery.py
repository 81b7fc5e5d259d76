"""The review gallery: which cells, in what order, their crops kept per slide, the page in
a real headless Chromium, and the crops of a real job traced back to its tile records."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hemoflow.errors import HemoflowError
from hemoflow.report.gallery import (
    read_review_crops,
    review_record,
    review_section,
    write_review_crops,
)
from hemoflow.report.html import write_report
from hemoflow.stats.aggregate import summarize_patient, summarize_slide


def _colour(i: int) -> tuple[int, int, int]:
    """A distinct colour per cell, so a crop shows whose it is."""
    return (40 + (37 * i) % 200, 30 + (71 * i) % 200, 20 + (113 * i) % 200)


def _slide(name: str, spec, *, offset: int = 0, size: int = 96, p_blast: bool = True):
    """Cells ``[(label, confidence, p_blast), ...]`` with a red cell between every two, and
    one crop per white cell coloured by its running number (``offset`` + position)."""
    rows, crops = [], []
    for i, (label, conf, pb) in enumerate(spec):
        rows.append({"cls": "rbc", "label": "", "confidence": np.nan, "p_blast": np.nan, "y": 10.0 * i, "x": 1.0})
        rows.append({"cls": "wbc", "label": label, "confidence": conf, "p_blast": pb, "y": 10.0 * i + 5, "x": 2.0})
        crop = np.zeros((size, size, 3), np.uint8)
        crop[:] = _colour(offset + i)
        crop[:4] = 255  # a frame edge, so the crop is not a flat colour
        crops.append(crop)
    df = pd.DataFrame(rows).assign(slide=name, patient_id="patient-001", area_um2=80.0, irregular=False)
    if not p_blast:
        df = df.drop(columns="p_blast")
    return df, np.stack(crops)


SPEC_A = [  # label, confidence, p_blast
    ("segmented_neutrophil", 0.99, 0.01),  # not shown
    ("blast", 0.91, 0.91),
    ("lymphocyte", 0.55, 0.30),  # uncertain and blast-like
    ("not_identifiable", 0.40, 0.05),
    ("blast", 0.97, 0.97),
    ("lymphocyte", 0.95, 0.25),  # confident, but blast-like enough to show
    ("monocyte", 0.90, 0.02),  # not shown
    ("erythroblast", 0.50, 0.00),  # uncertain
]


def test_candidates_and_order_by_p_blast():
    cells, crops = _slide("a", SPEC_A)
    rec = review_record(cells, crops)
    assert int(rec["n_candidates"]) == 6
    assert rec["likeness"].tolist() == [0.97, 0.91, 0.30, 0.25, 0.05, 0.0]
    assert rec["label"].tolist() == ["blast", "blast", "lymphocyte", "lymphocyte", "not_identifiable", "erythroblast"]
    # each kept crop is the crop of its own cell
    positions = [4, 1, 2, 5, 3, 7]
    assert [tuple(c[50, 50]) for c in rec["crops"]] == [_colour(i) for i in positions]
    assert rec["y"].tolist() == [10.0 * i + 5 for i in positions]
    top = review_record(cells, crops, limit=2)
    assert int(top["n_candidates"]) == 6 and top["label"].tolist() == ["blast", "blast"]


def test_order_without_p_blast():
    """No p_blast column: blasts by confidence first, then the others, least confident first."""
    spec = [("blast", 0.7, None), ("not_identifiable", 0.5, None), ("blast", 0.95, None),
            ("lymphocyte", 0.3, None), ("lymphocyte", 0.9, None)]
    cells, crops = _slide("a", spec, p_blast=False)
    rec = review_record(cells, crops)
    assert rec["label"].tolist() == ["blast", "blast", "lymphocyte", "not_identifiable"]
    assert rec["confidence"].tolist() == [0.95, 0.7, 0.3, 0.5]
    assert np.isnan(rec["p_blast"]).all()


def test_crop_count_must_match():
    cells, crops = _slide("a", SPEC_A)
    with pytest.raises(HemoflowError, match="one uint8 RGB crop per wbc row"):
        review_record(cells, crops[:-1])


def test_write_read_and_per_slide_limit_keeps_the_patient_best(tmp_path):
    rng = np.random.default_rng(3)
    spec_a = [("blast", 0.95, float(p)) for p in rng.uniform(0.5, 1, 30)]
    spec_b = [("not_identifiable", 0.4, float(p)) for p in rng.uniform(0, 1, 30)]
    (a, ca), (b, cb) = _slide("a", spec_a), _slide("b", spec_b, offset=30)
    write_review_crops(str(tmp_path / "a.npz"), a, [ca[:10], ca[10:]])  # per-tile crop arrays
    write_review_crops(str(tmp_path / "b.npz"), b, cb)
    recs = [("a", read_review_crops(str(tmp_path / "a.npz"))), ("b", read_review_crops(str(tmp_path / "b.npz")))]
    assert len(recs[0][1]["crops"]) == 30 and int(recs[1][1]["n_candidates"]) == 30  # 30 <= 48 kept
    assert read_review_crops(str(tmp_path / "missing.npz")) is None
    page = review_section({}, recs, limit=48)
    shown = [float(v) for v in re.findall(r'data-likeness="([0-9.]+)"', page)]
    everything = sorted((p for *_, p in spec_a + spec_b), reverse=True)
    assert shown == pytest.approx(everything[:48])
    assert "48 of 60 cells to review shown" in page and "12 not shown" in page
    assert page.count("<img") == 48


def _report(tmp_path, **kw):
    (a, ca), (b, cb) = _slide("slide-A", SPEC_A), _slide("slide-B", SPEC_A[::-1], offset=len(SPEC_A))
    cells = pd.concat([a, b], ignore_index=True)
    results = {"patients": [summarize_patient(cells, specimen="peripheral_blood")],
               "slides": [summarize_slide(c, specimen="peripheral_blood") for _, c in cells.groupby("slide")],
               "meta": {"created": "2026-01-01 00:00 UTC"}}
    review = {"slide-A": review_record(a, ca), "slide-B": review_record(b, cb)}
    return write_report(results, tmp_path / "report", review_crops=review, **kw)


def test_report_page_has_the_gallery(tmp_path):
    page = _report(tmp_path)[0].read_text(encoding="utf-8")
    gallery = page[page.index('id="review"'):page.index("Flags in plain words")]
    assert gallery.count("<img") == 12 and "12 of 12 cells to review shown" in gallery
    assert [float(v) for v in re.findall(r'data-likeness="([0-9.]+)"', gallery)] == [
        0.97, 0.97, 0.91, 0.91, 0.30, 0.30, 0.25, 0.25, 0.05, 0.05, 0.0, 0.0]
    assert "blast review" in gallery and "immature granulocytes" in gallery and "not identifiable" in gallery
    flags = page[page.index("Flags in plain words"):page.index("<h2>Counts")]
    assert "4 blast(s) called with p(blast) ≥ 0.9 in peripheral blood" in flags
    assert "Immature granulocytes were 0.0 % of 12 counted white cells" in flags
    assert "2 of 14 classified white cells (14.3 %" in flags
    # the review sentence is an abnormal finding: listed first
    assert flags.index("blast(s) called") < flags.index("Immature granulocytes were")
    index = _report(tmp_path)[1].read_text(encoding="utf-8")
    assert "blasts to review" in index


def test_pseudonyms_in_captions(tmp_path):
    for p in _report(tmp_path, pseudonymize_key=b"k"):
        assert "slide-A" not in p.read_text(encoding="utf-8")


def test_slides_without_crops_are_said(tmp_path):
    cells, _ = _slide("slide-A", SPEC_A)
    results = {"patients": [summarize_patient(cells, specimen="peripheral_blood")], "slides": []}
    page = write_report(results, tmp_path, review_crops={"slide-A": None})[0].read_text(encoding="utf-8")
    assert "1 slide(s) have no stored review crops" in page and "<img" not in page


# --------------------------------------------------------------------------- headless browser

_PROBE = """<script>
window.__errors = [];
addEventListener("error", e => __errors.push("error " + (e.message || (e.target && e.target.src))), true);
document.addEventListener("securitypolicyviolation", e => __errors.push("CSP " + e.violatedDirective));
addEventListener("load", () => {
  const figs = [...document.querySelectorAll("figure.crop")].map(f => {
    const i = f.querySelector("img"), r = i.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return [f.dataset.rank, f.dataset.likeness, i.complete, i.naturalWidth, i.naturalHeight,
            r.left, r.top, i.clientWidth, i.clientHeight, hit === i];
  });
  document.documentElement.setAttribute("data-probe-figs", JSON.stringify(figs));
  document.documentElement.setAttribute("data-probe-errors", JSON.stringify(__errors));
});
</script>"""


def test_gallery_in_headless_chromium(chromium, tmp_path):
    page = _report(tmp_path)[0]
    work = tmp_path / "browser"
    work.mkdir()
    probe = work / page.name
    probe.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    shot = work / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           "--disable-background-networking", "--disable-component-update", "--disable-extensions",
           f"--user-data-dir={work / 'profile'}", "--force-device-scale-factor=1", "--virtual-time-budget=5000",
           "--window-size=1200,2400", f"--screenshot={shot}", "--dump-dom", probe.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    root = re.search(r"<html[^>]*>", proc.stdout).group(0)
    attrs = {k: json.loads(html.unescape(v)) for k, v in re.findall(r'data-probe-([a-z]+)="([^"]*)"', root)}
    assert attrs["errors"] == []
    figs = attrs["figs"]
    assert [int(f[0]) for f in figs] == list(range(1, 13))
    likeness = [float(f[1]) for f in figs]
    assert likeness == sorted(likeness, reverse=True) and likeness[0] == 0.97
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    expected: dict[float, list] = {}
    for rec in (review_record(*_slide("slide-A", SPEC_A)),
                review_record(*_slide("slide-B", SPEC_A[::-1], offset=len(SPEC_A)))):
        for v, c in zip(rec["likeness"], rec["crops"]):
            expected.setdefault(round(float(v), 2), []).append(c[50, 50].astype(int))
    for rank, like, complete, nw, nh, left, top, w, h, on_top in figs:
        assert complete and (nw, nh) == (96, 96) and (w, h) == (96, 96) and on_top, rank
        assert top + h < img.shape[0], "gallery below the first screen"
        # the crop is on screen: its pixels are the cell's colour
        y, x = int(top + h / 2), int(left + w / 2)
        assert min(np.abs(img[y, x] - c).max() for c in expected[round(float(like), 2)]) <= 2, (rank, img[y, x])


# --------------------------------------------------------------------------- a real job


def _tile_crops(out: Path, slide: str) -> dict[tuple[float, float], np.ndarray]:
    """(y, x) -> crop of every white cell in the ledger's tile records (read directly)."""
    found = {}
    for path in sorted((out / "slides" / slide / "tiles").glob("*.npz")):
        with np.load(path) as z:
            cls = z["col:cls:object"] if "col:cls:object" in z.files else z["col:cls"]
            wbc = np.asarray(cls).astype(str) == "wbc"
            for y, x, crop in zip(z["col:y"][wbc], z["col:x"][wbc], z["__crops__"]):
                found[(float(y), float(x))] = crop
    return found


def test_real_job_keeps_the_crops_of_its_review_cells(tmp_path):
    """A job on a synthetic leukaemic smear with the shipped classifier: the gallery's crops
    are the crops the tiles cut for those very cells, and the report shows them."""
    import hemoflow
    from distributed import LocalCluster

    from hemoflow.config import JobConfig
    from hemoflow.report.html import write_report_from_results
    from hemoflow.synth import write_synthetic_slide

    slide = tmp_path / "s0.ome.tif"
    write_synthetic_slide(slide, shape=(1024, 1024), mpp=0.25, seed=7, wbc_mix="acute_leukaemia", n_wbc=12)
    manifest = pd.DataFrame([{"slide": str(slide), "patient_id": "P1", "specimen": "peripheral_blood", "mpp": ""}])
    out = tmp_path / "out"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        client = hemoflow.Client(cluster)
        try:
            client.submit(manifest, str(out), config=JobConfig(tile_size=512)).result(timeout=600)
        finally:
            client.dask.close()

    cells = pd.read_parquet(out / "slides" / "s0" / "cells.parquet")
    wbc = cells[cells["cls"] == "wbc"]
    label = wbc["label"] if "label" in wbc else wbc["wbc_type"]
    conf = wbc["confidence"] if "confidence" in wbc else wbc["wbc_confidence"]
    p_blast = wbc["p_blast"] if "p_blast" in wbc else pd.Series(np.nan, index=wbc.index)
    rule = (label.isin(["blast", "not_identifiable"]) | (conf < 0.6) | (p_blast >= 0.2)) & (label != "")
    rec = read_review_crops(str(out / "slides" / "s0" / "review_crops.npz"))
    assert int(rec["n_candidates"]) == int(rule.sum()) > 0
    assert len(rec["crops"]) == min(48, int(rule.sum()))
    by_pos = _tile_crops(out, "s0")
    labels = dict(zip(zip(wbc["y"], wbc["x"]), label))
    for y, x, lab, crop in zip(rec["y"], rec["x"], rec["label"], rec["crops"]):
        assert np.array_equal(crop, by_pos[(float(y), float(x))])
        assert labels[(float(y), float(x))] == lab

    patient = json.loads((out / "patients.json").read_text())[0]
    n_blast = int((label == "blast").sum())
    assert patient["blast"]["count"] == n_blast
    assert patient["blast"]["review"] == ("review" if ((label == "blast") & (conf >= 0.9)).any() else "none")
    assert patient["not_identifiable"]["n"] == patient["counts"]["wbc"] - patient["counts"]["wbc_unclassified"]
    columns = pd.read_csv(out / "patients.csv").columns
    assert {"blast.review", "ig.percent", "ig.flag", "band.percent", "not_identifiable.percent"} <= set(columns)

    page = write_report_from_results(out, tmp_path / "report")[0].read_text(encoding="utf-8")
    assert page.count('class="crop"') == len(rec["crops"])
