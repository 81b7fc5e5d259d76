#!/usr/bin/env bash
# Create .venv and install hemoflow with its test extra, pinned by constraints.txt.
# torch==2.13.0 is the CPU build (installed from the local wheel cache where present).
# Last, the Numba kernels are compiled into their on-disk cache (`hemoflow warmup`, a few
# minutes on 2 cores), so that the first job starts computing at once.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade "pip>=24"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
echo "hemoflow installed in .venv ($(.venv/bin/python -c 'import hemoflow; print(hemoflow.__version__)'))"
.venv/bin/hemoflow warmup
