"""benchmarks/plugin_busy_wait.py: plug-ins from a real dist-info, read by `invbench run`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "plugin_busy_wait.py"
WAIT_MS = 2.0


def test_busy_wait_plugins_run_through_entry_points_and_never_read_below_the_wait() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(SCRIPT), "--tries", "1", "--wait-ms", str(WAIT_MS), "--samples", "5"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True)
    rows = dict(
        (m["row"], (float(m["harness"]), float(m["plain"])))
        for m in re.finditer(
            r"^\s*0 (?P<row>\S+busywait)\s+(?P<harness>-?[\d.]+)\s+(?P<plain>-?[\d.]+)",
            out.stdout,
            re.MULTILINE,
        )
    )
    expected = {
        f"{case}/{name}"
        for case in ("k3-g2", "k5-s2-d2")
        for name in ("busywait", "unfold_busywait")
    }
    assert set(rows) == expected, out.stdout
    # a wall-clock wait cannot end early: microseconds over the wait are never negative
    for row, (harness_us, plain_us) in rows.items():
        assert harness_us >= 0 and plain_us >= 0, (row, harness_us, plain_us)
    assert re.search(r"k3-g2/unfold\s+[\d.]+\s+\(back to back", out.stdout), out.stdout
