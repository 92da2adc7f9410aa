"""Compile the extension's host sources as C++17 against the installed torch's headers.

torch 2.4 to 2.12 build extensions with -std=c++17 (later releases with c++20), so the
sources must stay C++17. The CUDA binding (binding_cuda.cpp) is otherwise compiled only
on a machine with a GPU; here it is checked with -fsyntax-only wherever torch ships the
c10/cuda headers (its CPU wheels do too, less one generated header, stood in for here)
and a CUDA toolkit provides cuda_runtime_api.h. No GPU, no link, no ninja needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
from torch.utils import cpp_extension

from invbench.backends.extension_build import CPU_SOURCES, CSRC

pytestmark = pytest.mark.slow


def _cxx() -> str:
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        pytest.skip(f"no C++ compiler ({cxx!r})")
    return cxx


def _cuda_include() -> Path | None:
    homes = [cpp_extension.CUDA_HOME, os.environ.get("CUDA_HOME"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        homes.append(str(Path(nvcc).resolve().parent.parent))
    for home in homes:
        if home and (Path(home) / "include" / "cuda_runtime_api.h").exists():
            return Path(home) / "include"
    return None


def _syntax_check(sources: dict[str, list[str]], extra_includes: list[Path]) -> None:
    """Compile each source (name -> extra flags) side by side; fail with the compiler's errors."""
    includes = [*cpp_extension.include_paths(), sysconfig.get_path("include")]
    includes += [str(p) for p in extra_includes]
    base = [
        _cxx(),
        "-fsyntax-only",
        "-std=c++17",
        "-fopenmp",  # at::parallel_for's header needs it, as in the real build
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        "-DTORCH_EXTENSION_NAME=invbench_ext_syntax",
        f"-I{CSRC}",
        *(arg for inc in includes for arg in ("-isystem", inc)),
    ]
    procs = {
        name: subprocess.Popen(
            [*base, *flags, str(CSRC / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, flags in sources.items()
    }
    failures = []
    for name, proc in procs.items():
        text, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            failures.append(f"{name}:\n{text[-4000:]}")
    assert not failures, "\n".join(failures)


def test_cpu_sources_compile_as_cpp17() -> None:
    _syntax_check({name: [] for name in CPU_SOURCES}, [])


def test_cuda_binding_compiles_as_cpp17(tmp_path: Path) -> None:
    c10_cuda = Path(cpp_extension.include_paths()[0]) / "c10" / "cuda"
    if not (c10_cuda / "CUDAGuard.h").exists():
        pytest.skip("this torch ships no c10/cuda headers")
    cuda_include = _cuda_include()
    if cuda_include is None:
        pytest.skip("no CUDA toolkit headers (cuda_runtime_api.h)")
    includes = [cuda_include]
    if not (c10_cuda / "impl" / "cuda_cmake_macros.h").exists():
        # CPU wheels leave out this generated header; CUDA wheels define just this macro.
        stub = tmp_path / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
        stub.parent.mkdir(parents=True)
        stub.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
        includes.append(tmp_path)
    _syntax_check(
        {"binding_cuda.cpp": ["-DINVBENCH_WITH_CUDA"], "binding.cpp": ["-DINVBENCH_WITH_CUDA"]},
        includes,
    )
