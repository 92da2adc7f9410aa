"""The runner turns every failure into a row and keeps what it measured."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from invbench.backends.base import Backend, Closure, InvolutionBackend, Workload
from invbench.backends.registry import Registry
from invbench.backends.unfold import UnfoldBackend, unfold_involution
from invbench.core.spec import Case, DeviceKind, Dtype, Geometry, Mode, Status
from invbench.core.stats import StopPolicy
from invbench.running.engine import Engine
from invbench.running.plan import RunPlan
from invbench.storage.results import ResultWriter, load_results

GEOM = Geometry(batch=2, channels=8, height=10, width=9, kernel_size=3, stride=2, groups=2)


class Wrong(InvolutionBackend):
    name = "wrong"
    description = "adds one"

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        k, s, p, d = geom.kernel_size, geom.stride, geom.pad, geom.dilation
        return unfold_involution(x, weight, k, s, p, d) + 1e-2


class Lazy(InvolutionBackend):
    """Leaves its output unwritten (torch.empty), which the poisoned check must catch."""

    name = "lazy"
    description = "never writes"

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        from invbench.backends.base import new_output

        return new_output(geom.out_shape, x)


class Broken(InvolutionBackend):
    name = "broken"
    description = "raises"

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        raise RuntimeError("kernel launch failed\nwith details")


class Hungry(InvolutionBackend):
    name = "hungry"
    description = "runs out of memory"

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")


class Absent(Backend):
    from invbench.core.spec import Kind

    name = "absent"
    kind = Kind.BASELINE
    description = "never available"

    def availability(self, device: DeviceKind, dtype: Dtype | None = None) -> str | None:
        return "needs hardware this machine lacks"

    def build(self, work: Workload) -> Closure:
        raise AssertionError("must not be built")


class Interrupting(InvolutionBackend):
    name = "interrupting"
    description = "Ctrl-C on the second case"

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        if geom.height != GEOM.height:
            raise KeyboardInterrupt
        return unfold_involution(x, weight, geom.kernel_size, geom.stride, geom.pad, 1)


def make_registry(*backends: Backend) -> Registry:
    reg = Registry()
    reg.register(UnfoldBackend())
    for b in backends:
        reg.register(b)
    return reg


def run(tmp_path: Path, reg: Registry, cases: list[Case], modes: tuple[Mode, ...] = (Mode.FWD,)):
    plan = RunPlan(
        cases=tuple(cases),
        backends=tuple(reg.names()),
        dtypes=(Dtype.FLOAT32,),
        modes=modes,
        device=torch.device("cpu"),
        policy=StopPolicy(samples=3),
        warmup_ms=1.0,
    )
    writer = ResultWriter(tmp_path)
    return Engine(plan, reg, writer).run()


def test_failures_become_rows(tmp_path: Path) -> None:
    reg = make_registry(Wrong(), Lazy(), Broken(), Hungry(), Absent())
    rows = run(tmp_path, reg, [Case("t", "c", GEOM)], modes=(Mode.FWD, Mode.FWD_BWD))
    by = {(r.backend, r.mode): r for r in rows}
    assert len(rows) == 12
    for mode in ("fwd", "fwd+bwd"):
        assert by["unfold", mode].status == Status.OK
        assert by["unfold", mode].n_samples == 3
        assert by["wrong", mode].status == Status.INCORRECT
        assert "exceeds 0.0001" in by["wrong", mode].reason
        assert by["broken", mode].status == Status.ERROR
        assert by["broken", mode].reason == "RuntimeError: kernel launch failed with details"
        assert by["hungry", mode].status == Status.OOM
        assert by["absent", mode].status == Status.SKIPPED
        assert by["absent", mode].reason == "needs hardware this machine lacks"
    assert by["lazy", "fwd"].status == Status.INCORRECT
    assert "inf" in by["lazy", "fwd"].reason
    on_disk = load_results(tmp_path)
    assert len(on_disk.rows) == 12
    ok = on_disk.rows[on_disk.rows.status == "ok"]
    assert len(on_disk.samples) == ok.n_samples.sum() == 6


def test_interrupt_keeps_rows_already_measured(tmp_path: Path) -> None:
    reg = make_registry(Interrupting())
    second = Geometry(batch=1, channels=4, height=6, width=6, kernel_size=3, groups=1)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, reg, [Case("t", "first", GEOM), Case("t", "second", second)])
    saved = pd.read_parquet(tmp_path / "results.parquet")
    assert list(saved.case) == ["first", "first"]
    assert set(saved.status) == {"ok"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_unfold_peak_memory_covers_its_temporary(tmp_path: Path) -> None:
    geom = Geometry(batch=2, channels=64, height=28, width=28, kernel_size=7, groups=4)
    rows = run(tmp_path, make_registry(), [Case("t", "big", geom)])
    (row,) = rows
    unfold_bytes = geom.numel("out") * 49 * 4  # B*C*K*K*Ho*Wo float32: 9.8 MB
    assert row.mem_method == "torch-cpu-peak"
    assert row.peak_mem_bytes is not None
    # the unfolded patches and their product with the weights are alive at once; the
    # padded input copy and the output are small beside them
    assert 2 * unfold_bytes <= row.peak_mem_bytes <= 2.2 * unfold_bytes
    assert row.flops == 2 * geom.numel("out") * 49
    assert row.bytes == 4 * (geom.numel("x") + geom.numel("weight") + geom.numel("out"))
    assert row.max_rel_err is not None and row.max_rel_err < 1e-5


class Annotated(UnfoldBackend):
    name = "annotated"
    description = "unfold with a timing note"

    def timing_notes(self, device: DeviceKind) -> tuple[str, ...]:
        return (f"interpreted on {device.value}",)


def test_a_backends_timing_notes_are_row_warnings(tmp_path: Path) -> None:
    rows = run(tmp_path, make_registry(Annotated()), [Case("t", "c", GEOM)])
    by = {r.backend: r for r in rows}
    assert by["annotated"].status == Status.OK
    assert by["annotated"].warnings.split("; ")[0] == "interpreted on cpu"
    assert "interpreted" not in by["unfold"].warnings


def minor_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def test_a_run_leaves_the_allocator_as_a_program_has_it(tmp_path: Path) -> None:
    """After a run (memory measured on every row), a buffer freed and taken again comes
    back from the heap without page faults, as in any program under glibc's defaults.

    Pinning glibc's mmap threshold for the memory reading once made every buffer of
    64 KiB or more an mmap with a page fault per 4 KiB on every timed call: unfold read
    2x to 4x slower in a run than in a program of its own.
    """
    run(tmp_path, make_registry(), [Case("t", "x", GEOM)])
    size = 1 << 20
    for _ in range(5):
        torch.empty(size, dtype=torch.uint8).fill_(1)
    before = minor_faults()
    for _ in range(100):
        torch.empty(size, dtype=torch.uint8).fill_(1)
    # pinned, each of the 100 buffers faulted in its 256 pages afresh
    assert minor_faults() - before < 100
