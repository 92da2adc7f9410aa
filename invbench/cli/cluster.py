"""`invbench run --cluster`: the suite's cases as Ray tasks, with a progress bar and a summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from invbench.cli.console import err, fail

if TYPE_CHECKING:
    from invbench.backends.registry import Registry
    from invbench.running.bench import RunRequest
    from invbench.running.cluster.driver import ClusterOptions, Lane
    from invbench.storage.results import ResultRow


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def _summaries(lanes: list[Lane], plot: bool) -> None:
    from invbench.cli.run import report_rows

    for lane in lanes:
        where = f"{lane.gpu_type} GPUs" if lane.gpu_type else f"the cluster's {lane.plan.device}"
        title = f"{lane.suite.name} on {where}"
        report_rows(lane.writer.rows, title, lane.directory, plot)


def _callbacks(
    progress: Progress, total: int | None
) -> tuple[Callable[[ResultRow], None], Callable[[str], None]]:
    task = progress.add_task("connecting to Ray", total=total)
    return (
        lambda row: progress.advance(task),
        lambda text: progress.update(task, description=text),
    )


def run_on_cluster(
    request: RunRequest, registry: Registry, options: ClusterOptions, plot: bool
) -> None:
    from invbench.running.bench import UsageError, default_out_dir
    from invbench.running.cluster.driver import import_ray, run_cluster

    try:
        import_ray()
    except UsageError as exc:
        raise fail(str(exc)) from None
    out_dir = request.out
    if out_dir is None:
        from invbench.core.suites import find_suite

        try:
            out_dir = default_out_dir(find_suite(request.suite))
        except ValueError as exc:
            raise fail(str(exc)) from None
    copies = len(options.gpu_types) or 1
    err.print(
        f"[bold]{request.suite}[/] on the Ray cluster at {options.address}"
        + (f", one copy per GPU type ({', '.join(options.gpu_types)})" if copies > 1 else "")
        + f" -> {out_dir}",
        highlight=False,
    )
    with _progress() as progress:
        on_row, on_status = _callbacks(progress, None)
        try:
            lanes = run_cluster(
                request, registry, out_dir, options, on_row=on_row, on_status=on_status
            )
        except UsageError as exc:
            raise fail(str(exc)) from None
    _summaries(lanes, plot)


def resume_on_cluster(directory: Path, registry: Registry, address: str | None, plot: bool) -> None:
    from invbench.running.bench import UsageError
    from invbench.running.cluster.driver import resume_cluster

    err.print(f"resuming the cluster run in {directory} with the options it was started with")
    with _progress() as progress:
        on_row, on_status = _callbacks(progress, None)
        try:
            lanes = resume_cluster(directory, registry, address, on_row=on_row, on_status=on_status)
        except UsageError as exc:
            raise fail(str(exc)) from None
    _summaries(lanes, plot)
