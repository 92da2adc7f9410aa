"""`invbench ab`: two git revisions run interleaved on this machine, then compared."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from invbench.cli.compare import (
    AlphaOpt,
    CorrectionOpt,
    FailOpt,
    FormatOpt,
    NoiseCvOpt,
    OutputOpt,
    ThresholdOpt,
    emit,
    gate,
    policy_from,
)
from invbench.cli.console import err, fail
from invbench.core.choices import Interleave, OutputFormat
from invbench.core.spec import Dtype, Mode


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
        int,
        typer.Option(help="Runs per case and side; 3 gives base, head, head, base, base, head."),
    ] = 3,
    threads: Annotated[
        int | None,
        typer.Option(help="torch's intra-op threads in every run (default: each suite's)."),
    ] = None,
    min_time: Annotated[
        float,
        typer.Option(
            help="lockstep: seconds each row is timed on each side at least (the two "
            "processes must see the same mix of the machine's states)."
        ),
    ] = 0.5,
    interleave: Annotated[
        str,
        typer.Option(
            help="lockstep (default): a base and a head process at once, their rounds "
            "alternated; case: the sides' runs in turn per case entry; suite: per suite."
        ),
    ] = "lockstep",
    repo: Annotated[Path, typer.Option(help="The git repository holding both revisions.")] = (
        Path(".")
    ),
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for base/, head/, runs/ and the comparison."),
    ] = None,
    threshold: ThresholdOpt = 0.05,
    alpha: AlphaOpt = 0.01,
    correction: CorrectionOpt = "holm",
    noise_cv: NoiseCvOpt = None,
    fmt: FormatOpt = OutputFormat.TABLE,
    output: OutputOpt = None,
    fail_on_regression: FailOpt = False,
) -> None:
    """Run a suite on two git revisions, interleaved, then compare them."""
    from invbench.analysis.ab import AbError, AbRequest, run_ab
    from invbench.analysis.compare import CompareError
    from invbench.render.compare_render import write_comparison_files

    if min_time < 0:
        raise fail(f"--min-time must be >= 0, got {min_time:g}")
    if interleave not in {i.value for i in Interleave}:
        raise fail(f"--interleave must be lockstep, case or suite, got {interleave!r}")

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
        threads=threads,
        repeats=repeats,
        min_time_s=min_time,
        interleave=Interleave(interleave),
        repo=repo,
        out=out_dir,
        policy=policy_from(threshold, alpha, correction, noise_cv),
    )
    try:
        result = run_ab(request, on_status=lambda text: err.print(text, highlight=False))
    except (AbError, CompareError) as exc:
        raise fail(str(exc)) from None
    write_comparison_files(result.comparison, result.base_dir.parent)
    err.print(f"results: {result.base_dir} and {result.head_dir}", highlight=False)
    emit(result.comparison, fmt, output)
    gate(result.comparison, fail_on_regression, None)
