"""NVTX ranges that label invbench's phases in Nsight Systems and Nsight Compute captures.

``with nvtx.range("unfold/warmup"): ...`` pushes a range on the calling thread and
pops it on exit. Without CUDA (a CPU-only torch, or no device) it does nothing, so
callers never check. A push is a cheap CPU-side call that adds no GPU work; still,
ranges go around phases and sample batches, never inside a timed call. (This
module's ``range`` shadows the builtin on purpose: call sites read ``nvtx.range``.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_state: dict[str, bool] = {}


def enabled() -> bool:
    """Whether ranges are emitted: torch was built with CUDA and a device is visible."""
    if "on" not in _state:
        _state["on"] = bool(torch.cuda.is_available())
    return _state["on"]


@contextlib.contextmanager
def range(name: str) -> Iterator[None]:
    """An NVTX push/pop range around the block; a no-op without CUDA."""
    if not enabled():
        yield
        return
    torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        torch.cuda.nvtx.range_pop()
