"""Slide and patient summaries on small literal cell tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hemoflow.errors import HemoflowError
from hemoflow.schema import CELL_COLUMNS
from hemoflow.stats.aggregate import (
    MATURATION_STAGES,
    flatten_summary,
    summaries_to_frames,
    summarize_patient,
    summarize_slide,
)


def _table(slide="s1", patient="p1"):
    """4 RBC, 23 objects segmented as WBC, 3 platelets."""
    wbc_types = (
        ["neutrophil"] * 10 + ["lymphocyte"] * 5 + ["monocyte", "eosinophil"] + ["blast"] * 2 + ["ig"]
        + ["erythroblast", "platelet", ""]
    )
    n_wbc = len(wbc_types)
    cls = ["rbc"] * 4 + ["wbc"] * n_wbc + ["platelet"] * 3
    area = [40.0, 44.0, 48.0, 52.0] + [100.0] * n_wbc + [6.0, 8.0, 10.0]
    irregular = [False, True, False, False] + [False] * (n_wbc - 1) + [True] + [False, False, True]
    n = len(cls)
    return pd.DataFrame(
        {
            "y": np.arange(n, dtype=float),
            "x": np.arange(n, dtype=float),
            "cls": cls,
            "area_um2": area,
            "irregular": irregular,
            "wbc_type": [""] * 4 + wbc_types + [""] * 3,
            "wbc_confidence": [np.nan] * 4 + [0.9] * n_wbc + [np.nan] * 3,
            "slide": slide,
            "patient_id": patient,
        }
    )


def test_slide_summary_literal_numbers():
    s = summarize_slide(_table(), specimen="peripheral_blood")
    assert s["level"] == "slide" and s["slide"] == "s1" and s["patient_id"] == "p1"
    c = s["counts"]
    # 20 classified white cells + 1 unclassified; the erythroblast and the "platelet"
    # are not white cells; the latter joins the 3 platelets.
    assert (c["rbc"], c["wbc"], c["platelet"]) == (4, 21, 4)
    assert (c["wbc_classified"], c["wbc_unclassified"], c["nucleated_rbc"]) == (20, 1, 1)
    assert c["wbc_types"]["neutrophil"] == 10 and c["wbc_types"]["platelet"] == 1
    assert s["wbc_rbc_ratio"] == 5.25
    assert s["wbc_per_1000_rbc"] == 5250.0
    assert s["platelets_per_1000_rbc"] == 1000.0
    assert s["nucleated_rbc_per_100_wbc"] == pytest.approx(100 / 21)

    rbc = s["morphology"]["rbc"]
    assert rbc["n"] == 4 and rbc["area_um2_mean"] == 46.0
    assert rbc["area_um2_sd"] == pytest.approx(5.163977794943222)  # sample SD
    assert rbc["irregular_percent"] == 25.0
    assert s["morphology"]["platelet"]["area_um2_mean"] == 8.0
    assert s["morphology"]["wbc"]["n"] == 23  # by segmentation class
    assert s["rbc_indices"]["anisocytosis_cv_percent"] == pytest.approx(11.226038684659178)
    assert s["rbc_indices"]["poikilocytosis_percent"] == 25.0
    h = s["rbc_area_histogram"]
    assert sum(h["counts"]) == 4 and h["overflow"] == 0
    assert h["counts"][13] == 1  # 40 in [39, 42)

    d = s["differential"]
    assert d["neutrophil"]["count"] == 10 and d["neutrophil"]["n"] == 20
    assert d["neutrophil"]["percent"] == 50.0
    assert d["neutrophil"]["ci_low"] == pytest.approx(27.1958, abs=1e-4)
    assert d["neutrophil"]["ci_high"] == pytest.approx(72.8042, abs=1e-4)
    assert (d["neutrophil"]["ref_low"], d["neutrophil"]["ref_high"]) == (40.0, 60.0)
    assert d["neutrophil"]["flag"] == "indeterminate"
    # 50 % in 40-60 %: the interval would lie inside from 104 cells on.
    assert d["neutrophil"]["cells_to_resolve"] == 104
    assert d["lymphocyte"]["percent"] == 25.0
    assert d["lymphocyte"]["ci_low"] == pytest.approx(8.6571, abs=1e-4)
    assert d["basophil"]["count"] == 0 and d["basophil"]["ci_high"] == pytest.approx(16.8433, abs=1e-4)
    assert s["blast"]["count"] == 2 and s["blast"]["percent"] == 10.0
    assert s["blast"]["ci_low"] == pytest.approx(1.2349, abs=1e-4)
    assert s["blast"]["ci_high"] == pytest.approx(31.6983, abs=1e-4)
    assert s["blast"]["flag"] == "indeterminate" and s["blast"]["cutoff"] == 20.0
    assert s["immature"]["count"] == 3 and s["immature"]["percent"] == 15.0
    assert s["marrow"] is None


def test_cells_to_resolve_in_summary():
    s = summarize_slide(_table(), specimen="peripheral_blood")
    d = s["differential"]
    assert d["lymphocyte"]["cells_to_resolve"] == 276  # 25 % in 20-40 %
    assert d["monocyte"]["cells_to_resolve"] == 319  # 5 % in 2-8 %
    assert d["basophil"]["cells_to_resolve"] == 736  # 0 % below 0.5-1 %
    assert s["blast"]["cells_to_resolve"] == 65  # 10 % vs 20 %
    assert s["immature"]["cells_to_resolve"] == 254  # 15 % vs 20 %


def test_summary_is_json_serialisable_without_nan():
    s = summarize_slide(_table(), specimen="peripheral_blood")
    text = json.dumps(s, allow_nan=False)
    assert json.loads(text) == s


def test_flags_all_outcomes_through_summary():
    n = 1000
    types = ["neutrophil"] * 800 + ["lymphocyte"] * 50 + ["monocyte"] * 50 + ["blast"] * 100
    cells = pd.DataFrame(
        {"cls": ["wbc"] * n, "area_um2": 100.0, "irregular": False, "wbc_type": types}
    )
    s = summarize_slide(cells, specimen="peripheral_blood", slide="x")
    d = s["differential"]
    assert d["neutrophil"]["flag"] == "high"
    assert d["lymphocyte"]["flag"] == "low"
    assert d["monocyte"]["flag"] == "within"
    assert d["eosinophil"]["flag"] == "low"  # 0 of 1000: upper bound 0.37 % < 1 %
    assert all(d[k]["cells_to_resolve"] is None for k in d)
    assert s["blast"]["flag"] == "below"
    assert s["wbc_rbc_ratio"] is None  # no red cells


def test_blast_above_cutoff():
    types = ["blast"] * 300 + ["lymphocyte"] * 700
    cells = pd.DataFrame({"cls": "wbc", "area_um2": 1.0, "irregular": False, "wbc_type": types})
    s = summarize_slide(cells, specimen="peripheral_blood", slide="x")
    assert s["blast"]["flag"] == "above"
    assert s["blast"]["cells_to_resolve"] is None


def test_bone_marrow_stages_and_me_ratio():
    types = (
        ["myeloblast"] * 2 + ["promyelocyte"] * 3 + ["myelocyte"] * 5 + ["metamyelocyte"] * 5
        + ["band_neutrophil"] * 5 + ["segmented_neutrophil"] * 10
        + ["pronormoblast"] * 1 + ["basophilic_normoblast"] * 2 + ["polychromatic_normoblast"] * 4
        + ["orthochromatic_normoblast"] * 3 + ["lymphocyte"] * 10
    )
    cells = pd.DataFrame({"cls": "wbc", "area_um2": 1.0, "irregular": False, "wbc_type": types})
    s = summarize_slide(cells, specimen="bone_marrow", slide="m")
    m = s["marrow"]
    # older stage labels: myeloblast -> blast, the four normoblast stages -> erythroblast
    assert (m["me_ratio"]["myeloid"], m["me_ratio"]["erythroid"]) == (30, 10)
    assert m["me_ratio"]["ratio"] == 3.0
    assert m["stages_available"] is True
    assert list(m["stages"]) == list(MATURATION_STAGES)
    assert m["stages"]["segmented_neutrophil"]["count"] == 10
    assert m["stages"]["segmented_neutrophil"]["percent"] == pytest.approx(100 / 3)
    assert sum(v["count"] for v in m["stages"].values()) == 30
    # Nucleated red cells are not white cells; bands and segmented count as neutrophils.
    assert s["counts"]["wbc"] == 40 and s["counts"]["nucleated_rbc"] == 10
    assert s["differential"]["neutrophil"]["count"] == 15
    assert s["differential"]["neutrophil"]["flag"] == "not_applicable"
    assert s["differential"]["neutrophil"]["ref_low"] is None
    assert s["blast"]["count"] == 2  # myeloblasts
    assert s["immature"]["count"] == 15  # myeloblast + promyelocyte + myelocyte + metamyelocyte


def test_bone_marrow_without_stage_labels():
    cells = pd.DataFrame(
        {"cls": "wbc", "area_um2": 1.0, "irregular": False, "wbc_type": ["neutrophil", "lymphocyte"]}
    )
    m = summarize_slide(cells, specimen="bone_marrow", slide="m")["marrow"]
    assert m["stages_available"] is False and m["stages"] is None
    assert "no stage labels" in m["stages_note"]
    assert m["me_ratio"]["ratio"] is None and m["me_ratio"]["note"]


def test_patient_pools_slides():
    a, b = _table("s1"), _table("s2")
    b = b[b["cls"] != "rbc"]  # second slide without red cells
    p = summarize_patient(pd.concat([a, b]), specimen="peripheral_blood")
    assert p["level"] == "patient" and p["patient_id"] == "p1"
    assert p["slides"] == ["s1", "s2"]
    assert p["slide_counts"] == [
        {"slide": "s1", "rbc": 4, "wbc": 21, "platelet": 4},
        {"slide": "s2", "rbc": 0, "wbc": 21, "platelet": 4},
    ]
    assert p["counts"]["rbc"] == 4 and p["counts"]["wbc"] == 42
    assert p["differential"]["neutrophil"]["n"] == 40
    assert p["differential"]["neutrophil"]["count"] == 20


def test_empty_table():
    cells = pd.DataFrame({c: pd.Series(dtype=object) for c in ("cls", "area_um2", "irregular", "wbc_type")})
    s = summarize_slide(cells, specimen="peripheral_blood", slide="e")
    assert s["counts"]["cells"] == 0
    assert "slide" in s and "patient_id" not in s  # unknown identity is left out
    merged = {"patient_id": "p9", "slides": ["s9"], **summarize_patient(cells, specimen="peripheral_blood")}
    assert merged["patient_id"] == "p9" and merged["slides"] == ["s9"]
    assert s["differential"]["neutrophil"]["percent"] is None
    assert (s["differential"]["neutrophil"]["ci_low"], s["differential"]["neutrophil"]["ci_high"]) == (0.0, 100.0)
    assert s["differential"]["neutrophil"]["flag"] == "indeterminate"
    assert s["blast"]["flag"] == "indeterminate"
    json.dumps(s, allow_nan=False)


def test_errors():
    with pytest.raises(HemoflowError, match="specimen"):
        summarize_slide(_table(), specimen="urine")
    with pytest.raises(HemoflowError, match="lacks column"):
        summarize_slide(_table().drop(columns="area_um2"), specimen="peripheral_blood")
    with pytest.raises(HemoflowError, match="one slide"):
        summarize_slide(pd.concat([_table("s1"), _table("s2")]), specimen="peripheral_blood")
    with pytest.raises(HemoflowError, match="one patient_id"):
        summarize_patient(pd.concat([_table(patient="a"), _table(patient="b")]), specimen="peripheral_blood")


def test_full_schema_table_is_accepted():
    t = _table()
    for col, kind in CELL_COLUMNS.items():
        if col not in t:
            t[col] = 0 if kind in ("i8", "f8") else ""
    summarize_slide(t, specimen="peripheral_blood")


def test_flat_frames():
    s1 = summarize_slide(_table("s1"), specimen="peripheral_blood")
    s2 = summarize_slide(_table("s2"), specimen="peripheral_blood")
    p = summarize_patient(pd.concat([_table("s1"), _table("s2")]), specimen="peripheral_blood")
    slides, patients = summaries_to_frames([s1, s2], [p])
    assert list(slides.columns[:3]) == ["slide", "patient_id", "specimen"]
    assert slides["slide"].tolist() == ["s1", "s2"]
    assert slides["differential.neutrophil.percent"].tolist() == [50.0, 50.0]
    assert slides["blast.flag"].tolist() == ["indeterminate"] * 2
    assert patients.loc[0, "slides"] == "s1;s2"
    assert patients.loc[0, "counts.wbc"] == 42
    assert not any("edges" in c or "slide_counts" in c for c in patients.columns)
    flat = flatten_summary(s1)
    assert all(not isinstance(v, (dict, list)) for v in flat.values())
    assert math.isclose(flat["wbc_rbc_ratio"], 5.25)
