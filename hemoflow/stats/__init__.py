"""Per-slide and per-patient statistics: exact intervals, reference ranges and flags.

- :mod:`hemoflow.stats.intervals`: Clopper–Pearson intervals, cells needed to settle a flag.
- :mod:`hemoflow.stats.reference`: reference ranges, the WHO blast cut-off, flag rules.
- :mod:`hemoflow.stats.aggregate`: slide and patient summaries, flat CSV tables.
- :mod:`hemoflow.stats.clinical`: taxonomy labels of a cell table; blast review, IG %,
  band %, not-identifiable share, marrow maturation table and M:E ratio.
"""

from __future__ import annotations

from hemoflow.stats.aggregate import (
    MATURATION_STAGES,
    SPECIMENS,
    flatten_summary,
    summaries_to_frames,
    summarize_patient,
    summarize_slide,
)
from hemoflow.stats.intervals import cells_to_resolve, clopper_pearson
from hemoflow.stats.reference import BLAST_CUTOFF_PERCENT, DIFFERENTIAL_RANGES, cutoff_flag, range_flag

__all__ = [
    "BLAST_CUTOFF_PERCENT",
    "DIFFERENTIAL_RANGES",
    "MATURATION_STAGES",
    "SPECIMENS",
    "cells_to_resolve",
    "clopper_pearson",
    "cutoff_flag",
    "flatten_summary",
    "range_flag",
    "summaries_to_frames",
    "summarize_patient",
    "summarize_slide",
]
