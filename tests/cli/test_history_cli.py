"""`invbench history`: add, show, regressions as a CI gate, publish, and one-line errors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from invbench.cli.app import main

from ..analysis.history.helpers import commit_name, write_run


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 commits: unfold 30% slower from commit 12, conv3x3 flat; one run per commit."""
    root = tmp_path_factory.mktemp("history")
    rng = np.random.default_rng(5)
    runs = []
    for i in range(24):
        medians = {
            "unfold": (1.0 if i < 12 else 1.3) * math.exp(rng.normal(0, 0.01)),
            "conv3x3": 2.0 * math.exp(rng.normal(0, 0.01)),
        }
        time = f"2026-01-01T00:{i:02d}:00+00:00"
        runs.append(str(write_run(root / f"r{i:02d}", commit_name(i), medians, time=time)))
    assert main(["history", "add", *runs, "--store", str(root / "h")]) == 0
    return root / "h"


def test_add_twice_says_so_and_changes_nothing(
    history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = history.parent / "r00"
    assert main(["history", "add", str(run), "--store", str(history)]) == 0
    assert "already in the history" in capsys.readouterr().err


def test_show_prints_each_series_with_its_band(
    history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "show", "--store", str(history), "--backend", "unfold"]) == 0
    text = capsys.readouterr().out
    assert "unfold" in text and "conv3x3" not in text
    assert re.search(r"\+(29|30|31)%@0000000", text)  # the step and its first commit
    assert "Test CPU 9000" in text  # the machine's label


def test_regressions_lists_the_step_and_gates(
    history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "steps.json"
    argv = ["history", "regressions", "--store", str(history), "--format", "json"]
    assert main([*argv, "--output", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [(r["backend"], r["good_commit"], r["bad_commit"]) for r in records] == [
        ("unfold", commit_name(11), commit_name(12))
    ]
    assert records[0]["size"] == pytest.approx(0.3, abs=0.03) and records[0]["confidence"] > 0.999
    assert main([*argv, "--fail-on-regression"]) == 1
    assert main([*argv, "--fail-on-regression", "--backend", "conv3x3"]) == 0
    assert main([*argv, "--fail-on-regression", "--recent", "5"]) == 0  # the step is older
    url = "https://example.org/compare/{good}...{bad}"
    capsys.readouterr()
    assert main(["history", "regressions", "--store", str(history), "--format", "markdown",
                 "--commit-url", url]) == 0  # fmt: skip
    assert f"https://example.org/compare/{commit_name(11)}...{commit_name(12)}" in (
        capsys.readouterr().out
    )


def test_publish_writes_one_self_contained_page(history: Path, tmp_path: Path) -> None:
    assert main(["history", "publish", str(tmp_path / "site"), "--store", str(history)]) == 0
    page = (tmp_path / "site" / "index.html").read_text()
    assert page.count('<figure class="graph"') == 2 and page.count("<svg") == 2
    assert f'id="range-{commit_name(11)[:10]}-{commit_name(12)[:10]}"' in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched, no link out
    assert "<link" not in page


@pytest.mark.parametrize(
    "argv, message",
    [
        (["history", "show", "--store", "{missing}"], "holds no history"),
        (["history", "add", "{missing}", "--store", "{store}"], "no results.parquet"),
        (["history", "show", "--store", "{store}", "--backend", "nope"], "no series"),
        (["history", "regressions", "--store", "{store}", "--threshold", "-1"], "threshold"),
        (["history", "backfill", "no-such-rev", "--suite", "smoke", "--store", "{store}"],
         "not a commit"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line_and_exit_2(
    history: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    argv = [a.format(missing=tmp_path / "none", store=history) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
