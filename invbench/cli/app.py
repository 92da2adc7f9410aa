"""The command line: thin Typer commands over library calls."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from invbench.backends.registry import Registry, default_registry
from invbench.cli.compare import ab_command, compare_command, export_command
from invbench.cli.plot import plot_after_run, plot_command, report_command
from invbench.cli.profile import profile_command
from invbench.core.spec import DeviceKind, Dtype, Mode
from invbench.measure.timing import CacheMode
from invbench.render.summary import health_table, summary_table
from invbench.running.bench import (
    RunRequest,
    UsageError,
    default_out_dir,
    execute,
    plan_run,
    resume,
)
from invbench.storage.results import ResultRow

try:  # newer typer vendors click; older releases depend on it
    from typer import _click as click  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the installed typer
    import click  # type: ignore[no-redef]

app = typer.Typer(
    help="invbench: trustworthy numbers for involution and convolution kernels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
if not out.is_terminal:  # files and pipes get the whole table, not an 80-column squeeze
    out = Console(width=160)
err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    err.print(f"invbench: error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command()
def run(
    suite: Annotated[str, typer.Option(help="Suite name (suites/NAME.toml) or a .toml path.")] = (
        "resnet-shapes"
    ),
    backend: Annotated[
        list[str] | None, typer.Option(help="Backend to run (repeatable; default: all).")
    ] = None,
    case: Annotated[
        list[str] | None,
        typer.Option(help="Run only this case of the suite (repeatable; default: all)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    dtype: Annotated[
        list[Dtype] | None, typer.Option(help="Dtype (repeatable; default: the suite's).")
    ] = None,
    mode: Annotated[
        list[Mode] | None, typer.Option(help="fwd or fwd+bwd (repeatable; default: the suite's).")
    ] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size for every case.")] = None,
    samples: Annotated[
        int | None, typer.Option(help="Fixed samples per row (default: adaptive).")
    ] = None,
    cache: Annotated[
        CacheMode,
        typer.Option(help="GPU: cold (L2 flushed per sample), hot, or graph (CUDA-graph replay)."),
    ] = CacheMode.COLD,
    target_ci: Annotated[
        float | None,
        typer.Option(help="Stop when the median's 95% CI half-width is below this fraction."),
    ] = None,
    max_time: Annotated[
        float | None, typer.Option(help="Per-row time cap in seconds (default: the suite's).")
    ] = None,
    isolate: Annotated[
        bool,
        typer.Option(help="Run each backend x case in a worker process (crash/hang -> a row)."),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="With --isolate: seconds a worker may take.")
    ] = 600.0,
    resume_dir: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Finish the interrupted run in DIR with its recorded options; "
            "rows already there are kept.",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Result directory (default: results/SUITE/TIME-COMMIT)."),
    ] = None,
    plot: Annotated[bool, typer.Option(help="Make the default figures after the run.")] = False,
) -> None:
    """Check, then time every backend on every case of a suite."""
    registry = default_registry()
    request = RunRequest(
        suite=suite,
        backends=backend or (),
        cases=case or (),
        device=device,
        dtypes=dtype or (),
        modes=mode or (),
        batch=batch,
        samples=samples,
        cache_mode=cache,
        out=out_dir,
        target_rel_ci=target_ci,
        max_time_s=max_time,
        isolate=isolate,
        timeout_s=timeout,
    )
    if resume_dir is not None:
        _resume(resume_dir, registry, plot)
        return
    try:
        suite_obj, plan = plan_run(request, registry)
    except UsageError as exc:
        raise fail(str(exc)) from None
    directory = out_dir or default_out_dir(suite_obj)
    err.print(
        f"[bold]{suite_obj.name}[/]: {len(plan.cases)} cases x {len(plan.backends)} backends x "
        f"{len(plan.dtypes)} dtypes x {len(plan.modes)} modes on {plan.device} "
        f"(batch {plan.cases[0].geometry.batch}) -> {directory}"
    )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with progress:
        task = progress.add_task("starting", total=plan.n_rows)
        rows = execute(
            suite_obj,
            plan,
            registry,
            directory,
            on_row=lambda row: progress.advance(task),
            on_status=lambda text: progress.update(task, description=text),
            request=request,
        )
    _report(rows, f"{suite_obj.name} on {plan.device}", directory, plot)


def _report(rows: list[ResultRow], title: str, directory: Path, plot: bool) -> None:
    out.print(summary_table(rows, title=title, backend_order=default_registry().names()))
    health = health_table(rows)
    if health is not None:
        out.print(health)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    out.print(f"{len(rows)} rows ({tally}) written to {directory}", highlight=False)
    if plot:  # the default figures into DIRECTORY/plots (invbench.cli.plot)
        plot_after_run(directory)


def _resume(directory: Path, registry: Registry, plot: bool) -> None:
    err.print(f"resuming {directory} with the options it was started with")
    progress = Progress(
        TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    )
    with progress:
        task = progress.add_task("starting", total=None)
        try:
            suite_obj, plan, rows = resume(
                directory,
                registry,
                on_status=lambda text: progress.update(task, description=text),
            )
        except UsageError as exc:
            raise fail(str(exc)) from None
    _report(rows, f"{suite_obj.name} on {plan.device}", directory, plot)


@app.command("list")
def list_(
    device: Annotated[
        str, typer.Option(help="Device to check availability on: auto, cpu, cuda.")
    ] = ("auto"),
) -> None:
    """Backends with their availability, and suites with their case counts."""
    from invbench.core.suites import available_suites, load_suite, suite_dirs
    from invbench.running.bench import resolve_device

    registry = default_registry()
    kinds = [DeviceKind.CPU, DeviceKind.CUDA] if device == "auto" else None
    if kinds is None:
        try:
            kinds = [DeviceKind(resolve_device(device).type)]
        except UsageError as exc:
            raise fail(str(exc)) from None
    table = Table(title="backends")
    for col in ("name", "kind", "dtypes", *(f"on {k.value}" for k in kinds), "description"):
        table.add_column(col)
    for b in registry:
        avail = [b.availability(k) or "[green]available[/]" for k in kinds]
        dtypes = ",".join(sorted(d.value for d in b.dtypes))
        table.add_row(b.name, b.kind.value, dtypes, *avail, b.description)
    out.print(table)
    for name, problem in registry.load_errors.items():
        out.print(f"[red]plug-in {name!r} failed to load:[/] {problem}")
    suites = Table(title="suites")
    for col in ("name", "cases", "description"):
        suites.add_column(col)
    seen: dict[str, Path] = {}
    for directory in reversed(suite_dirs()):
        seen.update(available_suites(directory))
    for name, path in seen.items():
        try:
            s = load_suite(path)
            suites.add_row(name, str(len(s.cases)), s.description)
        except ValueError as exc:
            suites.add_row(name, "[red]invalid[/]", str(exc))
    out.print(suites)


@app.command()
def env(
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
) -> None:
    """What this machine is and can run: GPU, driver, NVML, nvcc, ninja, triton, compiler."""
    from invbench.measure.environment import environment

    info = environment()
    if as_json:
        print(json.dumps(info, indent=2, default=str))
        return
    table = Table(title="environment", show_header=False)
    table.add_column("what")
    table.add_column("value")
    gpus = info["cuda_devices"]
    nvml = info["nvml"]
    rows = [
        (
            "invbench",
            f"{info['invbench_version']} (commit {info['git']['short_commit']}"
            f"{', dirty' if info['git']['dirty'] else ''})",
        ),
        ("python", info["python"]),
        ("torch", f"{info['torch']} (CUDA {info['torch_cuda'] or 'none'}, cuDNN {info['cudnn']})"),
        ("triton", info["triton"] or "not installed"),
        (
            "cpu",
            f"{info['cpu']} ({info['cpu_count']} cores, torch threads {info['torch_threads']})",
        ),
        (
            "gpu",
            "; ".join(
                f"{g['name']} sm_{g['capability'].replace('.', '')}, {g['sm_count']} SMs"
                for g in gpus
            )
            or "none visible to torch",
        ),
        (
            "nvml",
            nvml["unavailable_reason"]
            or "; ".join(f"{d.get('name')} driver {d.get('driver')}" for d in nvml["devices"]),
        ),
        ("nvcc", info["nvcc"] or "not found"),
        ("ninja", info.get("ninja") or "not found (the cuda_ext build needs it)"),
        ("c++ compiler", info["compiler"] or "not found"),
    ]
    for what, value in rows:
        table.add_row(what, str(value))
    out.print(table)


app.command("profile")(profile_command)
app.command("compare")(compare_command)
app.command("ab")(ab_command)
app.command("export")(export_command)
app.command("plot")(plot_command)
app.command("report")(report_command)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: usage errors become one line and exit status 2."""
    command = typer.main.get_command(app)
    try:
        status = command.main(
            args=argv if argv is not None else sys.argv[1:],
            prog_name="invbench",
            standalone_mode=False,
        )
    except click.exceptions.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # help was printed; nothing is wrong
            return 0
        err.print(
            f"invbench: error: {exc.format_message()}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return 2
    except (typer.Abort, KeyboardInterrupt):
        err.print("invbench: interrupted; rows already measured are on disk", highlight=False)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
