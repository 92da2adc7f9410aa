"""Compile the torch-free CUDA kernels with nvcc for sm_80 and sm_90; no register spills.

Needs only nvcc (no GPU, no CUDA build of torch). The kernels are compiled with the
defines torch's extension build adds (no implicit half/bfloat16 operators or
conversions). Prints each kernel's registers and spills (``pytest -s`` or ``-rP``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from torch.utils import cpp_extension

from invbench.backends.extension_build import CSRC

ARCHS = ("80", "90")
# What torch.utils.cpp_extension passes nvcc for every .cu (the -D__CUDA_NO_HALF_* set).
TORCH_NVCC_FLAGS = tuple(getattr(cpp_extension, "COMMON_NVCC_FLAGS", ()))
OPS = ("fwd", "bwdx", "bwdw")
DTYPES = {"f": "float32", "d": "float64", "6__half": "float16", "13__nv_bfloat16": "bfloat16"}
TILED_K = (3, 5, 7)
_NAME = re.compile(
    r"inv_(fwd|bwdx|bwdw)_(tiled|pairs|naive)I(f|d|6__half|13__nv_bfloat16)(?:Li(\d+)E)?"
)


@dataclass(frozen=True)
class KernelInfo:
    arch: str
    op: str
    kind: str
    dtype: str
    k: int | None
    registers: int
    spill_stores: int
    spill_loads: int


def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "nvcc").exists():
            return str(Path(home) / "bin" / "nvcc")
    return None


def parse_ptxas(arch: str, text: str) -> list[KernelInfo]:
    """One KernelInfo per entry function in `nvcc -Xptxas -v` output."""
    infos: list[KernelInfo] = []
    name: str | None = None
    spills = (0, 0)
    for line in text.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)'", line):
            name, spills = m.group(1), (0, 0)
        elif m := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line):
            spills = (int(m.group(1)), int(m.group(2)))
        elif (m := re.search(r"Used (\d+) registers", line)) and name is not None:
            nm = _NAME.search(name)
            assert nm is not None, f"unexpected kernel {name}"
            k = int(nm.group(4)) if nm.group(4) else None
            infos.append(
                KernelInfo(
                    arch, nm.group(1), nm.group(2), DTYPES[nm.group(3)], k, int(m.group(1)), *spills
                )
            )
            name = None
    return infos


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> list[KernelInfo]:
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found")
    out = tmp_path_factory.mktemp("nvcc")
    procs = {
        arch: subprocess.Popen(
            [
                nvcc,
                "-std=c++17",
                *TORCH_NVCC_FLAGS,
                "-O3",
                "-lineinfo",
                "-c",
                str(CSRC / "involution_cuda.cu"),
                "-o",
                str(out / f"sm{arch}.o"),
                f"-gencode=arch=compute_{arch},code=sm_{arch}",
                "-Xptxas",
                "-v",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for arch in ARCHS  # the two compilations run side by side
    }
    infos: list[KernelInfo] = []
    for arch, proc in procs.items():
        text, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"nvcc failed for sm_{arch}:\n{text[-4000:]}"
        assert "warning" not in text.lower(), text
        infos += parse_ptxas(arch, text)
    print("\narch op   kind  dtype     K   regs spill(st/ld)")
    for i in sorted(infos, key=lambda i: (i.arch, i.op, i.kind, i.dtype, i.k or 0)):
        print(
            f"sm{i.arch} {i.op:<4} {i.kind:<5} {i.dtype:<9} {i.k or '-':>2} {i.registers:5d} "
            f"{i.spill_stores}/{i.spill_loads}"
        )
    return infos


def test_every_kernel_was_compiled(kernels: list[KernelInfo]) -> None:
    for arch in ARCHS:
        tiled = {(i.op, i.dtype, i.k) for i in kernels if i.arch == arch and i.kind == "tiled"}
        assert tiled == {(o, d, k) for o in OPS for d in DTYPES.values() for k in TILED_K}
        naive = {(i.op, i.dtype) for i in kernels if i.arch == arch and i.kind == "naive"}
        assert naive == {(o, d) for o in OPS for d in DTYPES.values()}
        pairs = {(i.op, i.dtype, i.k) for i in kernels if i.arch == arch and i.kind == "pairs"}
        dks = {(d, k) for d in DTYPES.values() for k in TILED_K}
        assert pairs == {(o, d, k) for o in OPS for d, k in dks}


def test_optimised_kernels_do_not_spill(kernels: list[KernelInfo]) -> None:
    spilling = [i for i in kernels if i.kind != "naive" and (i.spill_stores or i.spill_loads)]
    assert not spilling, spilling
    assert all(0 < i.registers <= 255 for i in kernels)


def test_parse_ptxas_reads_spills() -> None:
    text = (
        "ptxas info    : Compiling entry function "
        "'_ZN8invbench4cuda13inv_fwd_tiledIfLi7EEEvPKT_S4_PS2_NS_8InvShapeEii' for 'sm_80'\n"
        "ptxas info    : Function properties for x\n"
        "    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
        "ptxas info    : Used 128 registers, 400 bytes cmem[0]\n"
    )
    (info,) = parse_ptxas("80", text)
    assert (info.op, info.kind, info.dtype, info.k) == ("fwd", "tiled", "float32", 7)
    assert (info.registers, info.spill_stores, info.spill_loads) == (128, 4, 12)
