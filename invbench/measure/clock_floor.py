"""Dropping batches timed at a low SM clock (nvbench's throttle filter), never all of them.

nvbench discards samples taken while the SM clock is under a share of its default
clock. Here the clock of a batch is the NVML reading taken while the GPU ran it
(NvmlSampler.last_batch_sm_mhz). With ``--min-clock F`` a batch read under F times the
device's maximum SM clock is set aside; if every batch of a row was set aside, the row
keeps them all and says so, so a throttled device still yields a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ClockFloor:
    """One row's filter; min_fraction None (the default) keeps every batch."""

    min_fraction: float | None = None
    max_clock_mhz: float | None = None
    dropped: list[float] = field(default_factory=list)
    dropped_batches: int = 0
    lowest_mhz: float | None = None  # lowest clock of a dropped batch
    restored: bool = False  # every batch was under the floor: all were kept after all

    @property
    def dropped_samples(self) -> int:
        """Samples the row lost to the floor (0 when they all came back)."""
        return 0 if self.restored else len(self.dropped)

    def __post_init__(self) -> None:
        if self.min_fraction is not None and not 0 < self.min_fraction <= 1:
            raise ValueError(f"the clock floor must be in (0, 1], got {self.min_fraction}")

    @property
    def threshold_mhz(self) -> float | None:
        if self.min_fraction is None or not self.max_clock_mhz:
            return None
        return self.min_fraction * self.max_clock_mhz

    def admit(self, samples: list[float], clock_mhz: float | None) -> list[float]:
        """The batch's samples to keep: all of them, or none when its clock was low.

        A batch without a clock reading is kept: nothing says it was slow.
        """
        threshold = self.threshold_mhz
        if threshold is None or clock_mhz is None or clock_mhz >= threshold or not samples:
            return samples
        self.dropped.extend(samples)
        self.dropped_batches += 1
        self.lowest_mhz = clock_mhz if self.lowest_mhz is None else min(self.lowest_mhz, clock_mhz)
        return []

    def final(self, kept: list[float]) -> tuple[list[float], list[str]]:
        """The row's samples and its notes; every dropped sample comes back if none was kept."""
        if not self.dropped_batches:
            return kept, []
        threshold = self.threshold_mhz or 0.0
        if not kept:
            self.restored = True
            return list(self.dropped), [
                f"low clock: every batch ran under {threshold:.0f} MHz (lowest "
                f"{self.lowest_mhz:.0f} MHz); all {len(self.dropped)} samples kept"
            ]
        return kept, [
            f"clock floor: {len(self.dropped)} samples in {self.dropped_batches} batches under "
            f"{threshold:.0f} MHz dropped (lowest {self.lowest_mhz:.0f} MHz)"
        ]
