#!/usr/bin/env bash
# One GPU-machine session, run from the repository root: the CUDA tests, the classifier's GPU
# throughput (batch sweep, then end to end on a Dask worker offering the resource GPU), and the
# tile pipeline with 1, 2 and 8 workers on the machine's CPU cores (a check of the scale model).
# Missing packages travel as wheels in .whl/ (see docs/experiments/performance.md). Logs go to $OUT.
set -u
OUT=${OUT:-/tmp/hemoflow-device}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
nproc
python3 -c "import torch, numpy, numba, skimage, dask, distributed, zarr; print('torch', torch.__version__, 'numpy', numpy.__version__, 'numba', numba.__version__, 'skimage', skimage.__version__, 'dask', dask.__version__, 'zarr', zarr.__version__)"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/classify/test_classify_contract.py 2>&1 | tail -4
timeout ${CLASSIFY_TIMEOUT:-240} python3 benchmarks/classify.py --no-cpu --gpu-n 32768 --repeats 2 --worker \
  --json "$OUT/classify.json" 2>&1 | grep -v Warning | tee "$OUT/classify.log"
[ "${SLIDE_TIMEOUT:-300}" = 0 ] && exit 0  # SLIDE_TIMEOUT=0: classifier only
timeout ${SLIDE_TIMEOUT:-300} python3 benchmarks/slide_throughput.py --workers 1 2 8 --no-classify --skimage-tiles 1 \
  ${SLIDE_ARGS:-} --workdir /tmp/bench --json "$OUT/slide.json" 2>&1 | tee "$OUT/slide.log" | tail -25
