"""Compile every autotuning configuration of a Triton kernel at once, on several threads.

Triton's autotuner compiles its configurations one after another, each just before
benchmarking it, so a new layer shape costs (configurations x compile time) of
wall time before the first result: for the resnet-shapes suite, 8 layers x 2
dtypes x 21 configurations of the three kernels, a few minutes of single-core
compilation on a GPU machine whose other cores sit idle. Here, before the
autotuner first sees a shape, each configuration is warmed up (compiled, not
launched) under Triton's AsyncCompileMode with a thread pool: compilations run
side by side (the MLIR passes in part, ptxas fully) and land in the kernel's
in-memory cache, where the autotuner's own launches find them. Benchmarking is
untouched: still one configuration at a time.

Best effort by design: a configuration that fails to compile here is left to the
autotuner (which reports or skips it as it always does), and a Triton without
AsyncCompileMode (before 3.5) simply compiles serially as before.

INVBENCH_TRITON_COMPILE_WORKERS sets the number of threads (default: usable
cores, at most 8; 1 turns this off).
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

MAX_DEFAULT_WORKERS = 8

_done: set[Hashable] = set()


def compile_workers() -> int:
    """Threads used to compile a kernel's configurations (1: no parallel compilation)."""
    value = os.environ.get("INVBENCH_TRITON_COMPILE_WORKERS")
    if value is not None and value.strip().isdigit():
        return max(1, int(value))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores))


def _async_compile_mode() -> Any | None:
    try:
        from triton.runtime._async_compile import AsyncCompileMode
    except ImportError:
        return None
    return AsyncCompileMode


def precompile(
    autotuner: Any, key: Hashable, grid: Any, args: tuple[Any, ...], meta: dict[str, Any]
) -> bool:
    """Warm up all of ``autotuner``'s configurations for these arguments, once per ``key``.

    Returns whether a parallel compilation ran (False: already done for this key,
    one worker, or no AsyncCompileMode in this Triton).
    """
    if key in _done:
        return False
    _done.add(key)
    mode = _async_compile_mode()
    workers = compile_workers()
    configs = list(getattr(autotuner, "configs", ()))
    if mode is None or workers < 2 or len(configs) < 2:
        return False
    pool = ThreadPoolExecutor(max_workers=min(workers, len(configs)))
    with pool, mode(pool, ignore_errors=True):  # the mode waits for its compilations
        for config in configs:
            try:
                autotuner.fn.warmup(*args, grid=grid, **meta, **config.all_kwargs())
            except Exception:  # left to the autotuner, which reports it
                continue
    return True
