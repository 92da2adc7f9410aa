"""The one case x backend x dtype x mode loop, for every level.

For each group (case, dtype, mode) the engine asks the plan's level strategy
(invbench.running.levels) for the group's shared inputs and references, then for
every backend: builds its closures (the build and the first call, made with outputs
poisoned, are timed apart as ``compile_ms``), checks them, measures the peak memory
of one call, and readies every part it times (the whole row, and at the layer level
generation and aggregation too): a probe estimates one call, graph mode captures
calls in a CUDA graph, and a warm-up sized from the estimate follows. On a GPU every
batch of a part, the probe included, is enqueued behind a sleep sized by that part's
own LaunchGate (hidden launches: the events time the GPU, not the host's launches),
and the host time of every call is kept apart (host_ms). The backends that pass
are then timed in interleaved rounds (A B C, C B A, ...), each until its stopping
rule says so; an arm with several parts alternates them in chunks within its round.

Failures become rows with a status and a reason (invbench.running.errors); they
never stop the run. With ``plan.isolate`` each backend x group runs this same code in
a worker process (invbench.running.isolate), so a crash or a hang becomes a row too.

Each group runs under the plan's precision policy (TF32 off for float32 unless
``plan.tf32``; cuDNN autotuning on), and every row records it. While a group runs, an
NVML sampler files clocks, power and throttle reasons under the backend being prepared
or timed, counting for the clocks only readings taken while the GPU ran a timed batch;
with ``plan.min_clock`` batches read under that share of the maximum SM clock are
dropped (never all of a row's). Each ok row gets their summary and its health
warnings. NVTX ranges name the group, and each backend's prepare, warm-up and sample
batches.

The entry point is plain: ``Engine(plan, registry, sink).run()``; ``run_group`` runs
one group for a chosen list of backends (what an isolated worker does).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import torch

from invbench.backends.base import Backend, poisoned_outputs
from invbench.backends.registry import Registry
from invbench.core.choices import CacheMode
from invbench.core.spec import Case, DeviceKind, Dtype, Mode, Status
from invbench.core.stats import summarize, warmup_calls
from invbench.measure import nvtx
from invbench.measure.clock_floor import ClockFloor
from invbench.measure.health import host_warnings, row_warnings, sample_warnings, split_warnings
from invbench.measure.hygiene import (
    HostLoad,
    HostSnapshot,
    apply_affinity,
    apply_threads,
    usable_cpus,
)
from invbench.measure.memory import measure_peak
from invbench.measure.precision import PrecisionPolicy, precision_fields, precision_policy
from invbench.measure.telemetry import NvmlSampler, nvml_index
from invbench.measure.timing import (
    Timer,
    capture_graph,
    ci_floor_ms,
    graph_calls,
    make_timer,
    probe_ms,
)
from invbench.running.arms import Arm, Part
from invbench.running.errors import classify, one_line
from invbench.running.levels import LevelStrategy, strategy_for
from invbench.running.levels.base import TOTAL, Check
from invbench.running.plan import RunPlan
from invbench.storage.results import KEY_COLUMNS, ResultRow

ROUND_MS = 10.0  # time each backend gets per interleaved round
ROUND_MAX_SAMPLES = 100
PROBE_CALLS = 3
WARMUP_BATCH = 200  # warm-up calls per batch when launches are hidden
PART_CHUNKS = 4  # an arm with several parts alternates them in this many chunks per round

Capture = Callable[[Callable[[], object], int], Callable[[], object]]


class RowSink(Protocol):
    """Where rows go: a ResultWriter, a worker's in-memory list, or anything with these."""

    rows: list[ResultRow]

    def add(self, row: ResultRow, samples_ms: Sequence[float] = ()) -> None: ...


def default_sampler(device: torch.device, ignore_pids: Iterable[int] = ()) -> NvmlSampler:
    if device.type != "cuda":
        return NvmlSampler.unavailable(f"not a CUDA run (device {device})")
    return NvmlSampler(nvml_index(device), ignore_pids=ignore_pids)


def apply_host_settings(plan: RunPlan) -> int:
    """Pin the process to plan.affinity, fix torch's threads; returns the thread count.

    Called before anything is measured (ceilings included) and by every engine, so an
    isolated worker or a cluster task runs with the same settings as the run it serves.
    """
    if plan.affinity:
        apply_affinity(plan.affinity)
    return apply_threads(plan.threads)


def default_capture(device: torch.device) -> Capture | None:
    """How graph mode captures calls on this device; None where there are no graphs (CPU)."""
    if device.type != "cuda":
        return None

    def capture(fn: Callable[[], object], calls: int) -> Callable[[], object]:
        return capture_graph(fn, calls, device)

    return capture


class Engine:
    def __init__(
        self,
        plan: RunPlan,
        registry: Registry,
        sink: RowSink,
        on_row: Callable[[ResultRow], None] | None = None,
        on_status: Callable[[str], None] | None = None,
        *,
        timer: Timer | None = None,
        sampler: NvmlSampler | None = None,
        copy_gbps: float | None = None,
        skip: Iterable[tuple[Any, ...]] = (),
        wall_clock: Callable[[], float] = time.perf_counter,
        capture: Capture | None = None,
        strategy: LevelStrategy | None = None,
    ) -> None:
        self.plan = plan
        self.registry = registry
        self.sink = sink
        self.on_row = on_row or (lambda row: None)
        self.on_status = on_status or (lambda text: None)
        self.device_kind = DeviceKind(plan.device.type)
        self.timer: Timer = timer or make_timer(plan.device, plan.cache_mode)
        self.sampler = sampler or default_sampler(plan.device)
        if self.sampler.available:  # clocks and power over the GPU's busy time only
            self.timer.busy = self.sampler.busy
        self.copy_gbps = copy_gbps  # the run's measured copy bandwidth: rows get roofline_frac
        self.skip = set(skip)  # row keys already measured (resume)
        self.wall_clock = wall_clock
        self.capture = capture or default_capture(plan.device)
        self.strategy = strategy or strategy_for(plan.level)
        self.strategy.start(plan.device)
        apply_host_settings(plan)
        self._other_processes: int | None = None
        self.host = HostLoad()
        self._timing_from: HostSnapshot | None = None
        self._host_window: tuple[HostSnapshot, HostSnapshot] | None = None

    # -- rows -----------------------------------------------------------------
    def base(self, case: Case, backend: Backend, dtype: Dtype, mode: Mode) -> dict[str, Any]:
        return self.strategy.base(case, backend, dtype, mode, self.device_kind)

    @staticmethod
    def key(base: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(base[k] for k in KEY_COLUMNS)

    @staticmethod
    def telemetry_label(base: dict[str, Any]) -> str:
        """The sampler's window for a row: its backend at its dtype (both may share rounds)."""
        return f"{base['backend']} {base['dtype']}"

    def emit(self, row: ResultRow, samples: Sequence[float] = ()) -> None:
        self.sink.add(row, samples)
        self.on_row(row)

    def fail(self, base: dict[str, Any], status: Status, reason: str) -> None:
        tele = self.sampler.take(self.telemetry_label(base))
        precision = precision_fields(base["dtype"], self.plan.device.type)
        self.emit(
            ResultRow(
                **base, status=status.value, reason=reason, telemetry=tele.source, **precision
            )
        )

    # -- the loop -------------------------------------------------------------
    def pending(self, case: Case, dtype: Dtype, mode: Mode) -> list[Backend]:
        """The group's backends that have a row here and whose row is not yet measured."""
        backends = [self.registry.get(name) for name in self.plan.backends]
        return [
            b
            for b in backends
            if self.strategy.runs(b, case)
            and self.key(self.base(case, b, dtype, mode)) not in self.skip
        ]

    def run(self) -> list[ResultRow]:
        """Every pending group of the plan; returns the sink's rows."""
        if self.plan.isolate:
            from invbench.running.isolate import run_isolated

            run_isolated(self)
            return self.sink.rows
        self.sampler.start()
        try:
            for groups in self.plan.group_sets():
                with nvtx.range(_set_label(groups)):
                    self.run_groups([(g, self.pending(*g)) for g in groups])
        finally:
            self.sampler.stop()
        return self.sink.rows

    def run_group(self, case: Case, dtype: Dtype, mode: Mode, backends: list[Backend]) -> None:
        """One group for these backends: a row each (the sampler must be started)."""
        self.run_groups([((case, dtype, mode), backends)])

    def run_groups(self, groups: Sequence[tuple[tuple[Case, Dtype, Mode], list[Backend]]]) -> None:
        """Groups whose backends are timed in one set of interleaved rounds: a row each."""
        groups = [(g, backends) for g, backends in groups if backends]
        if not groups:
            return
        try:
            with precision_policy(PrecisionPolicy(tf32=self.plan.tf32)):
                arms = [
                    arm
                    for (case, dtype, mode), backends in groups
                    for arm in self.prepare_group(case, dtype, mode, backends)
                ]
                label = _set_label([g for g, _ in groups])
                self.on_status(f"{label}: timing {len(arms)} rows")
                self._time_interleaved(arms)
                self.finish_group(arms)
        finally:
            self._release()

    def prepare_group(
        self, case: Case, dtype: Dtype, mode: Mode, backends: list[Backend]
    ) -> list[Arm]:
        """Rows for what cannot run; the arms that passed their check, ready to time.

        With ``round_of`` and ``finish_group`` this is the group in steps, for a driver
        that interleaves the rounds of two processes (invbench.running.lockstep).
        """
        label = f"{case.name} {dtype.value} {mode.value}"
        runnable: list[tuple[Backend, dict[str, Any]]] = []
        for b in backends:
            base = self.base(case, b, dtype, mode)
            reason = self.strategy.skip_reason(case, b, dtype, mode, self.device_kind)
            if reason is not None:
                self.fail(base, Status.SKIPPED, reason)
            else:
                runnable.append((b, base))
        if not runnable:
            return []
        self._other_processes = self.sampler.other_processes()
        self.on_status(f"{label}: inputs and float64 reference")
        try:
            group = self.strategy.prepare(
                case, dtype, mode, [b for b, _ in runnable], self.plan.device, self.plan.seed
            )
        except Exception as exc:
            for _, base in runnable:
                self.fail(base, classify(exc), f"inputs: {one_line(exc)}")
            return []
        arms: list[Arm] = []
        for b, base in runnable:
            self.on_status(f"{label}: {self.strategy.describe(b, base)}: build, check, warm up")
            try:
                window = self.sampler.window(self.telemetry_label(base), timing=False)
                with nvtx.range(f"{b.name}/prepare"), window:
                    arm = self._prepare(group, b, base)
            except Exception as exc:
                self.fail(base, classify(exc), one_line(exc))
                self._release()
                continue
            if isinstance(arm, str):
                self.fail(base, Status.INCORRECT, arm)
                continue
            arms.append(arm)
        return arms

    def finish_group(self, arms: list[Arm]) -> None:
        """A row for every arm of the group (its samples, or the error that stopped it)."""
        for arm in arms:
            self.emit(self._row(arm), [] if arm.error else arm.total.samples)

    # -- build, check, ready --------------------------------------------------
    def _prepare(self, group: Any, backend: Backend, base: dict[str, Any]) -> Arm | str:
        """Build, check, measure memory and ready every part; a string is a failed check."""
        t0 = time.perf_counter()
        built = self.strategy.build(group, backend, base)
        build_s = time.perf_counter() - t0
        base.update(built.fields)
        verdict = Check()
        if built.precheck is not None:
            verdict = built.precheck()
            if verdict.failure is not None:
                return verdict.failure
        total = built.parts[TOTAL]
        t1 = time.perf_counter()
        with poisoned_outputs():
            outputs = total()
        self.timer.synchronize()
        compile_ms = (build_s + time.perf_counter() - t1) * 1e3
        if built.check is not None:
            verdict = built.check(outputs)
            if verdict.failure is not None:
                return verdict.failure
        del outputs
        try:
            peak = measure_peak(total, self.plan.device)
            peak_bytes, mem_method = peak.bytes, peak.method
        except OSError as exc:
            peak_bytes, mem_method = None, f"unavailable: {one_line(exc)}"
        arm = Arm(backend, base, compile_ms, verdict, peak_bytes, mem_method)
        arm.notes.extend(backend.timing_notes(self.device_kind))
        for name, fn in built.parts.items():
            arm.parts[name] = self._ready(arm, Part(name, fn))
        return arm

    def _ready(self, arm: Arm, part: Part) -> Part:
        """Probe, capture (graph mode), decide on hidden launches and warm up one part."""
        gpu = self.plan.device.type == "cuda"
        part.floor = ClockFloor(self.plan.min_clock, self.sampler.max_sm_clock_mhz)
        # GPU time from a hidden probe: an unhidden one of a short kernel times its launch
        part.estimate_ms = probe_ms(self.timer, part.fn, PROBE_CALLS, part.gate if gpu else None)
        part.cache_mode = self.timer.cache_mode if gpu else CacheMode.HOT
        if self.timer.cache_mode is CacheMode.GRAPH and self.capture is not None:
            calls = graph_calls(part.estimate_ms)
            try:
                part.fn = self.capture(part.fn, calls)
                part.calls = calls
                part.cache_mode = CacheMode.GRAPH
            except Exception as exc:
                part.cache_mode = CacheMode.HOT
                arm.notes.append(
                    f"{part.prefix}graph capture failed, measured hot: {one_line(exc)}"
                )
                self.timer.synchronize()
        part.hide_launch = gpu  # every GPU batch, behind this part's own gate
        remaining = math.ceil(warmup_calls(part.estimate_ms, self.plan.warmup_ms) / part.calls)
        with nvtx.range(f"{part.label(arm.backend.name)}/warmup"):
            while remaining > 0:
                n = min(remaining, WARMUP_BATCH) if part.hide_launch else remaining
                self.timer.sample(part.fn, n, hide_launch=part.hide_launch, gate=part.gate)
                remaining -= n
        return part

    # -- timing ---------------------------------------------------------------
    def _time_interleaved(self, arms: list[Arm]) -> None:
        self.begin_timing()
        try:
            self._rounds(arms)
        finally:
            self.end_timing()

    def begin_timing(self) -> None:
        """The start of a group's timed rounds: the host's load is read from here..."""
        self._timing_from = self.host.snapshot()

    def end_timing(self) -> None:
        """...to here; every row of the group records that window's load and steal."""
        if self._timing_from is not None:
            self._host_window = (self._timing_from, self.host.snapshot())

    def _host_fields(self) -> dict[str, Any]:
        """threads, load_avg and steal_pct of the group just timed."""
        fields: dict[str, Any] = {"threads": torch.get_num_threads()}
        if self._host_window is not None:
            before, after = self._host_window
            fields["load_avg"] = after.load_1m
            fields["steal_pct"] = HostLoad.steal_pct(before, after)
        return fields

    def _rounds(self, arms: list[Arm]) -> None:
        # With interleave_dtypes and adaptive stopping, every row of the set stays in the
        # rotation until the last one's rule says stop, so all its samples come from the
        # same stretch of time (a row that left early would be compared with samples taken
        # after it, in whatever state the machine was in then).
        together = self.plan.interleave_dtypes and self.plan.policy.samples is None
        active = list(arms)
        rnd = 0
        while active:
            order = active if rnd % 2 == 0 else active[::-1]
            for arm in order:
                self.round_of(arm, rnd)
            going = [a for a in active if a.stop is None and a.error is None]
            active = [a for a in active if a.error is None] if together and going else going
            rnd += 1

    def round_of(self, arm: Arm, rnd: int) -> None:
        """One interleaved round of arm: about ROUND_MS of samples, then its stopping rule."""
        policy = self.plan.policy
        total = arm.total
        per_sample = max(total.estimate_ms * total.calls, 1e-3)
        n = max(1, min(ROUND_MAX_SAMPLES, math.ceil(ROUND_MS / per_sample)))
        if policy.samples is not None:
            n = max(1, min(n, policy.samples - len(total.samples or total.floor.dropped)))
        name = arm.backend.name
        t0 = self.wall_clock()
        try:
            window = self.sampler.window(self.telemetry_label(arm.base), timing=True)
            with nvtx.range(f"{name}/samples"), window:
                self._sample_round(arm, n, reverse=rnd % 2 == 1)
        except Exception as exc:
            arm.error = (classify(exc), f"while timing: {one_line(exc)}")
            return
        arm.elapsed_s += self.wall_clock() - t0
        floor_ms = ci_floor_ms(self.timer.resolution_ms, total.calls)
        # while the clock floor has kept nothing, the row would get what it dropped
        samples = total.samples or total.floor.dropped
        arm.stop = policy.decide(samples, arm.elapsed_s, floor_ms)

    def _sample_round(self, arm: Arm, n: int, reverse: bool) -> None:
        """n samples of every part; several parts alternate in chunks (A B C, C B A, ...)."""
        parts = list(arm.parts.values())
        if reverse:
            parts.reverse()
        chunk = n if len(parts) == 1 else math.ceil(n / PART_CHUNKS)
        done = 0
        while done < n:
            m = min(chunk, n - done)
            for part in parts:
                self._take(part, m)
            parts.reverse()
            done += m

    def _take(self, part: Part, n: int) -> None:
        batch = self.timer.sample(part.fn, n, hide_launch=part.hide_launch, gate=part.gate)
        part.batches += 1
        if not batch:  # exposed in every try: thrown away (part.gate counts it)
            return
        if self.plan.device.type == "cuda":
            part.host_ms.extend(ms / part.calls for ms in self.timer.last_host_ms)
        per_call = [ms / part.calls for ms in batch]
        part.samples.extend(part.floor.admit(per_call, self.sampler.last_batch_sm_mhz))

    # -- the row --------------------------------------------------------------
    def _row(self, arm: Arm) -> ResultRow:
        tele = self.sampler.take(self.telemetry_label(arm.base))
        arm.apply_clock_floor()
        base, notes = arm.base, arm.all_notes()
        variant = arm.backend.variant(self.device_kind, Dtype(base["dtype"]))
        common = dict(
            arm.measure_fields(),
            timer=self.timer.method,
            variant=variant,
            **self._host_fields(),
            **tele.row_fields(),
            **precision_fields(base["dtype"], self.plan.device.type),
        )
        if arm.error is not None:
            status, reason = arm.error
            return ResultRow(
                **base, status=status.value, reason=reason, warnings="; ".join(notes), **common
            )
        s = summarize(arm.total.samples)
        median_s = s.median / 1e3
        flops, nbytes = base.get("flops", 0), base.get("bytes", 0)
        gbps = nbytes / median_s / 1e9 if nbytes else None
        policy = self.plan.policy
        warnings = row_warnings(
            s,
            tele,
            self.sampler.max_sm_clock_mhz,
            self._other_processes,
            notes,
            target_rel_ci=policy.target_rel_ci if policy.samples is None else None,
            floor_ms=ci_floor_ms(self.timer.resolution_ms, arm.total.calls),
            host_ms=common["host_ms"],
        )
        warnings += sample_warnings(arm.total.samples)
        parts = arm.part_summaries()
        warnings += split_warnings(s, parts)
        warnings += host_warnings(common.get("load_avg"), common.get("steal_pct"), usable_cpus())
        return ResultRow(
            **base,
            status=Status.OK.value,
            **s.row_fields(),
            stop_reason=arm.stop.value if arm.stop else "",
            **common,
            tflops=flops / median_s / 1e12 if flops else None,
            gbps=gbps,
            roofline_frac=gbps / self.copy_gbps if gbps is not None and self.copy_gbps else None,
            warnings="; ".join(warnings),
            **arm.split_fields(parts),
            **self.strategy.row_fields(base, s),
        )

    def release(self) -> None:
        """Free what the last group held (collector pass, cached GPU memory)."""
        self._release()

    def _release(self) -> None:
        gc.collect()
        if self.plan.device.type == "cuda":
            torch.cuda.empty_cache()


def _set_label(groups: Sequence[tuple[Case, Dtype, Mode]]) -> str:
    """A set of groups as the status line and NVTX name it: "stem float32 fwd + ..."."""
    return " + ".join(f"{c.name} {d.value} {m.value}" for c, d, m in groups)


def run_plan(plan: RunPlan, registry: Registry, sink: RowSink, **options: Any) -> list[ResultRow]:
    """The plan's rows into the sink: ``Engine(plan, registry, sink, **options).run()``."""
    return Engine(plan, registry, sink, **options).run()
