#!/usr/bin/env bash
# First light: the first look at a GPU machine, correctness first, in under 6 minutes.
#
#   first-light.sh OUT      (OUT is required; use a folder outside the source tree)
#
# 1. set-up: invbench installed offline if it is not importable; pytest plugins looked for
# 2. the CUDA extension built alone, with the compiler's full output (ptxas -v included)
# 3. the GPU tests but the timer's and the slow ones, one line per test as it ends
# 4. the timer's GPU tests, with what each measured
# 5. a small timing slice: layer1 and layer4 of resnet-shapes, float32 and bfloat16,
#    forward, every op-level backend but torch.compile
#
# Everything streams to the terminal and to OUT/first-light.log. OUT receives at most
# four files: first-light.log, env.json, slice.tar.gz (the timing run) and summary.txt.
# Each step has its own time limit, cut to what is left of BUDGET_S (345 s from the
# start: 6 minutes with room for the machine's own start-up of python); a step that
# fails or runs out of time is reported and the next one still runs. Exit status: 0 when every step passed, 1 when one
# failed, 2 for a usage error or a machine without a CUDA device.
set -uo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "first-light: usage: first-light.sh OUT_DIR (required; a folder outside the tree)" >&2
    exit 2
fi
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2

# No GPU: one line, exit 2, nothing written.
if ! cuda=$($PY -c 'import torch; print("yes" if torch.cuda.is_available() else torch.__version__)' 2>/dev/null); then
    echo "first-light: no CUDA device: $PY cannot import torch" >&2
    exit 2
elif [ "$cuda" != yes ]; then
    echo "first-light: no CUDA device: torch $cuda sees none" >&2
    exit 2
fi

mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
LOG=$OUT/first-light.log
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
export PYTHONUNBUFFERED=1
START=$SECONDS
BUDGET_S=${BUDGET_S:-345}
failed=()
summary=()

say() { echo "first-light [$((SECONDS - START))s]: $*"; }

step() {  # step NAME SECONDS command...: run with a time limit, note the outcome
    local name=$1 limit=$2 t0=$SECONDS rc left
    shift 2
    left=$((BUDGET_S - (SECONDS - START)))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 10 ]; then
        summary+=("$name: SKIPPED, the ${BUDGET_S}s budget is spent")
        failed+=("$name")
        say "== $name: skipped (budget spent)"
        return
    fi
    say "== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        summary+=("$name: passed in $((SECONDS - t0))s")
    else
        [ "$rc" -eq 124 ] && rc="124 (time limit)"
        summary+=("$name: FAILED, exit $rc after $((SECONDS - t0))s")
        failed+=("$name")
    fi
    say "== $name: ${summary[-1]#*: }"
}

# -- 1. set-up ----------------------------------------------------------------------------
say "$(uname -n), $($PY -c 'import sys, torch; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda {torch.version.cuda}, {torch.cuda.get_device_name()}")')"
if ! $PY -c "import invbench" 2>/dev/null; then
    say "installing invbench (offline: no dependencies, no build isolation)"
    $PY -m pip install -q --no-deps --no-build-isolation -e . ||
        { say "pip install failed: using the source tree on PYTHONPATH"; export PYTHONPATH=$ROOT; }
fi
PYTEST=(-p no:cacheprovider)
if $PY -c "import pytest_timeout" 2>/dev/null; then
    PYTEST+=(--timeout=120)
    say "pytest-timeout found: 120 s per test"
else
    say "pytest-timeout not installed: the step limits alone bound the tests"
fi
$PY -c "import xdist" 2>/dev/null && say "pytest-xdist found (not used: the GPU tests share one device)"
# A fresh cache: the extension is built here, once, with its output in the log.
INVBENCH_CACHE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/invbench-first-light.XXXXXX")
export INVBENCH_CACHE_DIR
$PY -m invbench env --json >"$OUT/env.json" || say "invbench env failed"

# -- 2. the extension alone, every line the compilers print -------------------------------
step extension 110 "$PY" - <<'EOF'
from torch.utils import cpp_extension

_load = cpp_extension.load


def verbose_load(*args, **kwargs):
    kwargs["verbose"] = True  # ninja's commands and every compiler message
    kwargs["extra_cuda_cflags"] = [*kwargs.get("extra_cuda_cflags", []), "-Xptxas=-v"]
    return _load(*args, **kwargs)


cpp_extension.load = verbose_load
from invbench.backends import extension_build  # noqa: E402

built = extension_build.load(with_cuda=True)
print(f"first-light: extension built: {built.library}")
EOF

# -- 3. correctness on the GPU: every GPU test but the timer's and the slow ones ----------
step gpu-tests 110 "$PY" -m pytest -v "${PYTEST[@]}" -m "gpu and not slow" tests \
    --ignore=tests/measure/test_timer_gpu.py --ignore=tests/measure/test_measure_gpu.py

# -- 4. the timer ---------------------------------------------------------------------------
step timer-tests 50 "$PY" -m pytest -v -rA "${PYTEST[@]}" -m gpu \
    tests/measure/test_timer_gpu.py tests/measure/test_measure_gpu.py

# -- 5. a small timing slice ----------------------------------------------------------------
SLICE=$(mktemp -d "${TMPDIR:-/tmp}/invbench-slice.XXXXXX")/slice
step timing-slice 55 "$PY" -m invbench run --suite resnet-shapes --device cuda \
    --case layer1 --case layer4 --dtype float32 --dtype bfloat16 --mode fwd \
    --backend unfold --backend conv3x3 --backend dwconv --backend triton \
    --backend cuda_ext --backend cuda_naive --max-time 0.3 --out "$SLICE"
if [ -d "$SLICE" ]; then
    tar -C "$(dirname "$SLICE")" -czf "$OUT/slice.tar.gz" slice
fi

{
    echo "first light on $($PY -c 'import torch; print(torch.cuda.get_device_name())') in $((SECONDS - START)) s"
    printf '%s\n' "${summary[@]}"
} >"$OUT/summary.txt"
say "done in $((SECONDS - START)) s"
cat "$OUT/summary.txt"
rc=0
[ ${#failed[@]} -eq 0 ] || rc=1
exec >&- 2>&-  # let tee write the log's last lines before the script ends
wait "$TEE_PID" 2>/dev/null
exit $rc
