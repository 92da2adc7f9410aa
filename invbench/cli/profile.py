"""`invbench profile`: a thin Typer command over invbench.profiling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from invbench.cli.console import err, fail, out
from invbench.core.formatting import fmt_ms, human_bytes
from invbench.core.spec import Dtype, Mode

if TYPE_CHECKING:
    from invbench.profiling.nsight import NsightCommand
    from invbench.profiling.plan import BackendProfile, ProfilePlan

TOP = 12  # kernels per backend shown on screen (the CSV has them all)


def profile_command(
    case: Annotated[str, typer.Option(help="Case name in the suite (see `invbench list`).")],
    backend: Annotated[
        list[str] | None, typer.Option(help="Backend to profile (repeatable: side by side).")
    ] = None,
    suite: Annotated[str, typer.Option(help="Suite name (suites/NAME.toml) or a .toml path.")] = (
        "resnet-shapes"
    ),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    dtype: Annotated[Dtype | None, typer.Option(help="Dtype (default: the suite's first).")] = None,
    mode: Annotated[Mode, typer.Option(help="fwd or fwd+bwd.")] = Mode.FWD,
    batch: Annotated[int | None, typer.Option(help="Batch size (default: the suite's).")] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default: results/profile/SUITE-CASE-TIME)."),
    ] = None,
    layer: Annotated[
        bool,
        typer.Option(help="Profile the full involution layer: kernel generation + aggregation."),
    ] = False,
    warmup: Annotated[int, typer.Option(help="Warm-up iterations before profiling.")] = 3,
    iters: Annotated[int, typer.Option(help="Profiled iterations.")] = 5,
    with_stack: Annotated[
        bool, typer.Option(help="Record Python stacks in the trace (slower, bigger).")
    ] = False,
    ncu: Annotated[
        bool, typer.Option(help="Print (and run, if found) the Nsight Compute command.")
    ] = False,
    nsys: Annotated[
        bool, typer.Option(help="Print (and run, if found) the Nsight Systems command.")
    ] = False,
    kernel_regex: Annotated[
        str | None,
        typer.Option(help="ncu kernel-name regex (default: the kernels the profile saw)."),
    ] = None,
    ncu_launches: Annotated[
        int | None,
        typer.Option(help="ncu launch count (default: one iteration's matching kernels)."),
    ] = None,
    capture_only: Annotated[
        bool,
        typer.Option(
            help="Run the case inside NVTX ranges for an Nsight capture; no torch.profiler."
        ),
    ] = False,
) -> None:
    """Profile one case: trace, per-kernel table, memory timeline; Nsight commands."""
    from invbench.backends.registry import default_registry
    from invbench.profiling.nsight import (
        DEFAULT_NCU_LAUNCHES,
        capture_argv,
        kernel_filter,
        ncu_command,
        nsys_command,
        run_command,
    )
    from invbench.profiling.plan import ProfileRequest, default_out_dir, plan_profile
    from invbench.profiling.profiling import capture, profile_backend, summary, write_tables
    from invbench.running.bench import UsageError

    request = ProfileRequest(
        suite=suite,
        case=case,
        backends=backend or (),
        device=device,
        dtype=dtype,
        mode=mode,
        batch=batch,
        layer=layer,
        warmup=warmup,
        iters=iters,
        with_stack=with_stack,
    )
    try:
        plan = plan_profile(request, default_registry())
        if ncu_launches is not None and ncu_launches < 1:
            raise UsageError(f"--ncu-launches must be >= 1, got {ncu_launches}")
    except UsageError as exc:
        raise fail(str(exc)) from None
    if capture_only:
        for b in plan.backends:
            capture(plan, b)
        err.print(f"captured {plan.iters} iterations of {plan.case.name} for {_names(plan)}")
        return
    directory = out_dir or default_out_dir(plan)
    directory.mkdir(parents=True, exist_ok=True)
    g = plan.case.geometry
    err.print(
        f"[bold]{plan.suite.name}/{plan.case.name}[/] (B={g.batch} C={g.channels} "
        f"{g.height}x{g.width} K={g.kernel_size} s={g.stride} G={g.groups}) "
        f"{plan.dtype.value} {plan.mode.value}{' layer' if plan.layer else ''} on {plan.device}: "
        f"{plan.warmup} warm-up + {plan.iters} profiled iterations -> {directory}",
        highlight=False,
    )
    profiles = []
    failed = []
    for b in plan.backends:
        err.print(f"profiling {b.name} ...", highlight=False)
        try:
            profiles.append(profile_backend(plan, b, directory))
        except Exception as exc:  # one backend failing (OOM, a compile error) spares the rest
            text = " ".join(str(exc).split())[:300]
            err.print(f"{b.name}: failed: {type(exc).__name__}: {text}", highlight=False)
            failed.append(b.name)
    if not profiles:
        raise typer.Exit(1)
    write_tables(profiles, directory)
    _print_kernels(plan, profiles)
    for p in profiles:
        _print_memory(p)
        if p.phases:
            _print_phases(p)
        for note in p.notes:
            out.print(f"{p.backend}: {note}", highlight=False)
    commands: list[NsightCommand] = []
    on_cuda = plan.device.type == "cuda"
    if ncu:
        for p in profiles:
            regex, per_iter = kernel_filter(p.kernels, plan.iters, on_cuda, kernel_regex)
            count = ncu_launches or per_iter or DEFAULT_NCU_LAUNCHES
            argv = capture_argv(plan, suite, [p.backend])
            commands.append(ncu_command(argv, directory, p.backend, regex, count))
    if nsys:
        names = [p.backend for p in profiles]
        argv = capture_argv(plan, suite, names)
        commands.append(nsys_command(argv, directory, "+".join(names)))
    outcomes = []
    for command in commands:
        title = "Nsight Compute" if command.tool == "ncu" else "Nsight Systems"
        out.print(f"\n[bold]{title}[/] command ({command.label}):")
        out.print(command.line, markup=False, highlight=False, soft_wrap=True)
        outcome = run_command(command, on_cuda)
        out.print(outcome.message, markup=False, highlight=False)
        outcomes.append(outcome)
    extra = {
        "failed_backends": failed,
        "nsight": [
            {
                "tool": o.command.tool,
                "label": o.command.label,
                "command": o.command.line,
                "report": o.command.report.name,
                "status": o.status,
            }
            for o in outcomes
        ],
    }
    (directory / "profile.json").write_text(json.dumps(summary(plan, profiles, extra), indent=2))
    out.print(f"\ntraces, tables and memory timelines written to {directory}", highlight=False)
    if failed:
        raise typer.Exit(1)


def _names(plan: ProfilePlan) -> str:
    return ", ".join(b.name for b in plan.backends)


def _print_kernels(plan: ProfilePlan, profiles: list[BackendProfile]) -> None:
    what = "kernels" if plan.device.type == "cuda" else "operators"
    if len(profiles) == 1:
        p = profiles[0]
        table = Table(
            title=f"{p.backend}: {what} by {p.time_basis} "
            f"({fmt_ms(p.per_iter_us / 1e3)} per iteration)"
        )
        for col in ("name", "calls", "total", "mean", "per iter", "share"):
            table.add_column(col, justify="left" if col == "name" else "right")
        if plan.device.type == "cuda":
            table.add_column("launched by")
        for r in p.kernels[:TOP]:
            cells = [
                r.name[:90],
                str(r.calls),
                fmt_ms(r.total_us / 1e3),
                fmt_ms(r.mean_us / 1e3),
                fmt_ms(r.per_iter_us / 1e3),
                f"{r.share_pct:.1f}%",
            ]
            if plan.device.type == "cuda":
                cells.append(r.launched_by)
            table.add_row(*cells)
        out.print(table)
        return
    table = Table(title=f"{what} side by side (per iteration, share of each backend's time)")
    table.add_column("#", justify="right")
    for p in profiles:
        table.add_column(p.backend)
        table.add_column("per iter", justify="right")
        table.add_column("share", justify="right")
    depth = min(TOP, max(len(p.kernels) for p in profiles))
    for i in range(depth):
        cells = [str(i + 1)]
        for p in profiles:
            if i < len(p.kernels):
                r = p.kernels[i]
                cells += [r.name[:48], fmt_ms(r.per_iter_us / 1e3), f"{r.share_pct:.1f}%"]
            else:
                cells += ["", "", ""]
        table.add_row(*cells)
    total = ["total"]
    for p in profiles:
        total += [p.time_basis, fmt_ms(p.per_iter_us / 1e3), "100%"]
    table.add_row(*total)
    out.print(table)


def _print_memory(p: BackendProfile) -> None:
    t = p.timeline
    if not t.events:
        out.print(f"{p.backend}: no {t.device} allocations recorded", highlight=False)
        return
    out.print(
        f"{p.backend}: memory peak {human_bytes(t.peak_bytes)} above the start, at "
        f"{fmt_ms(t.peak_time_us / 1e3)} in {t.peak_op or '?'} "
        f"({t.peak_phase or 'no range'}); held by:",
        highlight=False,
    )
    for a in t.held_at_peak[:5]:
        out.print(f"  {human_bytes(a.bytes):>10}  from {a.op or '?'}", highlight=False)


def _print_phases(p: BackendProfile) -> None:
    table = Table(title=f"{p.backend}: layer phases")
    for col in ("phase", "per iter", "share", "peak mem", "allocated per iter"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for r in p.phases:
        table.add_row(
            r.phase,
            fmt_ms(r.per_iter_us / 1e3),
            f"{r.share_pct:.1f}%",
            human_bytes(r.peak_bytes),
            human_bytes(r.allocated_bytes_per_iter),
        )
    out.print(table)
