"""Seed the history with older commits: each run in its own worktree, as `invbench ab` runs.

The commits of a range (``A..B``: first-parent, oldest first; or one revision)
are checked out one at a time in a temporary detached worktree, run with the
revision's own `invbench run` in a fresh worker process (invbench.running.
revisions), checked to carry that commit, and added to the store. Commits the
store already holds for this suite on this machine are skipped unless asked.
A commit that fails (no such suite then, a crash) is reported and the next one
runs: one broken commit does not stop a backfill.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from invbench.analysis.history.machine import machine_of
from invbench.analysis.history.store import AddOutcome, Filters, HistoryError, HistoryStore
from invbench.core.spec import Dtype, Mode
from invbench.running.revisions import (
    RevisionError,
    git,
    repo_root,
    resolve_revision,
    run_argv,
    run_in_worker,
    suite_file,
    worktrees,
)


@dataclass(frozen=True)
class BackfillRequest:
    rev_range: str
    suite: str
    store: Path
    repo: Path = Path(".")
    backends: Sequence[str] = ()
    device: str = "auto"
    dtypes: Sequence[Dtype] = ()
    modes: Sequence[Mode] = ()
    batch: int | None = None
    samples: int | None = None
    repeats: int = 1  # runs per commit, each a fresh process
    keep: Path | None = None  # where the result directories stay (default: discarded)
    redo: bool = False  # run commits the store already has on this machine too
    python: str = sys.executable
    timeout_s: float = 3600.0


@dataclass
class BackfillReport:
    commits: list[str] = field(default_factory=list)
    added: list[AddOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def commits_in(repo: Path, rev_range: str) -> list[str]:
    """The commits of A..B along first parents, oldest first; or the one commit named."""
    if ".." not in rev_range:
        return [resolve_revision(repo, rev_range)]
    listed = git(repo, "rev-list", "--reverse", "--first-parent", rev_range).split()
    if not listed:
        raise RevisionError(f"{rev_range} holds no commits")
    return listed


def _device_kind(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _stored_here(store: HistoryStore, suite: str, device: str) -> set[str]:
    """Commits of the suite the store holds from this machine (for this device kind)."""
    if not store.exists():
        return set()
    from invbench.measure.environment import environment

    machine = machine_of(environment(), _device_kind(device))
    rows = store.rows(Filters(suite=[suite], machine=[machine.id]))
    return set(rows["commit_sha"])


def run_backfill(
    request: BackfillRequest, on_status: Callable[[str], None] | None = None
) -> BackfillReport:
    status = on_status or (lambda text: None)
    repo = repo_root(request.repo)
    store = HistoryStore(request.store)
    report = BackfillReport(commits=commits_in(repo, request.rev_range))
    suite_name = Path(request.suite).stem
    done = set() if request.redo else _stored_here(store, suite_name, request.device)
    todo = [c for c in report.commits if c not in done]
    report.skipped = [c for c in report.commits if c in done]
    with tempfile.TemporaryDirectory(prefix="invbench-backfill-") as tmp:
        keep = (request.keep or Path(tmp)).resolve()
        for i, commit in enumerate(todo, 1):
            subject = git(repo, "show", "-s", "--format=%s", commit)
            try:
                with worktrees(repo, [commit]) as (tree,):
                    source = suite_file(tree, request.suite)
                    for r in range(request.repeats):
                        label = f"[{i}/{len(todo)}] {commit[:8]} {subject[:50]}"
                        if request.repeats > 1:
                            label += f" (run {r + 1}/{request.repeats})"
                        status(label)
                        out = keep / f"{commit[:12]}-{r}"
                        argv = run_argv(
                            source,
                            out,
                            device=request.device,
                            backends=request.backends,
                            dtypes=request.dtypes,
                            modes=request.modes,
                            batch=request.batch,
                            samples=request.samples,
                        )
                        run_in_worker(
                            request.python, tree, argv, out, commit, label, request.timeout_s
                        )
                        report.added.append(store.add(out, repo=repo))
            except (RevisionError, HistoryError) as exc:
                report.failed.append((commit, str(exc)))
    return report
