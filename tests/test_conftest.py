"""The test suite's own hooks: a passing run ends with its summary, not teardown noise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")

# At interpreter exit, after pytest's summary, as Triton's nanobind bindings print.
LEAKY_TEST = """
import atexit
import os

atexit.register(lambda: os.write(2, b"nanobind: leaked 3 instances!\\n"))


def test_maybe_fails():
    assert os.environ.get("FAIL") != "1"
"""


def _pytest(directory: Path, fail: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FAIL": "1" if fail else "0"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)],
        capture_output=True, text=True, env=env, cwd=directory, timeout=300,
    )  # fmt: skip


def test_teardown_noise_is_dropped_only_after_a_passing_run(tmp_path: Path) -> None:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST)
    passing = _pytest(tmp_path, fail=False)
    assert passing.returncode == 0 and "1 passed" in passing.stdout, passing.stdout
    assert "nanobind" not in passing.stderr + passing.stdout
    failing = _pytest(tmp_path, fail=True)
    assert failing.returncode == 1 and "1 failed" in failing.stdout
    assert "nanobind: leaked 3 instances!" in failing.stderr  # a failing run hides nothing
