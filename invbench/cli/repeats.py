"""`invbench run --repeats N`: the runs as worker processes, then the merged table."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from invbench.cli.console import err, fail

if TYPE_CHECKING:
    from invbench.core.suites import Suite
    from invbench.running.bench import RunRequest
    from invbench.running.plan import RunPlan


def run_repeats(
    request: RunRequest, suite: Suite, plan: RunPlan, directory: Path, repeats: int, plot: bool
) -> None:
    from invbench.cli.run import report_rows
    from invbench.running.replicates import RUNS_DIR
    from invbench.running.replicates import run_repeats as repeat
    from invbench.running.revisions import RevisionError
    from invbench.storage.results import load_results, row_from_record

    err.print(
        f"[bold]{suite.name}[/]: {repeats} runs, each a fresh process, of {len(plan.cases)} "
        f"cases x {len(plan.backends)} backends x {len(plan.dtypes)} dtypes x "
        f"{len(plan.modes)} modes on {plan.device} -> {directory}",
        soft_wrap=True,
    )
    try:
        done = repeat(
            request,
            repeats,
            directory,
            on_status=lambda text: err.print(f"{text}: {directory / RUNS_DIR}", soft_wrap=True),
        )
    except RevisionError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        err.print(f"interrupted before a run completed; nothing merged in {directory}")
        raise typer.Exit(130) from None
    results = load_results(done.directory)
    rows = [row_from_record(r) for r in results.rows.to_dict("records")]
    title = f"{suite.name} on {plan.device}, {done.completed} runs merged"
    report_rows(rows, title, done.directory, plot)
    if done.stopped is not None:
        err.print(
            f"stopped after {done.completed} of {done.asked} runs ({done.stopped}); the "
            f"completed runs are merged in {shlex.quote(str(done.directory))}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130 if done.stopped == "interrupted" else 1)
