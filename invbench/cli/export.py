"""`invbench export`: a result directory in another tool's format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from invbench.cli.compare import OutputOpt
from invbench.cli.console import err, fail


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
        raise fail(f"--format must be pytest-benchmark, got {fmt!r}")
    try:
        text, skipped = write_pytest_benchmark(results)
    except ExportError as exc:
        raise fail(str(exc)) from None
    if skipped:
        err.print(f"{skipped} rows that are not ok were left out", highlight=False)
    if output is None:
        print(text, end="")
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc}") from None
