"""`invbench compare`, and what `compare` and `ab` share: options, printing, the gate."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from invbench.cli.console import err, fail, out
from invbench.core.choices import OutputFormat

if TYPE_CHECKING:
    from invbench.analysis.compare import ComparePolicy, Comparison


def _table_text(comparison: Comparison, width: int = 160) -> str:
    from invbench.render.compare_render import rich_table

    buffer = io.StringIO()
    Console(file=buffer, width=width, no_color=True).print(rich_table(comparison))
    return buffer.getvalue()


def emit(comparison: Comparison, fmt: OutputFormat, output: Path | None) -> None:
    """Print (or write to output) the comparison, with environment warnings on stderr."""
    from invbench.render.compare_render import render_text, rich_table

    for warning in comparison.warnings:
        err.print(f"[bold red]WARNING:[/] {warning}: the runs may not be comparable")
    if output is not None:
        text = (
            _table_text(comparison) if fmt is OutputFormat.TABLE else render_text(comparison, fmt)
        )
        try:
            output.write_text(text)
        except OSError as exc:
            raise fail(f"cannot write {output}: {exc}") from None
        err.print(f"{comparison.headline()} -> {output}", highlight=False)
    elif fmt is OutputFormat.TABLE:
        out.print(rich_table(comparison))
    else:
        print(render_text(comparison, fmt), end="")


def gate(comparison: Comparison, fail_on_regression: bool, backends: list[str] | None) -> None:
    """Exit 1 when asked to gate and a (selected) row is slower or newly broken."""
    if not fail_on_regression:
        return
    bad = comparison.regressions(backends or ())
    if bad:
        names = ", ".join(f"{r.key['case']}/{r.key['backend']}/{r.key['mode']}" for r in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        err.print(f"invbench: {len(bad)} regressed rows: {names}{more}", highlight=False)
        raise typer.Exit(1)


ThresholdOpt = Annotated[
    float, typer.Option(help="Smallest change called, as a fraction (0.05 = 5%).")
]
AlphaOpt = Annotated[
    float,
    typer.Option(help="Significance level over all judged rows (after --correction)."),
]
CorrectionOpt = Annotated[
    str,
    typer.Option(
        help="Multiple-testing control over the judged rows: holm (family-wise), bh "
        "(false discoveries) or none."
    ),
]
NoiseCvOpt = Annotated[
    float | None,
    typer.Option(
        "--noise-cv",
        help="Run-to-run spread of a run's median on this machine (0.03 = 3%), measured "
        "beforehand: lets one run a side be judged.",
    ),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table, markdown or json.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", help="Write to this file instead of stdout.")
]
FailOpt = Annotated[
    bool,
    typer.Option(
        "--fail-on-regression", help="Exit 1 when a row is slower (or ok -> error/incorrect/oom)."
    ),
]


def policy_from(
    threshold: float, alpha: float, correction: str = "holm", noise_cv: float | None = None
) -> ComparePolicy:
    """The comparison policy of the command's options; a bad value is a usage error."""
    from invbench.analysis.compare import CompareError, ComparePolicy
    from invbench.analysis.verdicts import Correction

    if correction not in {c.value for c in Correction}:
        raise fail(f"--correction must be holm, bh or none, got {correction!r}")
    try:
        return ComparePolicy(
            threshold=threshold,
            alpha=alpha,
            correction=Correction(correction),
            noise_cv=noise_cv,
        )
    except CompareError as exc:
        raise fail(str(exc)) from None


def compare_command(
    base: Annotated[Path, typer.Argument(help="Result directory of the base run.")],
    head: Annotated[Path, typer.Argument(help="Result directory of the head run.")],
    threshold: ThresholdOpt = 0.05,
    alpha: AlphaOpt = 0.01,
    correction: CorrectionOpt = "holm",
    noise_cv: NoiseCvOpt = None,
    fmt: FormatOpt = OutputFormat.TABLE,
    output: OutputOpt = None,
    fail_on_regression: FailOpt = False,
    backend: Annotated[
        list[str] | None,
        typer.Option(help="Only these backends count for --fail-on-regression (repeatable)."),
    ] = None,
    across_devices: Annotated[
        bool,
        typer.Option(
            "--across-devices",
            help="Compare runs measured on different device models (e.g. A100 vs H100).",
        ),
    ] = False,
    history: Annotated[
        Path | None,
        typer.Option(
            metavar="STORE",
            help="A history store (invbench history): each row's between-run spread on the "
            "base's machine judges runs that have no replicates of their own.",
        ),
    ] = None,
) -> None:
    """Compare two result directories row by row: ratio, interval, run-level test, verdict."""
    from invbench.analysis.compare import CompareError, compare_dirs, load_pair

    policy = policy_from(threshold, alpha, correction, noise_cv)
    noise = None
    if history is not None:
        from invbench.analysis.history.baseline import history_noise
        from invbench.analysis.history.store import HistoryStore

        store = HistoryStore(history)
        if not store.exists():
            raise fail(f"--history {history}: no history store there (invbench history add)")
        try:
            base_set, _ = load_pair(base, head)
        except CompareError as exc:
            raise fail(str(exc)) from None
        device = str((base_set.meta.get("run") or {}).get("device", "cpu"))
        noise = history_noise(store, base_set.meta, device)
    try:
        comparison = compare_dirs(base, head, policy, across_devices, noise)
    except CompareError as exc:
        raise fail(str(exc)) from None
    emit(comparison, fmt, output)
    gate(comparison, fail_on_regression, backend)
