#!/usr/bin/env python
"""Train the red-cell density network shipped in ``hemoflow/models/``: the command line of
:mod:`hemoflow.training.rbc_density` (``--help`` for its options)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hemoflow.training.rbc_density import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
