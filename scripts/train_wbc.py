"""Train the shipped WBC classifier (``hemoflow/models/wbc_classifier.pt``).

A thin wrapper of :mod:`hemoflow.training.wbc` (the recipe, data and provenance are
documented there and in ``docs/classifier.md``)::

    python scripts/train_wbc.py --data ../shared/data [--cache /tmp/wbc-cache] [--steps 800]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hemoflow.training.wbc import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
