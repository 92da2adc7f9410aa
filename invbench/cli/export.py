"""`invbench export`: a result directory in another tool's format."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from invbench.cli.console import err, fail, note

DEFAULT_FILE = "pytest-benchmark.json"  # inside the result directory
STDOUT = "-"


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def export_command(
    results: Annotated[Path, typer.Argument(help="Result directory to export.")],
    fmt: Annotated[
        str, typer.Option("--format", help="Export format: pytest-benchmark.")
    ] = "pytest-benchmark",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help=f"Write to this file; '-' for standard output (default: RESULTS/{DEFAULT_FILE}"
            " on a terminal, standard output in a pipe).",
        ),
    ] = None,
) -> None:
    """Write a result directory in another tool's format (pytest-benchmark JSON)."""
    import json

    from invbench.storage.export import ExportError, write_pytest_benchmark

    if fmt != "pytest-benchmark":
        raise fail(f"--format must be pytest-benchmark, got {fmt!r}")
    try:
        text, skipped = write_pytest_benchmark(results)
    except ExportError as exc:
        raise fail(str(exc)) from None
    if skipped:
        err.print(f"{skipped} rows that are not ok were left out", highlight=False)
    if str(output) == STDOUT or (output is None and not stdout_is_terminal()):
        print(text, end="")
        return
    target = output if output is not None else results / DEFAULT_FILE
    try:
        target.write_text(text)
    except OSError as exc:
        raise fail(f"cannot write {target}: {exc}") from None
    n = len(json.loads(text)["benchmarks"])
    where = "" if output is not None else " (--output FILE to choose, --output - for stdout)"
    plural = "" if n == 1 else "s"
    note(f"{n} benchmark{plural} written to {target}{where}")
