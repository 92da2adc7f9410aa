#!/usr/bin/env bash
# The full GPU check, in three phases of at most 8 minutes each (set-up included), on one GPU:
#
#   gpu-check.sh OUT tests    what this Triton compiles the kernels to, then every GPU
#                             test but the slow ones (pytest -m gpu runs those too)
#   gpu-check.sh OUT ops      resnet-shapes on every backend: fwd, then fwd+bwd (float32
#                             and bfloat16)
#   gpu-check.sh OUT levels   resnet-layers (bfloat16 inference: the fused kernel against
#                             the 3x3 conv it replaces), RedNet-50 vs ResNet-50 at batch 64,
#                             and a kernel-by-kernel profile of layer1
#   gpu-check.sh OUT          all three, one after the other
#
# OUT defaults to a fresh folder under ${TMPDIR:-/tmp}, never inside the source tree. A
# phase writes at most 8 files there: <phase>.log, env.json and each run packed as
# <run>.tar.gz. Every step has its own time limit, cut to what is left of the phase's
# BUDGET_S (465 s); rows reach the disk as they are measured, so a step cut short keeps
# what it measured and the next step still runs. Start a new GPU machine with
# first-light.sh: it checks correctness first, in 6 minutes.
set -uo pipefail
OUT=${1:-}
PHASE=${2:-all}
PY=${PYTHON:-python3}
case "$PHASE" in tests | ops | levels | all) ;; *)
    echo "gpu-check: unknown phase '$PHASE' (tests, ops, levels or all)" >&2
    exit 2
    ;;
esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu-check: no CUDA device: $PY sees none" >&2
    exit 2
fi
[ -n "$OUT" ] || OUT=${TMPDIR:-/tmp}/invbench-gpu-check/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
# offline machines: no dependencies fetched, the build backend already installed
$PY -c "import invbench" 2>/dev/null || $PY -m pip install -q --no-deps --no-build-isolation -e . || exit 1
export PYTHONUNBUFFERED=1
BUDGET_S=${BUDGET_S:-465}
failed=0

step() {  # step SECONDS LOG command...: run with a time limit within the phase's budget
    local limit=$1 log=$2 left
    shift 2
    left=$((BUDGET_S - (SECONDS - PHASE_START)))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 10 ]; then
        echo "gpu-check: skipped, the phase's ${BUDGET_S}s are spent: $*" | tee -a "$log"
        failed=1
        return
    fi
    echo "gpu-check [$((SECONDS - PHASE_START))s, limit ${limit}s]: $*" | tee -a "$log"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "gpu-check: exit $rc" | tee -a "$log"; failed=1; }
}

run() {  # run SECONDS NAME invbench-run-options...: the run directory packed as NAME.tar.gz
    local limit=$1 name=$2 tmp
    shift 2
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/invbench-run.XXXXXX")
    step "$limit" "$LOG" "$PY" -m invbench run --device cuda --out "$tmp/$name" "$@"
    [ -d "$tmp/$name" ] && tar -C "$tmp" -czf "$OUT/$name.tar.gz" "$name"
    rm -rf "$tmp"
}

profile() {  # profile SECONDS NAME invbench-profile-options...
    local limit=$1 name=$2 tmp
    shift 2
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/invbench-profile.XXXXXX")
    step "$limit" "$LOG" "$PY" -m invbench profile --device cuda --out "$tmp/$name" "$@"
    [ -d "$tmp/$name" ] && tar -C "$tmp" -czf "$OUT/$name.tar.gz" "$name"
    rm -rf "$tmp"
}

begin() {  # begin PHASE: a fresh log and clock for the phase
    PHASE_START=$SECONDS
    LOG=$OUT/$1.log
    : >"$LOG"
    $PY -m invbench env --json >"$OUT/env.json"
}

if [ "$PHASE" = tests ] || [ "$PHASE" = all ]; then
    begin tests
    # what this Triton compiles the kernels to (seconds; catches a layout regression)
    step 60 "$LOG" "$PY" -m pytest -q -p no:cacheprovider tests/backends/test_triton_codegen.py
    step 380 "$LOG" "$PY" -m pytest -v -rA -p no:cacheprovider -m "gpu and not slow" tests
fi
if [ "$PHASE" = ops ] || [ "$PHASE" = all ]; then
    begin ops
    run 210 ops-fwd --suite resnet-shapes --dtype float32 --dtype bfloat16 --mode fwd \
        --max-time 0.5
    run 230 ops-fwd-bwd --suite resnet-shapes --dtype float32 --dtype bfloat16 \
        --mode fwd+bwd --max-time 0.5
fi
if [ "$PHASE" = levels ] || [ "$PHASE" = all ]; then
    begin levels
    run 120 layers --suite resnet-layers --dtype bfloat16 --mode fwd --max-time 0.5
    # ResNet-50 (conv3x3) against RedNet-50 with each aggregation backend
    run 110 models --suite rednet-vs-resnet --case d50 --batch 64 --dtype bfloat16 \
        --mode fwd --max-time 2 --backend conv3x3 --backend triton_fused --backend triton \
        --backend cuda_ext --backend unfold
    # where a layer's time goes, kernel by kernel (layer1: the largest weight share)
    profile 60 profile-layer1 --suite resnet-layers --case layer1 --layer --dtype bfloat16 \
        --backend triton_fused --backend triton --backend cuda_ext --backend conv3x3
fi
echo "gpu-check ($PHASE): $([ $failed -eq 0 ] && echo all steps passed || echo a step failed); files in $OUT"
exit $failed
