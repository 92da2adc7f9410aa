"""`invbench run`: check, then time every backend on every case of a suite."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from invbench.cli.console import err, fail, out
from invbench.core.choices import CacheMode
from invbench.core.spec import Dtype, Mode

if TYPE_CHECKING:
    from invbench.backends.registry import Registry
    from invbench.storage.results import ResultRow


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
    tf32: Annotated[
        bool,
        typer.Option(
            "--tf32", help="Allow TF32 in float32 matmuls and convolutions (default: off)."
        ),
    ] = False,
    min_clock: Annotated[
        float | None,
        typer.Option(
            help="GPU: drop sample batches run under this fraction of the max SM clock "
            "(e.g. 0.75); a row never loses all of them."
        ),
    ] = None,
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
    cluster: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Run the cases as Ray tasks (one GPU each): auto, local, ray://HOST:PORT. "
            "Needs invbench[ray].",
        ),
    ] = None,
    gpu_type: Annotated[
        list[str] | None,
        typer.Option(
            help="With --cluster: a full copy of the suite on GPUs of this Ray accelerator "
            "type (repeatable; e.g. H100, A100), each into DIR/TYPE."
        ),
    ] = None,
    cpus_per_task: Annotated[
        float, typer.Option(help="With --cluster: CPUs each task reserves.")
    ] = 1.0,
    threads: Annotated[
        int | None,
        typer.Option(
            help="torch's intra-op threads (default: the suite's threads, else torch's "
            "choice); recorded in every row."
        ),
    ] = None,
    affinity: Annotated[
        str | None,
        typer.Option(metavar="CPUS", help="Pin the run to these CPUs, e.g. 0 or 0-1,3."),
    ] = None,
    interleave_dtypes: Annotated[
        bool,
        typer.Option(
            "--interleave-dtypes",
            help="Time a case's dtypes side by side, their rows in one set of interleaved "
            "rounds as a case's backends are (inputs of every dtype held at once); for "
            "ratios between dtypes on a noisy machine.",
        ),
    ] = False,
    repeats: Annotated[
        int,
        typer.Option(
            help="Runs of the suite, each in a fresh process, merged into one result "
            "(samples.parquet says which run each sample came from); compare judges "
            "the runs as replicates."
        ),
    ] = 1,
) -> None:
    """Check, then time every backend on every case of a suite."""
    from invbench.backends.registry import default_registry
    from invbench.running.bench import RunRequest, UsageError, default_out_dir, execute, plan_run

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
        tf32=tf32,
        min_clock=min_clock,
        threads=threads,
        affinity=affinity,
        interleave_dtypes=interleave_dtypes,
    )
    if repeats < 1:
        raise fail(f"--repeats must be >= 1, got {repeats}")
    if repeats > 1 and (resume_dir is not None or cluster is not None or isolate):
        raise fail("--repeats cannot be combined with --resume, --cluster or --isolate")
    if gpu_type and cluster is None:
        raise fail("--gpu-type needs --cluster")
    if cpus_per_task <= 0:
        raise fail(f"--cpus-per-task must be > 0, got {cpus_per_task:g}")
    if resume_dir is not None:
        from invbench.running.cluster.driver import is_cluster_run

        if is_cluster_run(resume_dir):
            from invbench.cli.cluster import resume_on_cluster

            resume_on_cluster(resume_dir, registry, cluster, plot)
        else:
            _resume(resume_dir, registry, plot)
        return
    if cluster is not None:
        from invbench.cli.cluster import run_on_cluster
        from invbench.running.cluster.driver import ClusterOptions

        options = ClusterOptions(cluster, tuple(gpu_type or ()), cpus_per_task)
        run_on_cluster(request, registry, options, plot)
        return
    try:
        suite_obj, plan = plan_run(request, registry)
    except UsageError as exc:
        raise fail(str(exc)) from None
    directory = out_dir or default_out_dir(suite_obj)
    if repeats > 1:
        from invbench.cli.repeats import run_repeats

        run_repeats(request, suite_obj, plan, directory, repeats, plot)
        return
    batches = ", ".join(str(b) for b in sorted({c.geometry.batch for c in plan.cases}))
    err.print(
        f"[bold]{suite_obj.name}[/]: {len(plan.cases)} cases x {len(plan.backends)} backends x "
        f"{len(plan.dtypes)} dtypes x {len(plan.modes)} modes on {plan.device} "
        f"(batch {batches}) -> {directory}",
        soft_wrap=True,
    )
    progress = quiet_progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )
    with _interrupt_says_how_to_resume(directory), progress:
        task = progress.add_task("starting", total=plan.n_rows)
        rows = execute(
            suite_obj,
            plan,
            registry,
            directory,
            on_row=lambda row: progress.update(task, advance=1, refresh=True),
            on_status=lambda text: progress.update(task, description=text, refresh=True),
            request=request,
        )
    report_rows(rows, f"{suite_obj.name} on {plan.device}", directory, plot)


def quiet_progress(*columns: ProgressColumn) -> Progress:
    """A progress display that draws only when told, from the measuring thread itself.

    rich's default refreshes from a thread of its own ten times a second, which would
    run (and take the GIL) in the middle of timed batches; this one starts no thread, and
    the run redraws it between batches, when a row ends or the status changes.
    """
    return Progress(*columns, console=err, transient=True, auto_refresh=False)


def rows_on_disk(directory: Path) -> int:
    """How many result rows the run directory holds (0 before the first is written)."""
    import pyarrow.parquet as pq

    from invbench.storage.results import RESULTS_FILE

    path = directory / RESULTS_FILE
    try:
        return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0
    except (OSError, ValueError):  # half-written by the interrupted process
        return 0


@contextmanager
def _interrupt_says_how_to_resume(directory: Path) -> Iterator[None]:
    """Ctrl-C: say how many rows were kept, where, and the command that finishes the run."""
    try:
        yield
    except KeyboardInterrupt:
        kept = rows_on_disk(directory)
        err.print(
            f"interrupted: {kept} row{'s' if kept != 1 else ''} kept in {directory}; "
            f"finish the run with: invbench run --resume {shlex.quote(str(directory))}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None


def report_rows(rows: list[ResultRow], title: str, directory: Path, plot: bool) -> None:
    from invbench.backends.registry import default_registry
    from invbench.cli.plot import plot_after_run
    from invbench.measure.ceiling_record import measured_ceilings
    from invbench.render.health import health_table, untrusted_lines
    from invbench.render.summary import summary_table
    from invbench.storage.results import CSV_FILE, META_FILE

    meta_path = directory / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    ceilings = measured_ceilings(meta, rows[0].device) if rows else None
    order = default_registry().names()
    out.print(summary_table(rows, title=title, backend_order=order, ceilings=ceilings))
    health = health_table(rows, where=str(directory / CSV_FILE))
    if health is not None:
        out.print(health)
    for line in untrusted_lines(rows, where=str(directory / CSV_FILE)):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    out.print(f"{len(rows)} rows ({tally}) written to {directory}", highlight=False)
    if plot:  # the default figures into DIRECTORY/plots (invbench.cli.plot)
        plot_after_run(directory)


def _resume(directory: Path, registry: Registry, plot: bool) -> None:
    from invbench.running.bench import UsageError, resume

    err.print(f"resuming {directory} with the options it was started with")
    progress = quiet_progress(TextColumn("{task.description}"), TimeElapsedColumn())
    with _interrupt_says_how_to_resume(directory), progress:
        task = progress.add_task("starting", total=None)
        try:
            suite_obj, plan, rows = resume(
                directory,
                registry,
                on_status=lambda text: progress.update(task, description=text),
            )
        except UsageError as exc:
            raise fail(str(exc)) from None
    report_rows(rows, f"{suite_obj.name} on {plan.device}", directory, plot)
