"""Plug-in backends of known cost, for measuring what the harness adds to a reading.

`plugin_busy_wait.py` registers them through the `invbench.backends` entry points (a
throw-away dist-info on PYTHONPATH), exactly as a third-party package would. The wait
is read from INVBENCH_BUSYWAIT_MS (default 5) when this module is imported.

- `busywait`: the closure spins on the wall clock and returns outputs computed once by
  the reference algorithm, so the check passes and the call does nothing else.
- `unfold_busywait`: the unfold forward, then the same spin: a real op plus a wait.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import torch

from invbench.backends.base import ALL_FLOATS, Closure, InvolutionBackend, Workload
from invbench.backends.unfold import unfold_involution
from invbench.core.spec import Geometry

WAIT_S = float(os.environ.get("INVBENCH_BUSYWAIT_MS", "5")) / 1e3


def busy_wait(seconds: float) -> None:
    """Spin until the monotonic clock has moved on by seconds."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _unfold(x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
    return unfold_involution(x, weight, geom.kernel_size, geom.stride, geom.pad, geom.dilation)


class BusyWait(InvolutionBackend):
    name = "busywait"
    description = "a busy wait of known duration around outputs computed once"
    dtypes = ALL_FLOATS

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        return _unfold(x, weight, geom)

    def build(self, work: Workload) -> Closure:
        outputs = super().build(work)()  # the reference algorithm's outputs, once

        def wait() -> Sequence[torch.Tensor]:
            busy_wait(WAIT_S)
            return outputs

        return wait


class UnfoldBusyWait(InvolutionBackend):
    name = "unfold_busywait"
    description = "the unfold forward followed by a busy wait of known duration"
    dtypes = ALL_FLOATS

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        out = _unfold(x, weight, geom)
        busy_wait(WAIT_S)
        return out
