#!/usr/bin/env bash
# The GPU check, in two phases: about 9 minutes, then about 4, on one GPU:
#
#   gpu-check.sh OUT ops      codegen check, GPU tests, resnet-shapes on every backend
#                             (fwd then fwd+bwd, float32 and bfloat16)
#   gpu-check.sh OUT levels   resnet-layers (bfloat16 inference: the fused kernel against
#                             the 3x3 conv it replaces), RedNet-50 vs ResNet-50 at batch 64,
#                             and a kernel-by-kernel profile of layer1
#   gpu-check.sh OUT          both, one after the other
#
# Every step has its own time limit, and rows reach the disk as they are measured, so a
# step cut short keeps what it measured and the next step still runs. With PACK=1 each
# run directory is packed into OUT/<run>.tar.gz (few files to copy back); otherwise the
# runs stay as directories under OUT.
set -uo pipefail
OUT=${1:?usage: gpu-check.sh OUT_DIR [ops|levels]}
PHASE=${2:-all}
PY=${PYTHON:-python3}
case "$PHASE" in ops | levels | all) ;; *) echo "gpu-check: unknown phase '$PHASE'" >&2; exit 2 ;; esac
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
# offline machines: no dependencies fetched, the build backend already installed
$PY -c "import invbench" 2>/dev/null || $PY -m pip install -q --no-deps --no-build-isolation -e . || exit 1
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')" || exit 1
export PYTHONUNBUFFERED=1
failed=0

step() {  # step SECONDS LOG -- command...: run with a time limit, log appended
    local limit=$1 log=$2
    shift 3
    echo "gpu-check: $*" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "gpu-check: exit $rc" | tee -a "$log"; failed=1; }
}

pack() {  # with PACK=1, OUT/NAME/ becomes OUT/NAME.tar.gz
    if [ "${PACK:-0}" = 1 ] && [ -d "$OUT/$1" ]; then
        tar -C "$OUT" -czf "$OUT/$1.tar.gz" "$1" && rm -rf "${OUT:?}/$1"
    fi
}

run() {  # run SECONDS NAME -- invbench run options...
    local limit=$1 name=$2
    shift 3
    step "$limit" "$OUT/run.log" -- $PY -m invbench run --device cuda --out "$OUT/$name" "$@"
    pack "$name"
}

profile() {  # profile SECONDS NAME -- invbench profile options...
    local limit=$1 name=$2
    shift 3
    step "$limit" "$OUT/run.log" -- $PY -m invbench profile --device cuda --out "$OUT/$name" "$@"
    pack "$name"
}

$PY -m invbench env --json > "$OUT/env.json"

if [ "$PHASE" != levels ]; then
    # what this Triton compiles the kernels to (seconds; catches a layout regression)
    step 40 "$OUT/pytest.log" -- $PY -m pytest -q -p no:cacheprovider tests/backends/test_triton_codegen.py
    # the GPU tests but the slow ones (>2^31-element offsets, Nsight captures: pytest -m gpu)
    step 150 "$OUT/pytest.log" -- $PY -m pytest -q -m "gpu and not slow" -p no:cacheprovider tests
    run 180 ops-fwd -- --suite resnet-shapes --dtype float32 --dtype bfloat16 --mode fwd \
        --max-time 0.5
    run 180 ops-fwd-bwd -- --suite resnet-shapes --dtype float32 --dtype bfloat16 \
        --mode fwd+bwd --max-time 0.5
fi
if [ "$PHASE" != ops ]; then
    run 110 layers -- --suite resnet-layers --dtype bfloat16 --mode fwd --max-time 0.5
    # ResNet-50 (conv3x3) against RedNet-50 with each aggregation backend
    run 100 models -- --suite rednet-vs-resnet --case d50 --batch 64 --dtype bfloat16 \
        --mode fwd --max-time 2 --backend conv3x3 --backend triton_fused --backend triton \
        --backend cuda_ext --backend unfold
    # where a layer's time goes, kernel by kernel (layer1: the largest weight share)
    profile 45 profile-layer1 -- --suite resnet-layers --case layer1 --layer --dtype bfloat16 \
        --backend triton_fused --backend triton --backend cuda_ext --backend conv3x3
fi
echo "gpu-check ($PHASE): $([ $failed -eq 0 ] && echo all steps passed || echo a step failed); files in $OUT"
exit $failed
