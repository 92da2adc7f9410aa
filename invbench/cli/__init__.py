"""The command line: one module per command, registered on the Typer app in app.py."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run the command line with argv (default: sys.argv[1:]); returns the exit status."""
    from invbench.cli.app import main as app_main

    return app_main(argv)


__all__ = ["main"]
