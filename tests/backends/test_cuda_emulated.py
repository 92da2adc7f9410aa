"""The CUDA launchers and kernels of invbench/csrc, run on the CPU against float64.

No GPU is needed: tests/cuda_emu/cuda_emu.h gives the kernels what they use from CUDA
(launch built-ins, __syncthreads as a real barrier across one OS thread per CUDA
thread, dynamic shared memory poisoned with NaN before each block), and the launcher
file involution_cuda.cu is compiled as plain C++ after its <<<...>>> launches are
rewritten into calls of the emulator. So the very source the GPU build compiles (tile
choice, shared-memory sizing, dtype and K dispatch, index arithmetic, staging and
barriers) is checked here, on every dtype, for the tiled (cuda_ext) and the naive
(cuda_naive) kernels. Skipped without g++ or CUDA's headers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from invbench.backends import extension_build

HERE = Path(__file__).resolve().parent / "cuda_emu"
CSRC = extension_build.CSRC
LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;]*>)?)<<<([^>]*)>>>\(([^;]*)\);")

# B C H W G K stride pad dilation, and whether the tiled kernels serve it (K in 3, 5, 7;
# at stride 1 and dilation 1 all three are the two-pixel `pairs` kernels)
GEOMETRIES = [
    ((2, 8, 12, 10, 2, 3, 1, 1, 1), True),  # non-square, 2 groups
    ((1, 4, 9, 7, 1, 3, 2, 1, 1), True),  # stride 2 on odd sizes (the out-of-bounds case)
    ((1, 6, 11, 9, 3, 5, 1, 4, 2), True),  # K=5, dilation 2
    ((1, 4, 13, 11, 4, 7, 2, 3, 1), True),  # K=7, stride 2, G = C
    ((1, 2, 9, 11, 1, 7, 1, 3, 1), True),  # K=7, one group, odd width: a lone last pixel
    ((1, 6, 11, 9, 3, 5, 1, 0, 1), True),  # K=5, padding 0 (output smaller than input)
    ((1, 4, 6, 7, 2, 3, 1, 2, 1), True),  # K=3, padding 2 (output larger than input)
    ((1, 3, 10, 9, 3, 3, 3, 0, 3), True),  # stride 3, dilation 3, padding 0
    ((1, 2, 20, 37, 1, 3, 1, 1, 1), True),  # 2 x 3 tiles of 32 x 8, partial at the edges
    ((1, 2, 8, 9, 2, 1, 1, 0, 1), False),  # K=1: naive kernels only
    ((1, 2, 9, 9, 1, 9, 4, 4, 1), False),  # K=9, stride 4: naive kernels only
]
TOL = {"float32": 1e-5, "float64": 1e-12, "float16": 1e-2, "bfloat16": 1e-2}
OPS = ("forward", "grad_input", "grad_weight")


def _cuda_include() -> Path | None:
    home = extension_build.cuda_home()
    for root in ([home] if home else []) + [Path("/usr/local/cuda")]:
        if (root / "include" / "cuda_fp16.h").is_file():
            return root / "include"
    return None


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    include = _cuda_include()
    if shutil.which("g++") is None or include is None:
        pytest.skip("needs g++ and CUDA's headers (cuda_fp16.h)")
    work = tmp_path_factory.mktemp("cuda_emu")
    source = (CSRC / "involution_cuda.cu").read_text()
    rewritten, n = LAUNCH.subn(
        lambda m: f"::emu::launch({m.group(1)}, {m.group(2)}, {m.group(3)});", source
    )
    assert n == 9 and "<<<" not in rewritten  # 3 ops x (two-pixel, tiled, naive)
    (work / "involution_cuda_emu.inc").write_text(rewritten)
    exe = work / "driver"
    subprocess.run(
        [
            "g++", "-std=c++20", "-O1", "-pthread",
            f"-I{HERE}", f"-I{CSRC}", f"-I{work}", f"-I{include}",
            "-o", str(exe), str(HERE / "driver.cpp"),
        ],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return exe


def test_kernels_match_float64_on_every_dtype_and_path(driver: Path) -> None:
    args = [str(v) for geometry, _ in GEOMETRIES for v in geometry]
    result = subprocess.run(
        [str(driver), *args], check=True, capture_output=True, text=True, timeout=600
    )
    lines = [line.split() for line in result.stdout.splitlines()]
    assert len(lines) == len(GEOMETRIES) * len(TOL) * len(OPS) * 2
    seen = set()
    for index, dtype, op, asked, ran, err in lines:
        geometry, tiled = GEOMETRIES[int(index)]
        expected = "tiled" if asked == "tiled" and tiled else "naive"
        stride, dilation = geometry[6], geometry[8]
        if expected == "tiled" and stride == dilation == 1:
            expected = "pairs"
        assert ran == expected, (geometry, dtype, op, asked, ran)
        assert float(err) <= TOL[dtype], (geometry, dtype, op, asked, float(err))
        seen.add((dtype, op, ran))
    # every kernel of both backends ran in every dtype
    kernels = {(o, p) for o in OPS for p in ("pairs", "tiled", "naive")}
    assert seen == {(d, o, p) for d in TOL for o, p in kernels}
