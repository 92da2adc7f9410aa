"""The command line answers --help without importing the heavy layers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "pandas", "matplotlib", "scipy", "pyarrow", "triton", "numpy")
COMMANDS = (
    "run", "list", "env", "compare", "ab", "export", "plot", "report", "profile", "history",
    "history add", "history show", "history regressions", "history publish", "history backfill",
)  # fmt: skip


def _modules_after(argv: list[str]) -> dict[str, object]:
    code = (
        "import contextlib, io, json, sys\n"
        "from invbench.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as buf:\n"
        f"    rc = main({argv!r})\n"
        "heavy = [m for m in " + repr(HEAVY) + " if m in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy, 'help': buf.getvalue()}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], *([*c.split(), "--help"] for c in COMMANDS)])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    result = _modules_after(argv)
    assert result["rc"] == 0
    assert "Usage" in str(result["help"])
    assert result["heavy"] == [], f"`invbench {' '.join(argv)}` imported {result['heavy']}"


def test_public_api_loads_on_first_use() -> None:
    code = (
        "import sys, invbench\n"
        "before = 'torch' in sys.modules\n"
        "from invbench import Involution, involution, InvolutionBackend, default_registry\n"
        "after = 'torch' in sys.modules\n"
        "print(before, after, callable(involution), 'unfold' in default_registry())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert proc.stdout.split() == ["False", "True", "True", "True"]
