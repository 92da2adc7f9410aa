"""Thin Typer commands: `invbench compare`, `invbench ab` and `invbench export`.

They are registered in invbench.cli.app; errors are one line on stderr with exit 2.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from invbench.analysis.compare import CompareError, ComparePolicy, Comparison, compare_dirs
from invbench.core.spec import Dtype, Mode
from invbench.render.compare_render import (
    OutputFormat,
    render_text,
    rich_table,
    write_comparison_files,
)

_err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    _err.print(f"invbench: error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _table_text(comparison: Comparison, width: int = 160) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, no_color=True).print(rich_table(comparison))
    return buffer.getvalue()


def emit(comparison: Comparison, fmt: OutputFormat, output: Path | None) -> None:
    """Print (or write to output) the comparison, with environment warnings on stderr."""
    for warning in comparison.warnings:
        _err.print(f"[bold red]WARNING:[/] {warning}: the runs may not be comparable")
    if output is not None:
        text = (
            _table_text(comparison) if fmt is OutputFormat.TABLE else render_text(comparison, fmt)
        )
        try:
            output.write_text(text)
        except OSError as exc:
            raise _fail(f"cannot write {output}: {exc}") from None
        _err.print(f"{comparison.headline()} -> {output}", highlight=False)
    elif fmt is OutputFormat.TABLE:
        out = Console()
        if not out.is_terminal:
            out = Console(width=160)
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
        _err.print(f"invbench: {len(bad)} regressed rows: {names}{more}", highlight=False)
        raise typer.Exit(1)


ThresholdOpt = Annotated[
    float, typer.Option(help="Smallest change called, as a fraction (0.05 = 5%).")
]
AlphaOpt = Annotated[float, typer.Option(help="Significance level of the Mann-Whitney U test.")]
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


def compare_command(
    base: Annotated[Path, typer.Argument(help="Result directory of the base run.")],
    head: Annotated[Path, typer.Argument(help="Result directory of the head run.")],
    threshold: ThresholdOpt = 0.05,
    alpha: AlphaOpt = 0.01,
    fmt: FormatOpt = OutputFormat.TABLE,
    output: OutputOpt = None,
    fail_on_regression: FailOpt = False,
    backend: Annotated[
        list[str] | None,
        typer.Option(help="Only these backends count for --fail-on-regression (repeatable)."),
    ] = None,
) -> None:
    """Compare two result directories row by row: ratio, CI, Mann-Whitney U, verdict."""
    policy = _policy(threshold, alpha)
    try:
        comparison = compare_dirs(base, head, policy)
    except CompareError as exc:
        raise _fail(str(exc)) from None
    emit(comparison, fmt, output)
    gate(comparison, fail_on_regression, backend)


def ab_command(
    base_rev: Annotated[str, typer.Argument(help="Base git revision (branch, tag, commit).")],
    head_rev: Annotated[str, typer.Argument(help="Head git revision.")],
    suite: Annotated[str, typer.Option(help="Suite name (suites/NAME.toml of each revision).")],
    backend: Annotated[
        list[str] | None, typer.Option(help="Backend to run (repeatable; default: the suite's).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    dtype: Annotated[list[Dtype] | None, typer.Option(help="Dtype (repeatable).")] = None,
    mode: Annotated[list[Mode] | None, typer.Option(help="fwd or fwd+bwd (repeatable).")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size for every case.")] = None,
    samples: Annotated[
        int | None, typer.Option(help="Fixed samples per row and run (default: adaptive).")
    ] = None,
    repeats: Annotated[
        int, typer.Option(help="Runs per case and side; 2 gives base, head, head, base.")
    ] = 2,
    interleave: Annotated[
        str, typer.Option(help="case: one run per case entry (default); suite: per suite.")
    ] = "case",
    repo: Annotated[Path, typer.Option(help="The git repository holding both revisions.")] = (
        Path(".")
    ),
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for base/, head/, runs/ and the comparison."),
    ] = None,
    threshold: ThresholdOpt = 0.05,
    alpha: AlphaOpt = 0.01,
    fmt: FormatOpt = OutputFormat.TABLE,
    output: OutputOpt = None,
    fail_on_regression: FailOpt = False,
) -> None:
    """Run a suite on two git revisions, interleaved, then compare them."""
    from invbench.analysis.ab import AbError, AbRequest, Interleave, run_ab

    if interleave not in {i.value for i in Interleave}:
        raise _fail(f"--interleave must be case or suite, got {interleave!r}")

    request = AbRequest(
        base_rev=base_rev,
        head_rev=head_rev,
        suite=suite,
        backends=tuple(backend or ()),
        device=device,
        dtypes=tuple(dtype or ()),
        modes=tuple(mode or ()),
        batch=batch,
        samples=samples,
        repeats=repeats,
        interleave=Interleave(interleave),
        repo=repo,
        out=out_dir,
        policy=_policy(threshold, alpha),
    )
    try:
        result = run_ab(request, on_status=lambda text: _err.print(text, highlight=False))
    except (AbError, CompareError) as exc:
        raise _fail(str(exc)) from None
    write_comparison_files(result.comparison, result.base_dir.parent)
    _err.print(f"results: {result.base_dir} and {result.head_dir}", highlight=False)
    emit(result.comparison, fmt, output)
    gate(result.comparison, fail_on_regression, None)


def _policy(threshold: float, alpha: float) -> ComparePolicy:
    try:
        return ComparePolicy(threshold=threshold, alpha=alpha)
    except CompareError as exc:
        raise _fail(str(exc)) from None


def export_command(
    results: Annotated[Path, typer.Argument(help="Result directory to export.")],
    fmt: Annotated[
        str, typer.Option("--format", help="Export format: pytest-benchmark.")
    ] = "pytest-benchmark",
    output: OutputOpt = None,
) -> None:
    """Write a result directory in another tool's format (pytest-benchmark JSON)."""
    from invbench.storage.export import ExportError, write_pytest_benchmark

    if fmt != "pytest-benchmark":
        raise _fail(f"--format must be pytest-benchmark, got {fmt!r}")
    try:
        text, skipped = write_pytest_benchmark(results)
    except ExportError as exc:
        raise _fail(str(exc)) from None
    if skipped:
        _err.print(f"{skipped} rows that are not ok were left out", highlight=False)
    if output is None:
        print(text, end="")
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc}") from None
