"""What a run measures: the cases, backends, dtypes and modes of one level, and how."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from invbench.core.choices import CacheMode
from invbench.core.spec import Case, Dtype, Level, Mode
from invbench.core.stats import StopPolicy


@dataclass(frozen=True)
class RunPlan:
    """Everything the engine needs; any subset of its cases can run anywhere.

    A plan is plain data (picklable): an isolated worker, or any other process, runs
    part of it with ``Engine(replace(plan, cases=...), registry, sink).run()``.
    """

    cases: tuple[Case, ...]
    backends: tuple[str, ...]
    dtypes: tuple[Dtype, ...]
    modes: tuple[Mode, ...]
    device: torch.device
    policy: StopPolicy = field(default_factory=StopPolicy)
    warmup_ms: float = 25.0
    seed: int = 0
    cache_mode: CacheMode = CacheMode.COLD
    isolate: bool = False  # each backend x group in a worker process (invbench.running.isolate)
    timeout_s: float = 600.0  # per worker, with isolate
    level: Level = Level.OP  # what a row times (invbench.running.levels)
    tf32: bool = False  # allow TF32 in float32 matmuls and convolutions (off: true float32)
    min_clock: float | None = None  # drop batches under this share of the max SM clock
    threads: int | None = None  # torch's intra-op threads (None: torch's default)
    affinity: tuple[int, ...] = ()  # CPUs the process is pinned to (empty: not pinned)
    interleave_dtypes: bool = False  # a case and mode's dtypes timed in one set of rounds

    @property
    def n_rows(self) -> int:
        return len(self.cases) * len(self.backends) * len(self.dtypes) * len(self.modes)

    def groups(self) -> Iterator[tuple[Case, Dtype, Mode]]:
        """Every case x dtype x mode, in the order they run."""
        for case in self.cases:
            for dtype in self.dtypes:
                for mode in self.modes:
                    yield case, dtype, mode

    def group_sets(self) -> Iterator[tuple[tuple[Case, Dtype, Mode], ...]]:
        """The groups in the order they run, each set's rows timed in one set of rounds.

        A set is one group, or with ``interleave_dtypes`` a case and mode at every dtype,
        so that the dtypes' rows see the same states of the machine, as a group's
        backends do.
        """
        if not self.interleave_dtypes:
            for group in self.groups():
                yield (group,)
            return
        for case in self.cases:
            for mode in self.modes:
                yield tuple((case, dtype, mode) for dtype in self.dtypes)
