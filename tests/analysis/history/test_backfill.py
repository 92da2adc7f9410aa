"""history backfill: every commit of a range run in its own worktree, added, skipped when known."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from invbench.analysis.history.backfill import BackfillRequest, commits_in, run_backfill
from invbench.analysis.history.machine import machine_fields
from invbench.analysis.history.store import HistoryStore
from invbench.measure.environment import environment
from invbench.running.revisions import RevisionError

from .helpers import CPU_META

# A stand-in for an old invbench: `main(argv)` writes a one-row run whose median is the
# number in speed.txt of its own commit ("fail": the run fails), with the commit it ran.
FAKE_CLI = """
import json, os, subprocess, sys
from pathlib import Path
import pandas as pd

KEY = dict(suite="smoke", case="c", backend="b", device="cpu", dtype="float32", mode="fwd",
           batch=1, channels=1, height=1, width=1, kernel_size=3, stride=1, dilation=1,
           groups=1, padding=1)

def main(argv):
    out = Path(argv[argv.index("--out") + 1])
    speed = Path("speed.txt").read_text().strip()
    if speed == "fail":
        print("this commit is broken", file=sys.stderr)
        return 1
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    out.mkdir(parents=True)
    row = dict(KEY, status="ok", reason="", n_samples=1, median_ms=float(speed))
    pd.DataFrame([row]).to_parquet(out / "results.parquet", index=False)
    meta = json.loads(os.environ["FAKE_INVBENCH_META"])
    meta.update(git={"commit": commit.strip(), "dirty": False}, run={"status": "complete"})
    (out / "meta.json").write_text(json.dumps(meta))
    return 0
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "repo"
    (repo / "invbench").mkdir(parents=True)
    (repo / "suites").mkdir()
    git(repo, "init", "--quiet")
    git(repo, "config", "user.email", "t@example.org")
    git(repo, "config", "user.name", "t")
    (repo / "invbench" / "__init__.py").write_text("")
    (repo / "invbench" / "cli.py").write_text(FAKE_CLI)
    (repo / "suites" / "smoke.toml").write_text('description = "fake"\n')
    for i, speed in enumerate(["1.0", "1.0", "1.1", "fail", "1.5", "1.5"]):
        (repo / "speed.txt").write_text(speed)
        git(repo, "add", "-A")
        git(repo, "commit", "--quiet", "--allow-empty", "-m", f"commit {i} at {speed}")
    # The runs claim this machine, so that a second backfill knows them as its own.
    here = machine_fields(environment(), "cpu")
    meta = {**CPU_META, **{k: v for k, v in here.items() if k != "device"}}
    monkeypatch.setenv("FAKE_INVBENCH_META", json.dumps(meta))
    return repo


def test_backfill_runs_each_commit_of_the_range_and_skips_known_ones(
    repo: Path, tmp_path: Path
) -> None:
    commits = git(repo, "rev-list", "--reverse", "HEAD").split()
    assert commits_in(repo, "HEAD~5..HEAD") == commits[1:]
    request = BackfillRequest(
        rev_range="HEAD~5..HEAD", suite="smoke", store=tmp_path / "h", repo=repo, device="cpu"
    )
    seen: list[str] = []
    report = run_backfill(request, on_status=seen.append)
    assert [o.commit for o in report.added] == [c for i, c in enumerate(commits) if i not in (0, 3)]
    assert [c for c, _ in report.failed] == [commits[3]]
    assert "this commit is broken" in report.failed[0][1]
    assert len(seen) == 5 and "commit 4 at 1.5" in seen[3]
    rows = HistoryStore(tmp_path / "h").rows()
    assert list(rows["median_ms"]) == [1.0, 1.1, 1.5, 1.5]  # in commit order
    assert list(rows["subject"]) == ["commit 1 at 1.0", "commit 2 at 1.1", "commit 4 at 1.5",
                                     "commit 5 at 1.5"]  # fmt: skip
    again = run_backfill(request)
    assert again.added == [] and again.skipped == [c for c in commits[1:] if c != commits[3]]
    assert git(repo, "worktree", "list").count("\n") == 0  # every worktree removed


def test_a_range_with_no_commits_or_a_bad_revision_is_an_error(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(RevisionError, match="holds no commits"):
        commits_in(repo, "HEAD..HEAD")
    with pytest.raises(RevisionError, match="not a commit"):
        commits_in(repo, "nope")
