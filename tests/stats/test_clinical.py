"""Clinical indices per patient on small literal cell tables: blast review, IG %, band %,
not-identifiable cells, the marrow maturation table and the M:E ratio with its interval.

Expected intervals are the exact Clopper–Pearson bounds, written out as numbers.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from hemoflow.classify.taxonomy import MYELOID_SERIES
from hemoflow.errors import HemoflowError
from hemoflow.stats.aggregate import summaries_to_frames, summarize_patient, summarize_slide
from hemoflow.stats.clinical import blast_likeness, cell_labels, clinical_indices


def _cells(spec, *, patient="p1", column="label", extra=None):
    """Cell table from ``[(label, count, confidence), ...]``; ``label=None`` is a red cell."""
    rows = []
    for label, n, conf in spec:
        for _ in range(n):
            rows.append({"cls": "rbc" if label is None else "wbc", column: "" if label is None else label,
                         "confidence": np.nan if label is None else conf})
    df = pd.DataFrame(rows)
    df["area_um2"], df["irregular"], df["patient_id"], df["slide"] = 50.0, False, patient, "s1"
    for k, v in (extra or {}).items():
        df[k] = v
    return df


PB = [
    ("blast", 2, 0.95), ("blast", 1, 0.5),
    ("promyelocyte", 1, 0.8), ("myelocyte", 2, 0.8), ("metamyelocyte", 1, 0.8),
    ("band_neutrophil", 5, 0.9), ("segmented_neutrophil", 40, 0.99),
    ("lymphocyte", 20, 0.97), ("monocyte", 5, 0.9), ("eosinophil", 2, 0.9), ("basophil", 1, 0.9),
    ("not_identifiable", 4, 0.3), ("erythroblast", 2, 0.9), ("platelet", 1, 0.9), ("", 1, np.nan),
    (None, 100, np.nan),
]


def test_peripheral_blood_indices_literal():
    s = summarize_patient(_cells(PB), specimen="peripheral_blood")
    c = s["counts"]
    # 80 identified white cells, 4 rejected, 1 unclassified; erythroblasts and the
    # platelet are not white cells.
    assert (c["wbc"], c["wbc_classified"], c["wbc_not_identifiable"], c["wbc_unclassified"]) == (85, 80, 4, 1)
    assert c["wbc_types"]["band_neutrophil"] == 5 and c["wbc_types"]["not_identifiable"] == 4

    b = s["blast"]
    assert (b["count"], b["n"], b["percent"]) == (3, 80, 3.75)
    assert (b["ci_low"], b["ci_high"]) == pytest.approx((0.7801, 10.5702), abs=1e-4)
    assert b["flag"] == "below"  # the 20 % cut-off
    assert (b["review"], b["confident_count"]) == ("review", 2)  # the 0.5 blast is not confident
    assert (b["review_min_confidence"], b["review_min_cells"]) == (0.9, 1)

    ig = s["ig"]
    assert (ig["count"], ig["n"], ig["percent"]) == (4, 80, 5.0)
    assert (ig["ci_low"], ig["ci_high"]) == pytest.approx((1.3789, 12.3099), abs=1e-4)
    assert (ig["ref_high"], ig["flag"], ig["cells_to_resolve"]) == (0.9, "high", None)

    band = s["band"]
    assert (band["count"], band["n"], band["percent"], band["staged"]) == (5, 80, 6.25, True)
    assert (band["ci_low"], band["ci_high"]) == pytest.approx((2.0603, 13.9857), abs=1e-4)
    assert (band["ref_high"], band["flag"], band["cells_to_resolve"]) == (10.0, "indeterminate", 251)

    rej = s["not_identifiable"]
    assert (rej["count"], rej["n"]) == (4, 84)
    assert rej["percent"] == pytest.approx(100 * 4 / 84)
    assert (rej["ci_low"], rej["ci_high"]) == pytest.approx((1.3125, 11.7457), abs=1e-4)

    # The differential comes from the groups: band + segmented are neutrophils, of 80.
    d = s["differential"]
    assert (d["neutrophil"]["count"], d["neutrophil"]["n"]) == (45, 80)
    assert sum(v["count"] for v in d.values()) + 3 + 4 == 80  # + blasts + IG
    assert s["immature"]["count"] == 7 and s["marrow"] is None
    json.dumps(s, allow_nan=False)


def test_p_blast_decides_confidence_and_only_blasts_count():
    spec = [("blast", 2, 0.95), ("lymphocyte", 3, 0.95)]
    cells = _cells(spec, extra={"p_blast": [0.5, 0.93, 0.97, 0.1, 0.1]})
    s = summarize_slide(cells, specimen="peripheral_blood")
    # the first blast's p_blast (0.5) overrides its confidence; the lymphocyte with
    # p_blast 0.97 is not a blast
    assert (s["blast"]["confident_count"], s["blast"]["review"]) == (1, "review")
    assert blast_likeness(cell_labels(cells)).tolist() == [0.5, 0.93, 0.97, 0.1, 0.1]
    cells["p_blast"] = 0.2
    s = summarize_slide(cells, specimen="peripheral_blood")
    assert (s["blast"]["confident_count"], s["blast"]["review"]) == (0, "none")


def test_bone_marrow_maturation_table_and_me_ratio():
    spec = [("blast", 2, 0.9), ("promyelocyte", 3, 0.9), ("myelocyte", 5, 0.9), ("metamyelocyte", 5, 0.9),
            ("band_neutrophil", 5, 0.9), ("segmented_neutrophil", 10, 0.9), ("eosinophil", 4, 0.9),
            ("basophil", 2, 0.9), ("erythroblast", 12, 0.9), ("lymphocyte", 7, 0.9), ("monocyte", 3, 0.9),
            ("not_identifiable", 6, 0.3)]
    s = summarize_patient(_cells(spec), specimen="bone_marrow")
    m = s["marrow"]
    assert (m["series_n"], m["unstaged"], m["stages_available"]) == (30, 0, True)
    assert list(m["stages"]) == list(MYELOID_SERIES)
    assert [m["stages"][k]["count"] for k in MYELOID_SERIES] == [2, 3, 5, 5, 5, 10]
    blast = m["stages"]["blast"]
    assert blast["percent"] == pytest.approx(100 * 2 / 30)
    assert (blast["ci_low"], blast["ci_high"]) == pytest.approx((0.8178, 22.0735), abs=1e-4)
    seg = m["stages"]["segmented_neutrophil"]
    assert (seg["ci_low"], seg["ci_high"]) == pytest.approx((17.2874, 52.8120), abs=1e-4)
    # M = 30 series + 4 eosinophils + 2 basophils; E = 12 erythroblasts.
    me = m["me_ratio"]
    assert (me["myeloid"], me["erythroid"], me["ratio"], me["note"]) == (36, 12, 3.0, None)
    assert (me["ci_low"], me["ci_high"]) == pytest.approx((1.52551, 6.33287), abs=1e-4)
    # Marrow: blasts are expected, IG and band limits are for blood.
    assert s["blast"]["review"] == "not_applicable"
    assert s["ig"]["flag"] == s["band"]["flag"] == "not_applicable"
    assert (s["ig"]["count"], s["ig"]["n"]) == (13, 46)  # erythroblasts and rejects not in n
    assert s["blast"]["flag"] == "below"


def test_me_ratio_zero_denominators():
    only_m = summarize_slide(_cells([("myelocyte", 7, 0.9)]), specimen="bone_marrow")["marrow"]["me_ratio"]
    assert (only_m["ratio"], only_m["ci_high"]) == (None, None)
    assert only_m["ci_low"] == pytest.approx(1.441309, abs=1e-5)  # p_low / (1 - p_low), p_low = 0.5904
    assert "no erythroblasts" in only_m["note"]
    only_e = summarize_slide(_cells([("erythroblast", 4, 0.9)]), specimen="bone_marrow")["marrow"]["me_ratio"]
    assert (only_e["ratio"], only_e["ci_low"]) == (0.0, 0.0)
    assert only_e["ci_high"] == pytest.approx(0.6024 / (1 - 0.6024), abs=1e-3)
    none = summarize_slide(_cells([("lymphocyte", 3, 0.9)]), specimen="bone_marrow")["marrow"]
    assert none["me_ratio"] == {"myeloid": 0, "erythroid": 0, "ratio": None, "ci_low": None, "ci_high": None,
                                "note": "no myeloid or erythroid cells counted"}
    assert none["series_n"] == 0 and all(v["percent"] is None for v in none["stages"].values())


def test_all_not_identifiable():
    cells = _cells([("not_identifiable", 5, 0.2), (None, 10, np.nan)])
    s = summarize_patient(cells, specimen="peripheral_blood")
    assert (s["counts"]["wbc"], s["counts"]["wbc_classified"], s["counts"]["wbc_not_identifiable"]) == (5, 0, 5)
    rej = s["not_identifiable"]
    assert (rej["count"], rej["n"], rej["percent"]) == (5, 5, 100.0)
    assert (rej["ci_low"], rej["ci_high"]) == pytest.approx((47.8176, 100.0), abs=1e-4)
    for key in ("blast", "ig", "band"):
        d = s[key]
        assert (d["n"], d["percent"], d["ci_low"], d["ci_high"]) == (0, None, 0.0, 100.0), key
        assert d["flag"] == "indeterminate" and d["cells_to_resolve"] is None, key
    assert s["blast"]["review"] == "none"
    assert s["differential"]["neutrophil"]["n"] == 0
    json.dumps(s, allow_nan=False)


def test_empty_table():
    out = clinical_indices(cell_labels(pd.DataFrame({"cls": pd.Series([], dtype=object)})),
                           specimen="bone_marrow")
    assert out["not_identifiable"] == {"count": 0, "n": 0, "percent": None, "ci_low": 0.0, "ci_high": 100.0}
    assert out["marrow"]["me_ratio"]["ratio"] is None and out["blast_review"]["confident_count"] == 0


def test_older_labels_map_to_groups():
    """The shipped classifier's labels: neutrophil and ig carry no stage."""
    spec = [("neutrophil", 10, 0.9), ("ig", 2, 0.9), ("blast", 1, 0.99), ("lymphocyte", 7, 0.9),
            ("erythroblast", 5, 0.9), ("myeloblast", 1, 0.95), ("pronormoblast", 1, 0.9)]
    cells = _cells(spec, column="wbc_type").rename(columns={"confidence": "wbc_confidence"})
    lab = cell_labels(cells)
    assert lab.loc[lab["group"] == "neutrophil", "label"].unique().tolist() == [""]
    s = summarize_slide(cells, specimen="bone_marrow")
    assert (s["blast"]["count"], s["blast"]["n"]) == (2, 21)  # blast + myeloblast
    assert (s["ig"]["count"], s["ig"]["percent"]) == (2, pytest.approx(100 * 2 / 21))
    assert s["band"]["staged"] is False and s["band"]["percent"] is None and s["band"]["flag"] == "not_applicable"
    m = s["marrow"]
    assert (m["stages_available"], m["stages"], m["unstaged"]) == (False, None, 12)
    assert (m["me_ratio"]["myeloid"], m["me_ratio"]["erythroid"]) == (14, 6)
    pb = summarize_slide(cells, specimen="peripheral_blood")
    assert pb["band"]["flag"] == "not_applicable" and pb["blast"]["review"] == "review"


def test_label_column_wins_and_unknown_labels_are_kept(caplog):
    cells = _cells([("lymphocyte", 2, 0.9)], extra={"wbc_type": ["neutrophil", "neutrophil"]})
    assert cell_labels(cells)["group"].tolist() == ["lymphocyte", "lymphocyte"]
    cells["label"] = np.array([3, 4])  # a numeric label is a segmentation id: fall back to wbc_type
    assert cell_labels(cells)["group"].tolist() == ["neutrophil", "neutrophil"]
    with caplog.at_level(logging.WARNING, logger="hemoflow.stats.clinical"):
        lab = cell_labels(_cells([("plasma_cell", 1, 0.9)]))
    assert lab["group"].tolist() == ["plasma_cell"] and "plasma_cell" in caplog.text
    with pytest.raises(HemoflowError, match="'cls'"):
        cell_labels(pd.DataFrame({"label": ["blast"]}))


def test_patient_columns():
    _, patients = summaries_to_frames([], [summarize_patient(_cells(PB), specimen="peripheral_blood"),
                                           summarize_patient(_cells(PB, patient="p2"), specimen="bone_marrow")])
    for col in ("blast.percent", "blast.ci_low", "blast.review", "blast.confident_count", "ig.percent", "ig.flag",
                "ig.ref_high", "band.percent", "band.ci_high", "band.flag", "not_identifiable.count",
                "not_identifiable.percent", "counts.wbc_not_identifiable", "marrow.me_ratio.ratio",
                "marrow.me_ratio.ci_low", "marrow.stages.promyelocyte.percent", "marrow.series_n"):
        assert col in patients.columns, col
    assert patients["blast.review"].tolist() == ["review", "not_applicable"]
    assert patients["marrow.stages.band_neutrophil.count"].tolist()[1] == 5
