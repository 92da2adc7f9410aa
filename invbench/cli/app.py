"""The Typer app: every command registered from its own module.

Command modules import only typer, rich and the core vocabularies at module level;
everything heavy (torch, pandas, matplotlib, the running and rendering layers) is
imported inside the command that needs it, so `--help` answers at once.
"""

from __future__ import annotations

import sys

import typer

from invbench.cli import (
    ab,
    compare,
    env,
    export,
    history,
    listing,
    plot,
    profile,
    report,
    run,
)
from invbench.cli.console import err

try:  # newer typer vendors click; older releases depend on it
    from typer import _click as click  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the installed typer
    import click  # type: ignore[no-redef]

app = typer.Typer(
    help="invbench: trustworthy numbers for involution and convolution kernels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run")(run.run)
app.command("list")(listing.list_)
app.command("env")(env.env)
app.command("compare")(compare.compare_command)
app.command("ab")(ab.ab_command)
app.command("export")(export.export_command)
app.command("plot")(plot.plot_command)
app.command("report")(report.report_command)
app.command("profile")(profile.profile_command)
app.add_typer(history.app, name="history")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: usage errors become one line and exit status 2."""
    command = typer.main.get_command(app)
    try:
        status = command.main(
            args=argv if argv is not None else sys.argv[1:],
            prog_name="invbench",
            standalone_mode=False,
        )
    except click.exceptions.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # help was printed; nothing is wrong
            return 0
        err.print(
            f"invbench: error: {exc.format_message()}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return 2
    except (typer.Abort, KeyboardInterrupt):
        err.print("invbench: interrupted; rows already measured are on disk", highlight=False)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
