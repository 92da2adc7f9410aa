"""Health warnings of one result row: reasons not to trust its number as it stands."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from invbench.core.noise import drift, two_modes
from invbench.core.stats import Summary
from invbench.measure.telemetry import RowTelemetry

SPREAD_LIMIT = 0.10  # IQR / median above this: noisy
SHORT_KERNEL_MS = 0.005  # medians under 5 us are dominated by launch and timer overhead
CLOCK_FRACTION = 0.75  # mean SM clock below this share of the maximum: slowed down
STEAL_LIMIT_PCT = 5.0  # the hypervisor took more than this share of the CPU time
SPLIT_SLACK = 0.05  # parts may miss the whole by this share of its median (Python dispatch)


def host_warnings(load_avg: float | None, steal_pct: float | None, cpus: int) -> list[str]:
    """The host was busier than the row's own threads while it was timed."""
    out = []
    if load_avg is not None and load_avg > cpus:
        out.append(f"loaded: load average {load_avg:.1f} on {cpus} CPUs")
    if steal_pct is not None and steal_pct > STEAL_LIMIT_PCT:
        out.append(f"steal: the hypervisor took {steal_pct:.0f}% of the CPU time while timing")
    return out


def split_warnings(whole: Summary, parts: Mapping[str, Summary]) -> list[str]:
    """The parts' medians (gen and agg) do not add up to the whole's.

    They may miss it by the sum of the p20-p80 spreads of the whole and every part, or
    by SPLIT_SLACK of its median, whichever is larger; beyond that the parts ran in other
    conditions than the whole (on a CPU, for example, memory the C library maps afresh
    for one part's buffers on every call), and the split misleads.
    """
    if len(parts) < 2 or whole.median <= 0:
        return []
    total = sum(s.median for s in parts.values())
    spread = (whole.p80 - whole.p20) + sum(s.p80 - s.p20 for s in parts.values())
    if abs(total - whole.median) <= max(spread, SPLIT_SLACK * whole.median):
        return []
    names = " + ".join(parts)
    return [
        f"split: {names} is {total / whole.median:.2f}x the layer's median ({total:.3g} ms "
        f"against {whole.median:.3g}), beyond the p20-p80 spreads"
    ]


def sample_warnings(samples: Sequence[float]) -> list[str]:
    """What the samples' order and shape say (invbench.core.noise): drift, two modes."""
    out = []
    modes = two_modes(samples)
    if modes is not None:
        out.append(modes.phrase())
    trend = drift(samples)
    if trend is not None:
        out.append(trend.phrase())
    return out


def row_warnings(
    summary: Summary | None,
    telemetry: RowTelemetry,
    max_sm_clock_mhz: float | None,
    other_processes: int | None,
    notes: Sequence[str] = (),
    target_rel_ci: float | None = None,
    floor_ms: float = 0.0,
    host_ms: float | None = None,
) -> list[str]:
    """Every warning that applies, each a short self-explaining phrase.

    floor_ms is the timer's least CI half-width (invbench.measure.timing.ci_floor_ms);
    host_ms the median host time per call (GPU rows).
    """
    out = list(notes)
    if summary is not None:
        if summary.rel_iqr > SPREAD_LIMIT:
            out.append(f"noisy: IQR is {summary.rel_iqr:.1%} of the median (> {SPREAD_LIMIT:.0%})")
        if summary.median < SHORT_KERNEL_MS:
            out.append(
                f"short: median {summary.median * 1e3:.2f} us < {SHORT_KERNEL_MS * 1e3:g} us"
            )
        half = max((summary.ci_high - summary.ci_low) / 2, floor_ms)
        rel_half = half / summary.median if summary.median > 0 else math.inf
        if target_rel_ci is not None and floor_ms > target_rel_ci * summary.median:
            out.append(
                f"timer-bound: the timer resolves +/-{floor_ms * 1e3:.2g} us, "
                f"{floor_ms / summary.median:.1%} of the median (> target {target_rel_ci:.1%})"
            )
        elif target_rel_ci is not None and rel_half > target_rel_ci:
            out.append(f"unconverged: median CI +/-{rel_half:.1%} > target {target_rel_ci:.1%}")
        if host_ms is not None and host_ms > summary.median:
            out.append(
                f"launch-bound: the host takes {host_ms * 1e3:.1f} us per call to enqueue "
                f"{summary.median * 1e3:.1f} us of GPU work"
            )
    if telemetry.throttled:
        out.append(f"throttled: {telemetry.throttle_reasons}")
    if (
        telemetry.sm_clock_mhz is not None
        and max_sm_clock_mhz
        and telemetry.sm_clock_mhz < CLOCK_FRACTION * max_sm_clock_mhz
    ):
        out.append(
            f"low clock: mean SM clock {telemetry.sm_clock_mhz:.0f} MHz < "
            f"{CLOCK_FRACTION:.0%} of max {max_sm_clock_mhz:.0f} MHz"
        )
    if other_processes:
        out.append(f"shared GPU: {other_processes} other process(es) on the device")
    return out
