"""`invbench run` as a library call: options -> a plan -> a result directory."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from invbench.backends.registry import Registry
from invbench.core import allocator
from invbench.core.choices import CacheMode
from invbench.core.spec import DeviceKind, Dtype, Mode
from invbench.core.stats import StopPolicy
from invbench.core.suites import Suite, find_suite
from invbench.measure.ceilings import copy_gbps, measure_ceilings
from invbench.measure.environment import device_identity, environment, git_state
from invbench.measure.hygiene import parse_cpus
from invbench.measure.precision import PrecisionPolicy, precision_policy
from invbench.measure.telemetry import gpu_processes
from invbench.running.engine import Engine, apply_host_settings, default_sampler
from invbench.running.plan import RunPlan
from invbench.storage.results import (
    META_FILE,
    RESULT_SCHEMA_VERSION,
    ResultRow,
    ResultsError,
    ResultWriter,
    write_json,
)


class UsageError(ValueError):
    """A mistake in what the user asked for; the CLI prints it on one line and exits 2."""


@dataclass(frozen=True)
class RunRequest:
    suite: str = "resnet-shapes"
    backends: Sequence[str] = ()
    cases: Sequence[str] = ()  # non-empty: only these cases of the suite
    device: str = "auto"
    dtypes: Sequence[Dtype] = ()
    modes: Sequence[Mode] = ()
    batch: int | None = None
    samples: int | None = None
    cache_mode: CacheMode = CacheMode.COLD
    out: Path | None = None
    target_rel_ci: float | None = None  # None: the suite's
    max_time_s: float | None = None  # None: the suite's
    isolate: bool = False
    timeout_s: float = 600.0
    tf32: bool = False  # allow TF32 for float32 (default: true float32 everywhere)
    min_clock: float | None = None  # drop batches under this share of the max SM clock
    threads: int | None = None  # None: the suite's, else torch's default
    affinity: str | None = None  # CPU list to pin the run to ("0", "0-1,3")
    interleave_dtypes: bool = False  # a case's dtypes timed side by side

    def to_json(self) -> dict[str, Any]:
        """What meta.json keeps so that --resume can plan the same run again."""
        data = asdict(self)
        data["out"] = str(self.out) if self.out else None
        suite = Path(self.suite)
        if suite.suffix == ".toml":
            data["suite"] = str(suite.resolve())
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRequest:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["dtypes"] = tuple(Dtype(d) for d in values.get("dtypes", ()))
        values["modes"] = tuple(Mode(m) for m in values.get("modes", ()))
        values["backends"] = tuple(values.get("backends", ()))
        values["cases"] = tuple(values.get("cases", ()))
        values["cache_mode"] = CacheMode(values.get("cache_mode", CacheMode.COLD))
        values["out"] = Path(values["out"]) if values.get("out") else None
        return cls(**values)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                "--device cuda: no CUDA device is available (torch "
                f"{torch.__version__}, cuda {torch.version.cuda})"
            )
        return torch.device("cuda")
    raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")


def plan_run(
    request: RunRequest, registry: Registry, device: torch.device | None = None
) -> tuple[Suite, RunPlan]:
    """Validate the request against the suite and registry; every mistake is a UsageError.

    device: the device the plan runs on, when it is not this machine's (a cluster's
    workers); by default request.device resolved here.
    """
    try:
        suite = find_suite(request.suite)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    device = device if device is not None else resolve_device(request.device)
    settings = suite.settings(DeviceKind(device.type))
    if request.batch is not None and request.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {request.batch}")
    if request.samples is not None and request.samples < 1:
        raise UsageError(f"--samples must be >= 1, got {request.samples}")
    if request.target_rel_ci is not None and not 0 < request.target_rel_ci < 1:
        raise UsageError(f"--target-ci must be in (0, 1), got {request.target_rel_ci}")
    if request.max_time_s is not None and request.max_time_s <= 0:
        raise UsageError(f"--max-time must be > 0, got {request.max_time_s}")
    if request.min_clock is not None and not 0 < request.min_clock <= 1:
        raise UsageError(f"--min-clock must be in (0, 1], got {request.min_clock}")
    if request.timeout_s <= 0:
        raise UsageError(f"--timeout must be > 0, got {request.timeout_s}")
    if request.threads is not None and request.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {request.threads}")
    affinity: tuple[int, ...] = ()
    if request.affinity is not None:
        try:
            affinity = tuple(parse_cpus(request.affinity))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if request.cases:
        known_cases = [c.name for c in suite.cases]
        unknown = [c for c in request.cases if c not in known_cases]
        if unknown:
            raise UsageError(
                f"suite {suite.name!r} has no case {', '.join(map(repr, unknown))} "
                f"(cases: {', '.join(known_cases)})"
            )
        settings = replace(settings, only=tuple(dict.fromkeys(request.cases)))
    suite = suite.for_run(settings, request.batch)
    names = list(request.backends) or list(settings.backends)
    if not names:  # every registered backend that runs at the suite's level
        names = [b.name for b in registry if suite.level in b.levels]
    for name in names:
        if name not in registry:
            known = ", ".join(registry.names())
            raise UsageError(f"unknown backend {name!r} (known: {known})")
        if suite.level not in registry.get(name).levels:
            raise UsageError(
                f"backend {name!r} does not run at the {suite.level.value} level of suite "
                f"{suite.name!r}"
            )
    if request.interleave_dtypes and request.isolate:
        raise UsageError(
            "--interleave-dtypes and --isolate: an isolated row runs alone in its worker"
        )
    if len(set(names)) != len(names):
        raise UsageError(f"a backend is named twice: {', '.join(names)}")
    policy = StopPolicy(
        samples=request.samples or settings.samples,
        min_samples=settings.min_samples,
        min_time_s=settings.min_time_s,
        max_time_s=request.max_time_s or settings.max_time_s,
        target_rel_ci=request.target_rel_ci or settings.target_rel_ci,
    )
    plan = RunPlan(
        cases=suite.cases,
        backends=tuple(names),
        dtypes=tuple(dict.fromkeys(request.dtypes)) or settings.dtypes,
        modes=tuple(dict.fromkeys(request.modes)) or settings.modes,
        device=device,
        policy=policy,
        warmup_ms=settings.warmup_ms,
        seed=settings.seed,
        # the CPU has no cache flush or graph replay: every CPU row is timed hot
        cache_mode=request.cache_mode if device.type == "cuda" else CacheMode.HOT,
        isolate=request.isolate,
        timeout_s=request.timeout_s,
        level=suite.level,
        tf32=request.tf32,
        min_clock=request.min_clock,
        threads=request.threads or settings.threads,
        affinity=affinity,
        interleave_dtypes=request.interleave_dtypes,
    )
    return suite, plan


def default_out_dir(suite: Suite) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / suite.name / f"{stamp}-{git_state()['short_commit']}"


def run_meta(suite: Suite, plan: RunPlan, request: RunRequest | None = None) -> dict[str, Any]:
    meta = {"schema_version": RESULT_SCHEMA_VERSION, **environment()}
    meta["run"] = {
        "suite": suite.name,
        "suite_file": suite.path.name,
        "level": suite.level.value,
        "device": str(plan.device),
        "backends": list(plan.backends),
        "dtypes": [d.value for d in plan.dtypes],
        "modes": [m.value for m in plan.modes],
        "cache_mode": plan.cache_mode.value,
        "precision": PrecisionPolicy(tf32=plan.tf32).to_json(),
        "min_clock": plan.min_clock,
        "threads": plan.threads,
        "affinity": list(plan.affinity) or None,
        "isolate": plan.isolate,
        "interleave_dtypes": plan.interleave_dtypes,
        "timeout_s": plan.timeout_s,
        "request": request.to_json() if request is not None else None,
        "policy": asdict(plan.policy),
        "warmup_ms": plan.warmup_ms,
        "seed": plan.seed,
        "cases": [c.name for c in plan.cases],
        "allocator": allocator.DEFAULT,
        "status": "running",
    }
    return meta


def telemetry_meta(plan: RunPlan) -> dict[str, Any]:
    """How telemetry is taken in this run, and who else is on the GPU right now.

    Called before this process touches the GPU, so every process listed is another's.
    """
    sampler = default_sampler(plan.device)
    processes = gpu_processes(sampler.index) if sampler.available else None
    return {
        "source": "nvml" if sampler.available else f"unavailable: {sampler.reason}",
        "nvml_index": sampler.index if sampler.available else None,
        "interval_s": sampler.interval_s,
        "max_sm_clock_mhz": sampler.max_sm_clock_mhz,
        "gpu_processes": processes,
    }


def execute(
    suite: Suite,
    plan: RunPlan,
    registry: Registry,
    out_dir: Path,
    on_row: Callable[[ResultRow], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    request: RunRequest | None = None,
) -> list[ResultRow]:
    """Run the plan, writing rows as they finish and meta.json before and after."""
    try:
        threads = apply_host_settings(plan)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    plan = replace(plan, threads=threads)
    writer = ResultWriter(out_dir, stamp=device_identity(plan.device))
    meta = run_meta(suite, plan, request)
    meta["telemetry"] = telemetry_meta(plan)
    write_json(out_dir / META_FILE, meta)
    if on_status:
        on_status("measuring copy bandwidth and matmul throughput")
    with precision_policy(PrecisionPolicy(tf32=plan.tf32)):
        meta["ceilings"] = measure_ceilings(plan.device)
    write_json(out_dir / META_FILE, meta)
    return _finish(plan, registry, writer, meta, on_row, on_status)


def _finish(
    plan: RunPlan,
    registry: Registry,
    writer: ResultWriter,
    meta: dict[str, Any],
    on_row: Callable[[ResultRow], None] | None,
    on_status: Callable[[str], None] | None,
) -> list[ResultRow]:
    out_dir = writer.directory
    started = datetime.now(UTC)
    # Everything imported so far lives until exit: keep it out of the collections the
    # engine makes between cases, which otherwise walk all of torch's objects each time.
    gc.freeze()
    try:
        rows = Engine(
            plan,
            registry,
            writer,
            on_row=on_row,
            on_status=on_status,
            copy_gbps=copy_gbps(meta.get("ceilings")),
            skip=[row.key() for row in writer.rows],
        ).run()
        meta["run"]["status"] = "complete"
    except KeyboardInterrupt:
        meta["run"]["status"] = "interrupted"
        raise
    finally:
        spent = (datetime.now(UTC) - started).total_seconds()
        meta["run"]["duration_s"] = round(meta["run"].get("duration_s", 0) + spent, 1)
        meta["run"]["rows"] = len(writer.rows)
        write_json(out_dir / META_FILE, meta)
    return rows


def resume_request(directory: Path) -> RunRequest:
    """The request an interrupted run in directory was started with."""
    path = Path(directory) / META_FILE
    if not path.exists():
        raise UsageError(f"--resume {directory}: no {META_FILE}, not an invbench run directory")
    meta = json.loads(path.read_text())
    request = (meta.get("run") or {}).get("request")
    if not request:
        raise UsageError(f"--resume {directory}: {META_FILE} does not record the run's request")
    return RunRequest.from_json(request)


def resume(
    directory: Path,
    registry: Registry,
    on_row: Callable[[ResultRow], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> tuple[Suite, RunPlan, list[ResultRow]]:
    """Finish the run in directory: rows already there are kept and not measured again."""
    directory = Path(directory)
    request = resume_request(directory)
    suite, plan = plan_run(request, registry)
    meta = json.loads((directory / META_FILE).read_text())
    if meta["run"].get("device") != str(plan.device):
        raise UsageError(
            f"--resume {directory}: the run used {meta['run'].get('device')}, "
            f"this machine would run on {plan.device}"
        )
    now = [d.get("name") for d in environment()["cuda_devices"]]
    before = [d.get("name") for d in meta.get("cuda_devices", [])]
    if now != before:
        raise UsageError(f"--resume {directory}: the run had GPUs {before}, this machine has {now}")
    try:
        writer = ResultWriter.resume(directory, stamp=device_identity(plan.device))
    except ResultsError as exc:
        raise UsageError(f"--resume: {exc}") from None
    meta["run"].setdefault("resumed", []).append(datetime.now(UTC).isoformat(timespec="seconds"))
    meta["run"]["status"] = "running"
    if "ceilings" not in meta:  # killed before they were measured
        with precision_policy(PrecisionPolicy(tf32=plan.tf32)):
            meta["ceilings"] = measure_ceilings(plan.device)
    write_json(directory / META_FILE, meta)
    return suite, plan, _finish(plan, registry, writer, meta, on_row, on_status)
