#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU and torch installed, run the GPU tests and
# the resnet-shapes suite on every backend (float32 and bfloat16, fwd and fwd+bwd).
# Writes at most 8 files into OUT: env.json, pytest.log, run.log and the run's
# results.parquet, results.csv, samples.parquet and meta.json (under OUT/resnet-shapes).
set -uo pipefail
OUT=${1:?usage: gpu-check.sh OUT_DIR}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
$PY -c "import invbench" 2>/dev/null || $PY -m pip install -q --no-deps -e . || exit 1
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')" || exit 1
export PYTHONUNBUFFERED=1
$PY -m invbench env --json > "$OUT/env.json"
# Budget: about 2.5 minutes of GPU tests (the slow ones, e.g. >2^31-element offsets and
# Nsight captures, run with `pytest -m gpu`), 6 minutes of suite: 9 minutes in all.
timeout 150 $PY -m pytest -q -m "gpu and not slow" -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest.log"
tests_rc=${PIPESTATUS[0]}
# Rows reach the disk as they finish, so a run cut by the timeout keeps what it measured.
timeout 360 $PY -m invbench run --suite resnet-shapes --device cuda \
    --dtype float32 --dtype bfloat16 --mode fwd --mode fwd+bwd --max-time 0.5 \
    --out "$OUT/resnet-shapes" 2>&1 | tee "$OUT/run.log"
run_rc=${PIPESTATUS[0]}
echo "gpu-check: tests exit $tests_rc, run exit $run_rc; files in $OUT"
[ "$tests_rc" -eq 0 ] && [ "$run_rc" -eq 0 ]
