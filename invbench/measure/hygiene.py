"""What the process does around its timed batches: threads, CPUs, the collector, the host.

- The thread count is set, never inherited: ``apply_threads`` fixes torch's intra-op
  threads and every row records the count it ran with. On a shared 2-core machine an
  OpenMP team of two can wait on a preempted member for a whole time slice; one thread
  is the default of the small suites for that reason (``threads`` in a suite's run table).
- ``apply_affinity`` pins the process to chosen CPUs (Linux ``sched_setaffinity``).
- ``collector_paused`` keeps Python's garbage collector from running inside a timed batch.
- ``HostLoad`` reads /proc/loadavg and the hypervisor's steal time from /proc/stat, so
  each row says how busy the host was while it was timed.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import torch

_LOADAVG = Path("/proc/loadavg")
_STAT = Path("/proc/stat")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), or the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def apply_threads(threads: int | None) -> int:
    """Fix torch's intra-op thread count (None: keep torch's choice); returns the count."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return int(torch.get_num_threads())


def parse_cpus(text: str) -> list[int]:
    """'0', '0,2', '0-3' or '0-1,4': the CPU numbers, sorted; ValueError on anything else."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"--affinity: {text!r} is not a CPU list such as 0 or 0-1,3")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"--affinity: {part!r} is an empty range")
        cpus.update(range(first, last + 1))
    return sorted(cpus)


def apply_affinity(cpus: Sequence[int]) -> list[int]:
    """Pin this process (and the threads it starts later) to cpus; returns the new mask."""
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("--affinity: this platform cannot pin a process to CPUs")
    available = os.sched_getaffinity(0)
    missing = [c for c in cpus if c not in available]
    if missing:
        raise ValueError(
            f"--affinity: CPU {', '.join(map(str, missing))} is not available to this process "
            f"(available: {', '.join(map(str, sorted(available)))})"
        )
    os.sched_setaffinity(0, set(cpus))
    return sorted(os.sched_getaffinity(0))


@contextmanager
def collector_paused() -> Iterator[None]:
    """The garbage collector off for the block, as it was after (timeit and pyperf do this)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass(frozen=True)
class HostSnapshot:
    load_1m: float | None  # the kernel's one-minute load average
    steal: int | None  # jiffies the hypervisor gave to other guests, all CPUs
    total: int | None  # all jiffies, all CPUs


class HostLoad:
    """Before/after readings of the host's load; each row gets its timing window's."""

    def __init__(self, loadavg: Path = _LOADAVG, stat: Path = _STAT) -> None:
        self.loadavg = loadavg
        self.stat = stat

    def snapshot(self) -> HostSnapshot:
        load = steal = total = None
        with suppress(OSError, ValueError, IndexError):
            load = float(self.loadavg.read_text().split()[0])
        try:
            for line in self.stat.read_text().splitlines():
                if line.startswith("cpu "):
                    values = [int(v) for v in line.split()[1:]]
                    # user nice system idle iowait irq softirq steal [guest guest_nice]:
                    # guest time is already counted in user and nice
                    total = sum(values[:8])
                    steal = values[7] if len(values) > 7 else 0
                    break
        except (OSError, ValueError):
            pass
        return HostSnapshot(load, steal, total)

    @staticmethod
    def steal_pct(before: HostSnapshot, after: HostSnapshot) -> float | None:
        """Share of all CPU time, between two snapshots, that the hypervisor stole."""
        if (
            before.steal is None
            or before.total is None
            or after.steal is None
            or after.total is None
        ):
            return None
        spent = after.total - before.total
        if spent <= 0:
            return None
        return 100.0 * (after.steal - before.steal) / spent
