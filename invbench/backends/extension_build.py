"""Just-in-time build of the involution C++/CUDA extension (invbench/csrc).

The extension is compiled with torch.utils.cpp_extension (ninja) on first use and
cached under ``$INVBENCH_CACHE_DIR`` or ``$XDG_CACHE_HOME/invbench`` (default
``~/.cache/invbench``), in a folder keyed by a hash of the sources, the compiler
flags, the Python and torch versions, the CUDA version and target architectures
and the host CPU. A later process finds the built library there and only loads it.

Each load stamps its cache entry (``last_used``); after a build, entries of other
sources or versions that no process has loaded for ``STALE_AFTER_DAYS`` days are
removed (never one that another process holds locked).

Two processes building at once are safe: the build runs under an exclusive file
lock (fcntl.flock) on the cache entry; the second process waits, then loads what
the first built. A failed build raises :class:`ExtensionBuildError` whose message
holds the compiler's error lines, and is remembered for the rest of the process so
that availability checks can report it.

With a CPU-only torch (or no visible GPU) only the CPU kernels are built; with a
CUDA build of torch and a GPU the CUDA kernels are added, compiled for the
architectures in ``TORCH_CUDA_ARCH_LIST`` or else for the visible GPUs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CSRC = Path(__file__).resolve().parent.parent / "csrc"
NAMESPACE = "invbench_ext"
# The kernels compile once per instruction-set path, each path its own translation unit
# so that ninja compiles them side by side; the longest (generic) first.
CPU_SOURCES = (
    "involution_cpu_generic.cpp",
    "involution_cpu_avx2.cpp",
    "involution_cpu_avx512.cpp",
    "involution_cpu_avx512bf16.cpp",
    "involution_cpu_avx512_zmm.cpp",
    "involution_cpu_avx512bf16_zmm.cpp",
    "binding.cpp",
    "involution_cpu.cpp",
)
CUDA_SOURCES = ("binding_cuda.cpp", "involution_cuda.cu")
_MAX_ERROR_LINES = 8
STALE_AFTER_DAYS = 30
LAST_USED = "last_used"


class ExtensionBuildError(RuntimeError):
    """The extension could not be built or loaded; the message says why, briefly."""


@dataclass(frozen=True)
class BuildPlan:
    with_cuda: bool
    name: str  # unique per key, so two builds never clash in one process
    directory: Path
    sources: tuple[Path, ...]
    cflags: tuple[str, ...]
    cuda_cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    arch_list: str | None

    @property
    def library(self) -> Path:
        return self.directory / f"{self.name}.so"


_lock = threading.Lock()
_loaded: dict[bool, BuildPlan] = {}
_failed: dict[bool, str] = {}


def cache_root() -> Path:
    if os.environ.get("INVBENCH_CACHE_DIR"):
        return Path(os.environ["INVBENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "invbench"


def cuda_build_wanted() -> bool:
    """Build the CUDA kernels: torch is a CUDA build and a GPU is visible."""
    return torch.version.cuda is not None and torch.cuda.is_available()


def _cuda_arch_list() -> str:
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return env
    caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    return ";".join(f"{major}.{minor}" for major, minor in caps)


def _cpu_signature() -> str:
    # -march=native code is only valid on the CPU that built it: key on its features.
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return line
    return platform.processor()


DEBUG_ENV = "INVBENCH_EXT_DEBUG"


def debug_build() -> bool:
    """``INVBENCH_EXT_DEBUG=1``: unoptimised code with debug information, for a debugger.

    It builds in a fraction of the optimised build's time and runs many times slower; its
    flags are in the cache key, so it never replaces the optimised build.
    """
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _host_flags() -> list[str]:
    # Portable code: the CPU kernels carry their own AVX2 / AVX-512 variants and pick
    # one at run time, so no -march=native. The C++ standard is the one torch asks for.
    flags = ["-O0", "-g"] if debug_build() else ["-O3"]
    if sys.platform.startswith("linux"):
        flags.append("-fopenmp")  # at::parallel_for is OpenMP-based in torch's Linux builds
    return flags


def plan(with_cuda: bool) -> BuildPlan:
    """Where and how the extension for this environment is (or would be) built."""
    names = CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())
    sources = tuple(CSRC / n for n in names)
    cflags = _host_flags()
    if with_cuda:
        cflags.append("-DINVBENCH_WITH_CUDA")
    cuda_cflags: list[str] = []
    if with_cuda:
        cuda_cflags = ["-O0", "-g", "-G"] if debug_build() else ["-O3", "-lineinfo"]
    ldflags = ["-fopenmp"] if sys.platform.startswith("linux") else []
    arch = _cuda_arch_list() if with_cuda else None
    digest = hashlib.sha256()
    for path in sorted(CSRC.iterdir()):
        if path.suffix in (".h", ".cuh", ".cpp", ".cu"):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    for part in (
        torch.__version__,
        str(torch.version.cuda),
        str(arch),
        sys.version,
        platform.platform(),
        _cpu_signature(),
        " ".join(cflags),
        " ".join(cuda_cflags),
        " ".join(ldflags),
    ):
        digest.update(part.encode())
    key = digest.hexdigest()[:16]
    name = f"{NAMESPACE}_{'cuda' if with_cuda else 'cpu'}_{key}"
    return BuildPlan(
        with_cuda=with_cuda,
        name=name,
        directory=cache_root() / "ext" / name,
        sources=sources,
        cflags=tuple(cflags),
        cuda_cflags=tuple(cuda_cflags),
        ldflags=tuple(ldflags),
        arch_list=arch,
    )


# Where CUDA toolkits are installed when the nvcc on PATH does not tell (a wrapper).
CUDA_SEARCH_ROOTS = (Path("/usr/local"),)


def cuda_home() -> Path | None:
    """The CUDA toolkit root the build uses: one holding bin/nvcc and include/cuda_runtime.h.

    CUDA_HOME (or CUDA_PATH) when set, as torch does. Otherwise torch takes the folder
    above the nvcc on PATH, which is wrong when that nvcc is a wrapper script outside
    the toolkit; then the real path of nvcc, /usr/local/cuda and /usr/local/cuda-*
    (newest first) are tried in turn.
    """
    from torch.utils import cpp_extension

    explicit = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    else:
        if cpp_extension.CUDA_HOME:
            candidates.append(Path(cpp_extension.CUDA_HOME))
        nvcc = shutil.which("nvcc")
        if nvcc:
            candidates.append(Path(os.path.realpath(nvcc)).parent.parent)
        for root in CUDA_SEARCH_ROOTS:
            candidates.append(root / "cuda")
            candidates.extend(sorted(root.glob("cuda-*"), reverse=True))
    for home in candidates:
        if (home / "bin" / "nvcc").is_file() and (home / "include" / "cuda_runtime.h").is_file():
            return home
    return None


def toolchain_problem(with_cuda: bool) -> str | None:
    """Why the extension cannot be built here, checked without building; None if it can."""
    if with_cuda in _failed:
        return _failed[with_cuda]
    if with_cuda in _loaded or plan_is_built(with_cuda):
        return None
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja): the extension cannot be built"
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler ({cxx!r} not found): the extension cannot be built"
    if with_cuda and cuda_home() is None:
        return (
            "no CUDA toolkit found (bin/nvcc and include/cuda_runtime.h; set CUDA_HOME): "
            "the CUDA extension cannot be built"
        )
    return None


def plan_is_built(with_cuda: bool) -> bool:
    try:
        return plan(with_cuda).library.exists()
    except Exception:  # e.g. no GPU to query: simply not built
        return False


_NOISE = re.compile(
    r"^(ninja: |FAILED: |\[\d+/\d+\] |\d*\s*\||In file included|compilation terminated)"
)


def key_error_lines(text: str, limit: int = _MAX_ERROR_LINES) -> str:
    """The compiler's error lines from a build log, without the build tool's noise."""
    # torch prefixes the log with "Error building extension '<name>': ".
    text = re.sub(r"Error building extension '[^']*':\s*", "\n", text)
    keep: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or _NOISE.match(line) or (" -c " in line and " -o " in line):
            continue
        if re.search(r"\berror\b|fatal|undefined reference|cannot find", line, re.IGNORECASE):
            line = re.sub(r"^\S*/(?=[^/\s]+:\d+)", "", line)  # keep file:line, drop the folder
            if line not in keep:
                keep.append(line)
        if len(keep) >= limit:
            break
    if not keep:
        tail = [ln.strip() for ln in text.splitlines() if ln.strip()]
        keep = tail[-3:] if tail else ["unknown build failure"]
    return "; ".join(keep)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _mark_used(p: BuildPlan) -> None:
    with contextlib.suppress(OSError):  # a read-only cache still loads
        (p.directory / LAST_USED).touch()


def prune_stale(keep: Path, now: float | None = None) -> list[Path]:
    """Remove cache entries other than ``keep`` unused for STALE_AFTER_DAYS; returns them."""
    import fcntl

    root = keep.parent
    now = time.time() if now is None else now
    removed: list[Path] = []
    for entry in sorted(root.glob(f"{NAMESPACE}_*")):
        if entry == keep or not entry.is_dir():
            continue
        stamp = entry / LAST_USED
        try:
            used = (stamp if stamp.exists() else entry).stat().st_mtime
        except OSError:
            continue
        if now - used < STALE_AFTER_DAYS * 86400:
            continue
        lock = entry.with_suffix(".lock")
        try:
            with open(lock, "a+") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # busy: skip
                shutil.rmtree(entry, ignore_errors=True)
                lock.unlink(missing_ok=True)
        except OSError:
            continue
        removed.append(entry)
    return removed


@contextlib.contextmanager
def _progress(message: str) -> Iterator[None]:
    from rich.console import Console

    console = Console(stderr=True)
    start = time.perf_counter()
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        console.print(message, highlight=False, soft_wrap=True)
        yield
    seconds = time.perf_counter() - start
    console.print(f"invbench: extension ready in {seconds:.0f} s", highlight=False, soft_wrap=True)


def _compile(p: BuildPlan) -> None:
    from torch.utils import cpp_extension

    p.directory.mkdir(parents=True, exist_ok=True)
    # A build killed half-way leaves torch's own lock file behind, and the next build
    # would wait on it forever. Our flock makes us the only builder of this folder.
    (p.directory / "lock").unlink(missing_ok=True)
    saved = {k: os.environ.get(k) for k in ("TORCH_CUDA_ARCH_LIST", "MAX_JOBS", "CUDA_HOME")}
    saved_home = cpp_extension.CUDA_HOME
    if p.arch_list:
        os.environ["TORCH_CUDA_ARCH_LIST"] = p.arch_list
    home = cuda_home() if p.with_cuda else None
    if home is not None:  # torch reads its module-level CUDA_HOME for headers, libs, nvcc
        os.environ["CUDA_HOME"] = str(home)
        cpp_extension.CUDA_HOME = str(home)
    os.environ.setdefault("MAX_JOBS", str(min(8, os.cpu_count() or 1)))
    try:
        kwargs: dict[str, Any] = {
            "name": p.name,
            "sources": [str(s) for s in p.sources],
            "extra_cflags": list(p.cflags),
            "extra_ldflags": list(p.ldflags),
            "extra_include_paths": [str(CSRC)],
            "build_directory": str(p.directory),
            "is_python_module": False,
            "verbose": False,
        }
        if p.with_cuda:
            kwargs["extra_cuda_cflags"] = list(p.cuda_cflags)
        cpp_extension.load(**kwargs)
    finally:
        cpp_extension.CUDA_HOME = saved_home
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load(with_cuda: bool) -> BuildPlan:
    """Build (if needed) and load the extension; its ops appear under torch.ops.invbench_ext.

    Raises ExtensionBuildError with the compiler's key error lines on failure.
    """
    with _lock:
        if with_cuda in _loaded:
            return _loaded[with_cuda]
        if with_cuda in _failed:
            raise ExtensionBuildError(_failed[with_cuda])
        other = _loaded.get(not with_cuda)
        if other is not None:
            # One library per process: the ops are defined once. A CUDA build serves CPU too.
            if other.with_cuda:
                return other
            raise ExtensionBuildError(
                "the CPU-only extension is already loaded in this process; "
                "the CUDA one cannot be added (start a new process)"
            )
        problem = toolchain_problem(with_cuda)
        if problem is not None:
            _failed[with_cuda] = problem
            raise ExtensionBuildError(problem)
        p = plan(with_cuda)
        try:
            with _file_lock(p.directory.with_suffix(".lock")):
                if p.library.exists():
                    torch.ops.load_library(str(p.library))  # type: ignore[no-untyped-call]
                else:
                    what = "CPU and CUDA" if with_cuda else "CPU"
                    if debug_build():
                        what += f", unoptimised: {DEBUG_ENV} is set"
                    arch = f" for sm {p.arch_list}" if p.arch_list else ""
                    with _progress(
                        f"invbench: building the involution extension ({what}{arch}); "
                        "first use only, cached afterwards"
                    ):
                        _compile(p)
                    with contextlib.suppress(OSError):
                        prune_stale(p.directory)
                _mark_used(p)
        except Exception as exc:
            reason = "extension build failed: " + key_error_lines(str(exc))
            _failed[with_cuda] = reason
            raise ExtensionBuildError(reason) from None
        _loaded[with_cuda] = p
        if debug_build():  # built now or found in the cache: its timings mean little
            print(
                f"invbench: {DEBUG_ENV} is set: the involution extension is an unoptimised "
                "debug build, many times slower than the real one",
                file=sys.stderr,
            )
        return p
