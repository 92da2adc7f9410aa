"""Measured ceilings, timed once per run: copy bandwidth and matmul throughput.

A row's gbps divided by the measured copy bandwidth (roofline_frac) says how close a
kernel comes to what this device actually moves, not to a datasheet number.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable
from typing import Any

import torch

from invbench.core.choices import CacheMode
from invbench.measure.ceiling_record import copy_gbps
from invbench.measure.precision import tf32_in_effect
from invbench.measure.timing import make_timer

__all__ = ["copy_bandwidth", "copy_gbps", "matmul_throughput", "measure_ceilings"]

# Sizes: large enough to leave the caches behind, small enough to take well under 2 s.
_GPU_COPY_BYTES = 1 << 30
_CPU_COPY_BYTES = 64 << 20
_GPU_MATMUL_N = 8192
_CPU_MATMUL_N = 1024
_SAMPLES = 5


def _median_ms(fn: Callable[[], object], device: torch.device) -> float:
    timer = make_timer(device, CacheMode.HOT)
    timer.sample(fn, 2)  # warm-up
    return statistics.median(timer.sample(fn, _SAMPLES))


def copy_bandwidth(device: torch.device, nbytes: int) -> dict[str, Any]:
    """dst.copy_(src) of nbytes; bandwidth counts the bytes read plus the bytes written."""
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms = _median_ms(lambda: dst.copy_(src), device)
    moved = 2 * src.numel() * src.element_size()
    return {"gbps": moved / ms / 1e6, "bytes_moved": moved, "median_ms": ms}


def matmul_throughput(device: torch.device, n: int, dtype: torch.dtype) -> dict[str, Any]:
    """An n x n x n matmul under the precision settings in force (the run's policy).

    ``tf32`` records whether a float32 matmul could use TF32: its ceiling is then the
    tensor cores', not the float32 units'.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    ms = _median_ms(lambda: a @ b, device)
    name = str(dtype).removeprefix("torch.")
    tf32 = tf32_in_effect(name, device.type)
    return {"tflops": 2 * n**3 / ms / 1e9, "n": n, "dtype": name, "tf32": tf32}


def measure_ceilings(device: torch.device) -> dict[str, Any]:
    """Copy bandwidth and matmul throughput of device; failures leave a reason instead."""
    gpu = device.type == "cuda"
    out: dict[str, Any] = {"device": str(device), "copy": None, "matmul": []}
    nbytes = _GPU_COPY_BYTES if gpu else _CPU_COPY_BYTES
    try:
        out["copy"] = copy_bandwidth(device, nbytes)
    except Exception as exc:  # out of memory on a crowded device, for one
        out["copy_error"] = f"{type(exc).__name__}: {exc}"
    dtypes = [torch.float32, torch.bfloat16] if gpu else [torch.float32]
    for dtype in dtypes:
        try:
            out["matmul"].append(
                matmul_throughput(device, _GPU_MATMUL_N if gpu else _CPU_MATMUL_N, dtype)
            )
        except Exception as exc:
            out["matmul"].append({"dtype": str(dtype), "error": f"{type(exc).__name__}: {exc}"})
    gc.collect()
    if gpu:
        torch.cuda.empty_cache()
    return out
