"""`invbench list`: backends with their availability, and suites."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from invbench.cli.console import fail, out
from invbench.core.spec import DeviceKind, Dtype


def list_(
    device: Annotated[
        str, typer.Option(help="Device to check availability on: auto, cpu, cuda.")
    ] = ("auto"),
) -> None:
    """Backends with their availability, and suites with their case counts."""
    from rich.table import Table

    from invbench.backends.registry import default_registry
    from invbench.core.suites import available_suites, load_suite, suite_dirs
    from invbench.running.bench import UsageError, resolve_device

    registry = default_registry()
    kinds = [DeviceKind.CPU, DeviceKind.CUDA] if device == "auto" else None
    if kinds is None:
        try:
            kinds = [DeviceKind(resolve_device(device).type)]
        except UsageError as exc:
            raise fail(str(exc)) from None
    table = Table(title="backends")
    for col in ("name", "kind", "dtypes", *(f"on {k.value}" for k in kinds), "description"):
        table.add_column(col, no_wrap=col == "name", overflow="fold")
    for b in registry:
        avail = [b.availability(k) or "[green]available[/]" for k in kinds]
        dtypes = ", ".join(d.value for d in Dtype if d in b.dtypes)  # wraps, never cut
        table.add_row(b.name, b.kind.value, dtypes, *avail, b.description)
    out.print(table)
    for name, problem in registry.load_errors.items():
        out.print(f"[red]plug-in {name!r} failed to load:[/] {problem}")
    suites = Table(title="suites (case names are what --case and profile --case take)")
    for col in ("name", "level", "cases", "description"):
        suites.add_column(col, no_wrap=col == "name", overflow="fold")
    seen: dict[str, Path] = {}
    for directory in reversed(suite_dirs()):
        seen.update(available_suites(directory))
    for name, path in seen.items():
        try:
            s = load_suite(path)
            cases = f"{len(s.cases)}: {', '.join(c.name for c in s.cases)}"
            suites.add_row(name, s.level.value, cases, s.description)
        except ValueError as exc:
            suites.add_row(name, "", "[red]invalid[/]", str(exc))
    out.print(suites)
