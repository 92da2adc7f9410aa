"""`invbench history`: record runs by commit, show series, find steps, publish a dashboard."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from invbench.cli.console import err, fail, note, out
from invbench.core.choices import OutputFormat
from invbench.core.spec import Dtype, Mode

if TYPE_CHECKING:
    from invbench.analysis.history.changepoints import Analysis, Policy
    from invbench.analysis.history.store import Filters, HistoryStore

app = typer.Typer(
    help="Performance over commits: record runs, show series, find steps, publish a dashboard.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="History directory (holds history.sqlite; default $INVBENCH_HISTORY or ./history).",
    ),
]
SuiteOpt = Annotated[
    list[str] | None, typer.Option("--suite", help="Only this suite (repeatable).")
]
BackendOpt = Annotated[
    list[str] | None, typer.Option("--backend", help="Only this backend (repeatable).")
]
CaseOpt = Annotated[list[str] | None, typer.Option("--case", help="Only this case (repeatable).")]
DtypeOpt = Annotated[
    list[Dtype] | None, typer.Option("--dtype", help="Only this dtype (repeatable).")
]
ModeOpt = Annotated[list[Mode] | None, typer.Option("--mode", help="Only this mode (repeatable).")]
MachineOpt = Annotated[
    list[str] | None,
    typer.Option("--machine", help="Machine id (or its start) or words of its label (repeatable)."),
]
ThresholdOpt = Annotated[
    float, typer.Option(help="Smallest relative step reported (0.05 = 5%).", min=0.0)
]
AlphaOpt = Annotated[
    float, typer.Option(help="Largest p-value of a reported step.", min=0.0, max=1.0)
]
CommitUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="URL template of a commit range, with {good} and {bad} "
        "(default: a compare page of the origin remote on GitHub or GitLab, if it is one)."
    ),
]
RepoOpt = Annotated[Path, typer.Option(help="The git repository the commits belong to.")]


def _default_store() -> Path:
    return Path(os.environ.get("INVBENCH_HISTORY", "history"))


def _store(path: Path | None) -> HistoryStore:
    from invbench.analysis.history.store import HistoryStore

    return HistoryStore(path if path is not None else _default_store())


def _filters(
    suite: list[str] | None,
    backend: list[str] | None,
    case: list[str] | None,
    dtype: list[Dtype] | None,
    mode: list[Mode] | None,
    machine: list[str] | None,
) -> Filters:
    from invbench.analysis.history.store import Filters

    return Filters(
        suite=tuple(suite or ()),
        backend=tuple(backend or ()),
        case=tuple(case or ()),
        dtype=tuple(Dtype(d).value for d in dtype or ()),
        mode=tuple(Mode(m).value for m in mode or ()),
        machine=tuple(machine or ()),
    )


def _analyses(store: HistoryStore, filters: Filters, policy: Policy) -> list[Analysis]:
    from invbench.analysis.history.changepoints import analyse
    from invbench.analysis.history.series import build_series
    from invbench.analysis.history.store import HistoryError

    try:
        rows = store.rows(filters, ok_only=True)
    except HistoryError as exc:
        raise fail(str(exc)) from None
    return [analyse(s, policy) for s in build_series(rows)]


@app.command("add")
def add(
    results: Annotated[list[Path], typer.Argument(help="Result directories of `invbench run`.")],
    store: StoreOpt = None,
    repo: RepoOpt = Path("."),
    allow_dirty: Annotated[
        bool, typer.Option(help="Record runs of a checkout with uncommitted changes too.")
    ] = False,
) -> None:
    """Record runs in the history (a run already there is left as it is)."""
    from invbench.analysis.history.store import HistoryError

    history = _store(store)
    for directory in results:
        try:
            outcome = history.add(directory, repo=repo, allow_dirty=allow_dirty)
        except HistoryError as exc:
            raise fail(str(exc)) from None
        machines = "; ".join(f"{m.label} [{m.id[:6]}]" for m in outcome.machines)
        verb = "added" if outcome.added else "already in the history:"
        note(f"{verb} {directory} (commit {outcome.commit[:8]}, {outcome.rows} rows, {machines})")


@app.command("show")
def show(
    store: StoreOpt = None,
    suite: SuiteOpt = None,
    backend: BackendOpt = None,
    case: CaseOpt = None,
    dtype: DtypeOpt = None,
    mode: ModeOpt = None,
    machine: MachineOpt = None,
    threshold: ThresholdOpt = 0.05,
    alpha: AlphaOpt = 0.001,
) -> None:
    """Each row's series over commits, its current level and noise band, and its steps."""
    from invbench.analysis.history.changepoints import Policy
    from invbench.render.history_text import machines_table, series_table

    history = _store(store)
    filters = _filters(suite, backend, case, dtype, mode, machine)
    analyses = _analyses(history, filters, Policy(threshold=threshold, alpha=alpha))
    if not analyses:
        raise fail("no series in the history match these filters")
    out.print(series_table(analyses, title=f"history in {history.directory}"))
    out.print(machines_table(analyses))
    note(
        "noise band: the current level times exp(±2 sigma) of its runs' spread; "
        "steps: change and first commit at the new level"
    )


@app.command("regressions")
def regressions(
    store: StoreOpt = None,
    suite: SuiteOpt = None,
    backend: BackendOpt = None,
    case: CaseOpt = None,
    dtype: DtypeOpt = None,
    mode: ModeOpt = None,
    machine: MachineOpt = None,
    threshold: ThresholdOpt = 0.05,
    alpha: AlphaOpt = 0.001,
    recent: Annotated[
        int | None,
        typer.Option(help="Only steps among each series' last N commits (default: all).", min=1),
    ] = None,
    improvements: Annotated[
        bool, typer.Option(help="List steps to faster too (never fail the gate).")
    ] = False,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table, markdown or json.")] = (
        OutputFormat.TABLE
    ),
    output: Annotated[
        Path | None, typer.Option(help="Also write the list (in --format) to this file.")
    ] = None,
    commit_url: CommitUrlOpt = None,
    repo: RepoOpt = Path("."),
    fail_on_regression: Annotated[
        bool, typer.Option(help="Exit 1 when a step to slower is listed (a CI gate).")
    ] = False,
) -> None:
    """Steps in the series (change points): commit range, size and confidence."""
    from invbench.analysis.history.changepoints import Policy
    from invbench.analysis.history.links import guess_template
    from invbench.render.history_text import step_record, steps_json, steps_markdown, steps_table

    history = _store(store)
    filters = _filters(suite, backend, case, dtype, mode, machine)
    analyses = _analyses(history, filters, Policy(threshold=threshold, alpha=alpha))
    if not analyses:
        raise fail("no series in the history match these filters")
    template = commit_url or guess_template(repo)
    records = []
    for a in analyses:
        first = len(a.series.points) - recent if recent else 0
        for step in a.steps:
            if step.index >= first and (step.regression or improvements):
                records.append(step_record(a, step, template))
    records.sort(key=lambda r: -abs(r["size"]))
    kind = "steps" if improvements else "regressions"
    title = f"{len(records)} {kind} in {len(analyses)} series"
    if fmt is OutputFormat.TABLE:
        out.print(steps_table(records, title))
        text = steps_markdown(records, title)
    else:
        text = (
            steps_markdown(records, title) if fmt is OutputFormat.MARKDOWN else steps_json(records)
        )
        print(text, end="")
    if output is not None:
        output.write_text(text)
    if fail_on_regression and any(r["direction"] == "slower" for r in records):
        err.print(f"invbench: {title}", highlight=False)
        raise typer.Exit(1)


@app.command("publish")
def publish(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="Directory for index.html.")],
    store: StoreOpt = None,
    suite: SuiteOpt = None,
    backend: BackendOpt = None,
    case: CaseOpt = None,
    dtype: DtypeOpt = None,
    mode: ModeOpt = None,
    machine: MachineOpt = None,
    threshold: ThresholdOpt = 0.05,
    alpha: AlphaOpt = 0.001,
    commit_url: CommitUrlOpt = None,
    repo: RepoOpt = Path("."),
    title: Annotated[str, typer.Option(help="The page's title.")] = "invbench history",
) -> None:
    """A static HTML dashboard (one file, no server, nothing fetched): a graph per row."""
    from invbench.analysis.history.changepoints import Policy
    from invbench.analysis.history.links import guess_template
    from invbench.render.dashboard import write_dashboard

    history = _store(store)
    filters = _filters(suite, backend, case, dtype, mode, machine)
    analyses = _analyses(history, filters, Policy(threshold=threshold, alpha=alpha))
    if not analyses:
        raise fail("no series in the history match these filters")
    page = write_dashboard(analyses, out_dir, commit_url or guess_template(repo), title)
    note(f"{len(analyses)} series -> {page}")


@app.command("backfill")
def backfill(
    rev_range: Annotated[
        str, typer.Argument(help="Commits to run, oldest first: A..B, or one revision.")
    ],
    suite: Annotated[str, typer.Option(help="Suite name (suites/NAME.toml of each commit).")],
    store: StoreOpt = None,
    repo: RepoOpt = Path("."),
    backend: BackendOpt = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    dtype: DtypeOpt = None,
    mode: ModeOpt = None,
    batch: Annotated[int | None, typer.Option(help="Batch size for every case.")] = None,
    samples: Annotated[int | None, typer.Option(help="Fixed samples per row.")] = None,
    repeats: Annotated[
        int, typer.Option(help="Runs per commit (each a fresh process).", min=1)
    ] = 1,
    keep: Annotated[
        Path | None, typer.Option(help="Keep the result directories here (default: discarded).")
    ] = None,
    redo: Annotated[
        bool, typer.Option(help="Run commits the history already has on this machine too.")
    ] = False,
) -> None:
    """Run older commits (each in a temporary worktree) and add their runs to the history."""
    from invbench.analysis.history.backfill import BackfillRequest, run_backfill
    from invbench.analysis.history.store import HistoryError
    from invbench.running.revisions import RevisionError

    request = BackfillRequest(
        rev_range=rev_range,
        suite=suite,
        store=store if store is not None else _default_store(),
        repo=repo,
        backends=tuple(backend or ()),
        device=device,
        dtypes=tuple(dtype or ()),
        modes=tuple(mode or ()),
        batch=batch,
        samples=samples,
        repeats=repeats,
        keep=keep,
        redo=redo,
    )
    try:
        report = run_backfill(request, on_status=note)
    except (RevisionError, HistoryError) as exc:
        raise fail(str(exc)) from None
    for commit, problem in report.failed:
        note(f"{commit[:8]} failed: {problem}")
    note(
        f"{len(report.added)} runs added, {len(report.skipped)} commits already in the history, "
        f"{len(report.failed)} failed"
    )
    if report.failed:
        raise typer.Exit(1)
