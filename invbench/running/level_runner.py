"""The layer and model levels' case x backend loop (the op level is invbench.running.runner).

For each (case, dtype, mode) it builds one input (and, at the layer level, one set
of layer parameters; at the model level, one set of network weights per model)
shared by every backend, checks each backend against its float64 reference, measures
its peak memory, warms it up, and then times all backends interleaved (A B C,
C B A, ...). At the layer level each involution backend's round also times its
generation and aggregation closures on the same input, alternating with the whole
layer sample by sample, so drift and load hit the three alike. Stopping follows
the plan's policy on the whole layer's (or model's) samples.

Rows carry the same NVML telemetry and health warnings as op-level rows, and the
time cap counts wall time spent sampling (L2 flushes and synchronisation
included), as the op level's does.

Failures become rows with a status and a reason; they never stop the run.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from invbench.backends.base import Backend, Closure, poisoned_outputs
from invbench.backends.registry import Registry
from invbench.core.spec import Case, DeviceKind, Dtype, Kind, Level, Mode, Status
from invbench.core.stats import StopReason, summarize, warmup_calls
from invbench.measure.health import row_warnings
from invbench.measure.memory import measure_peak
from invbench.measure.telemetry import NvmlSampler
from invbench.measure.timing import Timer, make_timer
from invbench.models.count import count_macs
from invbench.models.resnet import Network
from invbench.operator.reference import relative_error
from invbench.running.layer_level import (
    ConvLayer,
    LayerClosures,
    LayerFuser,
    build_layer_closures,
    layer_cost,
    layer_support,
    make_layer,
    reference_layer_outputs,
)
from invbench.running.model_level import (
    MODEL_TOLERANCE,
    eval_logits,
    make_inputs,
    make_model,
    model_closure,
    model_for,
    prepare_model,
    reference_logits,
)
from invbench.running.runner import TOLERANCE, RunPlan, default_sampler
from invbench.storage.results import KEY_COLUMNS, ResultRow, ResultWriter

ROUND_MS = 10.0  # time each arm gets per interleaved round
PROBE_CALLS = 3
CHECKED_IMAGES = 2  # model level: images of the batch checked against float64


@dataclass
class _Arm:
    backend: Backend
    base: dict[str, Any]
    parts: dict[str, Closure]  # "total", and at the layer level "gen" and "agg"
    compile_ms: float
    max_rel_err: float | None
    peak_bytes: int | None
    mem_method: str
    estimate_ms: float = 0.0
    elapsed_s: float = 0.0  # wall time spent sampling
    samples: dict[str, list[float]] = field(default_factory=dict)
    stop: StopReason | None = None
    error: tuple[Status, str] | None = None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def max_error(actual: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...]) -> float:
    return max(relative_error(a, e) for a, e in zip(actual, expected, strict=True))


class LevelRunner:
    def __init__(
        self,
        plan: RunPlan,
        level: Level,
        registry: Registry,
        writer: ResultWriter,
        on_row: Callable[[ResultRow], None] | None = None,
        on_status: Callable[[str], None] | None = None,
        *,
        sampler: NvmlSampler | None = None,
        copy_gbps: float | None = None,
        skip: Iterable[tuple[Any, ...]] = (),
        wall_clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if level is Level.OP:
            raise ValueError("the op level runs in invbench.running.runner.Runner")
        self.plan = plan
        self.level = level
        self.registry = registry
        self.writer = writer
        self.on_row = on_row or (lambda row: None)
        self.on_status = on_status or (lambda text: None)
        self.device_kind = DeviceKind(plan.device.type)
        self.timer: Timer = make_timer(plan.device, plan.cache_mode)
        self.sampler = sampler or default_sampler(plan.device)
        self.copy_gbps = copy_gbps  # measured copy bandwidth: layer rows get roofline_frac
        self.skip = set(skip)  # row keys already measured (resume)
        self.wall_clock = wall_clock
        self._other_processes: int | None = None
        if plan.device.type == "cuda":  # cuDNN picks its fastest conv per shape (in warm-up)
            torch.backends.cudnn.benchmark = True
        self._macs: dict[tuple[str, int, int], int] = {}

    # -- rows -----------------------------------------------------------------
    def _base(self, case: Case, backend: Backend, dtype: Dtype, mode: Mode) -> dict[str, Any]:
        g = case.geometry
        common = dict(
            suite=case.suite,
            case=case.name,
            backend=backend.name,
            kind=backend.kind.value,
            device=self.device_kind.value,
            dtype=dtype.value,
            mode=mode.value,
            batch=g.batch,
            height=g.height,
            width=g.width,
            level=self.level.value,
        )
        if self.level is Level.MODEL:
            # channels/height/width describe the input images; kernel fields do not apply
            return dict(
                common,
                channels=g.channels,
                kernel_size=0,
                stride=0,
                dilation=0,
                groups=0,
                padding=0,
                out_height=0,
                out_width=0,
                model=model_for(backend, case.depth) or "",
            )
        if isinstance(backend, ConvLayer):
            cost = backend.cost(g, dtype, mode)  # the conv's own cost
        else:
            cost = layer_cost(g, dtype, mode, fused=isinstance(backend, LayerFuser))
        return dict(
            common,
            **g.row_fields(),
            flops=cost.flops,
            bytes=cost.bytes,
        )

    def _emit(self, row: ResultRow, samples: list[float] | None = None) -> None:
        self.writer.add(row, samples or [])
        self.on_row(row)

    def _fail(self, base: dict[str, Any], status: Status, reason: str) -> None:
        tele = self.sampler.take(base["backend"])
        self._emit(ResultRow(**base, status=status.value, reason=reason, telemetry=tele.source))

    # -- the loop -------------------------------------------------------------
    def run(self) -> list[ResultRow]:
        self.sampler.start()
        try:
            for case in self.plan.cases:
                for dtype in self.plan.dtypes:
                    for mode in self.plan.modes:
                        self._other_processes = self.sampler.other_processes()
                        try:
                            if self.level is Level.LAYER:
                                self._layer_group(case, dtype, mode)
                            else:
                                self._model_group(case, dtype, mode)
                        finally:
                            self._release()
        finally:
            self.sampler.stop()
        return self.writer.rows

    def _runnable(
        self, case: Case, dtype: Dtype, mode: Mode, backends: list[Backend]
    ) -> list[tuple[Backend, dict[str, Any]]]:
        """Backends that can run the group; the others become skipped rows."""
        out = []
        support = layer_support(case.geometry) if self.level is Level.LAYER else None
        for b in backends:
            if self.level is Level.MODEL and model_for(b, case.depth) is None:
                continue  # e.g. dwconv: no network of ours uses it
            base = self._base(case, b, dtype, mode)
            if tuple(base[k] for k in KEY_COLUMNS) in self.skip:
                continue  # measured before the run was interrupted
            reason = b.availability(self.device_kind, dtype)
            pure_fuser = isinstance(b, LayerFuser) and b.kind is Kind.INVOLUTION
            if reason is None and self.level not in b.levels:
                reason = f"{b.name} does not run at the {self.level.value} level"
            if reason is None and pure_fuser and mode is not Mode.FWD:
                reason = f"{b.name} is an inference kernel (fwd only)"
            if reason is None and self.level is Level.LAYER:
                if not isinstance(b, ConvLayer) and support is not None:
                    reason = support
                elif b.kind is Kind.BASELINE and not isinstance(b, ConvLayer):
                    reason = f"{b.name} has no layer-level form"
            if reason is not None:
                self._fail(base, Status.SKIPPED, reason)
            else:
                out.append((b, base))
        return out

    def _layer_group(self, case: Case, dtype: Dtype, mode: Mode) -> None:
        plan, g = self.plan, case.geometry
        label = f"{case.name} {dtype.value} {mode.value}"
        runnable = self._runnable(case, dtype, mode, [self.registry.get(n) for n in plan.backends])
        if not runnable:
            return
        self.on_status(f"{label}: inputs and float64 reference")
        tdtype = getattr(torch, dtype.value)
        try:
            gen = torch.Generator(device="cpu").manual_seed(plan.seed)
            x = torch.randn(g.x_shape, generator=gen).to(plan.device, tdtype)
            grad_out = torch.randn(g.out_shape, generator=gen).to(plan.device, tdtype)
            source = make_layer(g, plan.seed) if layer_support(g) is None else None
            expected = None
            if source is not None and any(b.kind is Kind.INVOLUTION for b, _ in runnable):
                expected = reference_layer_outputs(source, x, grad_out, mode)
        except Exception as exc:
            status = Status.OOM if _is_oom(exc) else Status.ERROR
            for _, base in runnable:
                self._fail(base, status, f"inputs: {_one_line(exc)}")
            return
        arms = []
        for b, base in runnable:
            self.on_status(f"{label}: {b.name}: build, check, warm up")
            try:
                closures = build_layer_closures(b, g, source, x, grad_out, mode, plan.seed)
                arm = self._prepare(b, base, closures, expected, TOLERANCE[dtype])
            except Exception as exc:
                self._fail(base, Status.OOM if _is_oom(exc) else Status.ERROR, _one_line(exc))
                self._release()
                continue
            if isinstance(arm, str):
                self._fail(base, Status.INCORRECT, arm)
                continue
            arms.append(arm)
        self._finish(label, arms)

    def _model_group(self, case: Case, dtype: Dtype, mode: Mode) -> None:
        plan, g = self.plan, case.geometry
        label = f"{case.name} {dtype.value} {mode.value}"
        runnable = self._runnable(case, dtype, mode, [self.registry.get(n) for n in plan.backends])
        if not runnable:
            return
        tdtype = getattr(torch, dtype.value)
        sources: dict[str, Network] = {}
        expected: dict[str, torch.Tensor] = {}
        arms = []
        try:
            images, labels = make_inputs(g, plan.device, tdtype, plan.seed)
        except Exception as exc:
            for _, base in runnable:
                self._fail(base, Status.OOM if _is_oom(exc) else Status.ERROR, _one_line(exc))
            return
        checked = images[:CHECKED_IMAGES]
        for b, base in runnable:
            name = base["model"]
            self.on_status(f"{label}: {name} with {b.name}: build, check, warm up")
            try:
                if name not in sources:
                    sources[name] = make_model(name, plan.seed)
                    expected[name] = reference_logits(sources[name], checked)
                macs = self._model_macs(name, sources[name], g.height, g.width)
                factor = 2 if mode is Mode.FWD else 6
                base = dict(base, flops=factor * macs * g.batch)
                model = prepare_model(b, sources[name], plan.device, tdtype, mode)
                err = relative_error(eval_logits(model, checked), expected[name])
                tol = MODEL_TOLERANCE[dtype]
                if not err <= tol:
                    self._fail(
                        base,
                        Status.INCORRECT,
                        f"eval logits: max relative error {err:.3g} vs float64 exceeds "
                        f"{tol:g} for {dtype.value}",
                    )
                    continue
                fn = model_closure(model, images, labels, mode)
                arm = self._prepare(b, base, LayerClosures(fn), None, 0.0)
                assert not isinstance(arm, str)
                arm.max_rel_err = err
            except Exception as exc:
                self._fail(base, Status.OOM if _is_oom(exc) else Status.ERROR, _one_line(exc))
                self._release()
                continue
            arms.append(arm)
        self._finish(label, arms)

    def _model_macs(self, name: str, model: Network, height: int, width: int) -> int:
        key = (name, height, width)
        if key not in self._macs:
            self._macs[key] = count_macs(model, (height, width)).macs
        return self._macs[key]

    # -- build, check, time ---------------------------------------------------
    def _prepare(
        self,
        backend: Backend,
        base: dict[str, Any],
        closures: LayerClosures,
        expected: tuple[torch.Tensor, ...] | None,
        tol: float,
    ) -> _Arm | str:
        parts: dict[str, Closure] = {"total": closures.total}
        if closures.gen is not None and closures.agg is not None:
            parts.update(gen=closures.gen, agg=closures.agg)
        t0 = time.perf_counter()
        with poisoned_outputs():
            outputs = closures.total()
        self.timer.synchronize()
        compile_ms = (time.perf_counter() - t0) * 1e3
        err: float | None = None
        if backend.kind is Kind.INVOLUTION and expected is not None:
            err = max_error(tuple(outputs), expected)
            if not err <= tol:
                return (
                    f"max relative error {err:.3g} of the layer vs float64 (reference "
                    f"aggregation) exceeds {tol:g} for {base['dtype']}"
                )
        del outputs
        try:
            peak = measure_peak(closures.total, self.plan.device)
            peak_bytes, mem_method = peak.bytes, peak.method
        except OSError as exc:
            peak_bytes, mem_method = None, f"unavailable: {_one_line(exc)}"
        estimate = 0.0
        for key, fn in parts.items():
            probe = self.timer.sample(fn, PROBE_CALLS)
            est = sorted(probe)[len(probe) // 2]
            self.timer.sample(fn, warmup_calls(est, self.plan.warmup_ms))
            if key == "total":
                estimate = est
        return _Arm(
            backend=backend,
            base=base,
            parts=parts,
            compile_ms=compile_ms,
            max_rel_err=err,
            peak_bytes=peak_bytes,
            mem_method=mem_method,
            estimate_ms=estimate,
            samples={k: [] for k in parts},
        )

    def _finish(self, label: str, arms: list[_Arm]) -> None:
        self.on_status(f"{label}: timing {len(arms)} backends")
        self._time_interleaved(arms)
        for arm in arms:
            self._emit(self._row(arm), [] if arm.error else arm.samples["total"])

    def _time_interleaved(self, arms: list[_Arm]) -> None:
        policy = self.plan.policy
        active = list(arms)
        rnd = 0
        while active:
            order = active if rnd % 2 == 0 else active[::-1]
            for arm in order:
                n = max(1, min(100, math.ceil(ROUND_MS / max(arm.estimate_ms, 1e-3))))
                if policy.samples is not None:
                    n = min(n, policy.samples - len(arm.samples["total"]))
                keys = list(arm.parts)
                if rnd % 2:
                    keys.reverse()
                t0 = self.wall_clock()
                try:
                    with self.sampler.window(arm.backend.name, timing=True):
                        self._sample(arm, keys, n)
                except Exception as exc:
                    arm.error = (
                        Status.OOM if _is_oom(exc) else Status.ERROR,
                        f"while timing: {_one_line(exc)}",
                    )
                    continue
                arm.elapsed_s += self.wall_clock() - t0
                arm.stop = policy.decide(arm.samples["total"], arm.elapsed_s)
            active = [a for a in active if a.stop is None and a.error is None]
            rnd += 1

    def _sample(self, arm: _Arm, keys: list[str], n: int) -> None:
        if len(keys) == 1:
            arm.samples[keys[0]].extend(self.timer.sample(arm.parts[keys[0]], n))
            return
        for _ in range(n):  # layer, generation, aggregation alternate sample by sample
            for key in keys:
                arm.samples[key].extend(self.timer.sample(arm.parts[key], 1))

    def _row(self, arm: _Arm) -> ResultRow:
        tele = self.sampler.take(arm.backend.name)
        common: dict[str, Any] = dict(
            compile_ms=arm.compile_ms,
            peak_mem_bytes=arm.peak_bytes,
            mem_method=arm.mem_method,
            max_rel_err=arm.max_rel_err,
            cache_mode=self.timer.cache_mode.value,
            timer=self.timer.method,
            **tele.row_fields(),
        )
        base = arm.base
        if arm.error is not None:
            return ResultRow(**base, status=arm.error[0].value, reason=arm.error[1], **common)
        s = summarize(arm.samples["total"])
        median_s = s.median / 1e3
        split: dict[str, Any] = {}
        for key in ("gen", "agg"):
            if arm.samples.get(key):
                part = summarize(arm.samples[key])
                split.update(
                    {f"{key}_ms": part.median, f"{key}_p20_ms": part.p20, f"{key}_p80_ms": part.p80}
                )
        flops, nbytes = base.get("flops", 0), base.get("bytes", 0)
        gbps = nbytes / median_s / 1e9 if nbytes else None
        policy = self.plan.policy
        warnings = row_warnings(
            s,
            tele,
            self.sampler.max_sm_clock_mhz,
            self._other_processes,
            arm.backend.timing_notes(self.device_kind),
            target_rel_ci=policy.target_rel_ci if policy.samples is None else None,
        )
        return ResultRow(
            **base,
            status=Status.OK.value,
            **s.row_fields(),
            stop_reason=arm.stop.value if arm.stop else "",
            **common,
            tflops=flops / median_s / 1e12 if flops else None,
            gbps=gbps,
            roofline_frac=gbps / self.copy_gbps if gbps and self.copy_gbps else None,
            images_per_s=base["batch"] / median_s if self.level is Level.MODEL else None,
            warnings="; ".join(warnings),
            **split,
        )

    def _release(self) -> None:
        gc.collect()
        if self.plan.device.type == "cuda":
            torch.cuda.empty_cache()
