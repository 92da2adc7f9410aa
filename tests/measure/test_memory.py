"""Peak memory on the CPU: exact bytes from torch's allocator, and a quiet profiler."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import torch

from invbench.measure.memory import below_resolution, cpu_peak_bytes, measure_peak

CPU = torch.device("cpu")


def buffer(n: int) -> torch.Tensor:
    return torch.empty(n, dtype=torch.uint8)


def test_peak_is_the_highest_running_total_of_the_calls_allocations() -> None:
    def call() -> torch.Tensor:
        a = buffer(1000)
        b = buffer(3000)  # a and b alive together: 4000
        del a
        c = buffer(500)  # 3500 now, below the peak
        del b
        return c

    assert cpu_peak_bytes(call) == 4000


def test_peak_does_not_count_what_was_allocated_before_the_call() -> None:
    held = buffer(1 << 20)
    peak = measure_peak(lambda: held + 1, CPU)  # the result, and the 1 as a tensor
    assert peak.method == "torch-cpu-peak"
    assert 1 << 20 <= peak.bytes <= (1 << 20) + 64


def test_the_collector_is_off_during_the_call() -> None:
    """Garbage made before the call must not be freed inside it, where its free would
    cancel the call's own allocations in the running total."""
    seen: list[bool] = []
    measure_peak(lambda: seen.append(gc.isenabled()), CPU)
    assert seen == [False]
    assert gc.isenabled()


def test_no_full_collection_per_measurement(monkeypatch: Any) -> None:
    """A full collection takes about 0.2 s with torch loaded; a run measures every arm."""

    def refuse(*args: Any) -> int:
        raise AssertionError("gc.collect called")

    monkeypatch.setattr(gc, "collect", refuse)
    assert measure_peak(lambda: buffer(4096), CPU).bytes == 4096
    assert gc.isenabled()


def test_peak_counts_backward_temporaries() -> None:
    x = torch.randn(64, 64, requires_grad=True)

    def fwd_bwd() -> tuple[torch.Tensor, ...]:
        y = (x * 2).exp()  # two 16 KiB activations saved or freed along the way
        return torch.autograd.grad(y.sum(), (x,))

    peak = cpu_peak_bytes(fwd_bwd)
    assert 2 * 64 * 64 * 4 <= peak <= 6 * 64 * 64 * 4


def test_the_profiler_leaves_nothing_on_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    cpu_peak_bytes(lambda: buffer(10))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_an_error_in_the_call_propagates_and_stderr_comes_back(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def fails() -> None:
        raise RuntimeError("kernel failed")

    with pytest.raises(RuntimeError, match="kernel failed"):
        cpu_peak_bytes(fails)
    import sys

    print("still here", file=sys.stderr, flush=True)
    assert "still here" in capfd.readouterr().err


def test_resolution_of_each_method() -> None:
    assert not below_resolution(1, "torch-cpu-peak")
    assert below_resolution(1000, "rss-hwm")  # results written by the older method
    assert not below_resolution(None, "rss-hwm")


def test_measuring_memory_does_not_import_the_compiler() -> None:
    """torch.profiler's start imports torch._inductor: seconds in a run without compile."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from invbench.measure.memory import measure_peak\n"
        "peak = measure_peak(lambda: torch.empty(1000, dtype=torch.uint8), torch.device('cpu'))\n"
        "print(peak.bytes, 'torch._inductor' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1000", "False"], out.stdout + out.stderr
