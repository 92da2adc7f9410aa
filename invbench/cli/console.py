"""The command line's one output console, one error console and one way to fail."""

from __future__ import annotations

import typer
from rich.console import Console

out = Console()
if not out.is_terminal:  # files and pipes get the whole table, not an 80-column squeeze
    out = Console(width=160)
err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print `invbench: error: MESSAGE` on one line of stderr; raise the result (exit 2)."""
    err.print(f"invbench: error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


def note(message: str) -> None:
    """A plain line on stderr (no markup, no highlighting)."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)
