"""`invbench run` as a library call: options -> a plan -> a result directory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from invbench.backends.registry import Registry
from invbench.environment import environment, git_state
from invbench.memory import return_freed_memory_to_os
from invbench.results import META_FILE, ResultRow, ResultWriter, write_json
from invbench.runner import Runner, RunPlan
from invbench.spec import DeviceKind, Dtype, Level, Mode
from invbench.stats import StopPolicy
from invbench.suites import Suite, find_suite
from invbench.timing import CacheMode


class UsageError(ValueError):
    """A mistake in what the user asked for; the CLI prints it on one line and exits 2."""


@dataclass(frozen=True)
class RunRequest:
    suite: str = "resnet-shapes"
    backends: Sequence[str] = ()
    device: str = "auto"
    dtypes: Sequence[Dtype] = ()
    modes: Sequence[Mode] = ()
    batch: int | None = None
    samples: int | None = None
    cache_mode: CacheMode = CacheMode.COLD
    out: Path | None = None


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


def plan_run(request: RunRequest, registry: Registry) -> tuple[Suite, RunPlan]:
    """Validate the request against the suite and registry; every mistake is a UsageError."""
    try:
        suite = find_suite(request.suite)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    device = resolve_device(request.device)
    settings = suite.settings(DeviceKind(device.type))
    if request.batch is not None and request.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {request.batch}")
    if request.samples is not None and request.samples < 1:
        raise UsageError(f"--samples must be >= 1, got {request.samples}")
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
    if len(set(names)) != len(names):
        raise UsageError(f"a backend is named twice: {', '.join(names)}")
    policy = StopPolicy(
        samples=request.samples or settings.samples,
        min_samples=settings.min_samples,
        min_time_s=settings.min_time_s,
        max_time_s=settings.max_time_s,
        target_rel_ci=settings.target_rel_ci,
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
        cache_mode=request.cache_mode,
    )
    return suite, plan


def default_out_dir(suite: Suite) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / suite.name / f"{stamp}-{git_state()['short_commit']}"


def run_meta(suite: Suite, plan: RunPlan) -> dict[str, Any]:
    meta = environment()
    meta["run"] = {
        "suite": suite.name,
        "suite_file": suite.path.name,
        "level": suite.level.value,
        "device": str(plan.device),
        "backends": list(plan.backends),
        "dtypes": [d.value for d in plan.dtypes],
        "modes": [m.value for m in plan.modes],
        "cache_mode": plan.cache_mode.value,
        "policy": asdict(plan.policy),
        "warmup_ms": plan.warmup_ms,
        "seed": plan.seed,
        "cases": [c.name for c in plan.cases],
        "status": "running",
    }
    return meta


def execute(
    suite: Suite,
    plan: RunPlan,
    registry: Registry,
    out_dir: Path,
    on_row: Callable[[ResultRow], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> list[ResultRow]:
    """Run the plan, writing rows as they finish and meta.json before and after."""
    if plan.device.type == "cpu":
        return_freed_memory_to_os()
    writer = ResultWriter(out_dir)
    meta = run_meta(suite, plan)
    write_json(out_dir / META_FILE, meta)
    started = datetime.now(UTC)
    try:
        if suite.level is Level.OP:
            rows = Runner(plan, registry, writer, on_row=on_row, on_status=on_status).run()
        else:
            from invbench.level_runner import LevelRunner

            rows = LevelRunner(
                plan, suite.level, registry, writer, on_row=on_row, on_status=on_status
            ).run()
        meta["run"]["status"] = "complete"
    except KeyboardInterrupt:
        meta["run"]["status"] = "interrupted"
        raise
    finally:
        meta["run"]["duration_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
        meta["run"]["rows"] = len(writer.rows)
        write_json(out_dir / META_FILE, meta)
    return rows
