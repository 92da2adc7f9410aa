"""Running `invbench run` of another git revision: a detached worktree and a worker process.

Each revision is checked out with `git worktree add --detach` into a temporary
directory (the user's checkout, index and uncommitted changes are never touched)
and removed afterwards. Each run is a worker process, started with that worktree
as working directory and first on PYTHONPATH, so it imports its own invbench and
reads its own suites/, and runs `invbench run` through the revision's
`invbench.cli.main(argv)`. The commit recorded in the run's meta.json is checked
against the revision. `invbench ab` and `invbench history backfill` run
revisions this way.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from invbench.core.spec import Dtype, Mode
from invbench.storage.results import ResultsError, ResultSet, load_results


class RevisionError(ValueError):
    """Something that stops running a revision; the CLI prints it on one line and exits 2."""


# -- git ----------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RevisionError(f"git {' '.join(args)}: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise RevisionError(f"git {' '.join(args)}: {last}")
    return done.stdout.strip()


def resolve_revision(repo: Path, rev: str) -> str:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except RevisionError:
        raise RevisionError(f"{rev!r} is not a commit of the repository at {repo}") from None


def repo_root(repo: Path) -> Path:
    return Path(git(repo, "rev-parse", "--show-toplevel"))


@contextlib.contextmanager
def termination_unwinds() -> Iterator[None]:
    """While active, SIGTERM and SIGHUP raise SystemExit(128 + signal) in the main thread.

    Python's default for them ends the process at once, skipping every ``finally``: a
    killed `invbench ab` left its worktrees registered in the user's repository and its
    workers running. Raised as an exception, they unwind like Ctrl-C does.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, unwind) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def worktrees(repo: Path, commits: Sequence[str]) -> Iterator[list[Path]]:
    """Detached worktrees of the commits in a temporary directory, removed on exit,
    also when the process is told to terminate (SIGTERM, SIGHUP)."""
    with termination_unwinds():
        yield from _worktrees(repo, commits)


def _worktrees(repo: Path, commits: Sequence[str]) -> Iterator[list[Path]]:
    tmp = Path(tempfile.mkdtemp(prefix="invbench-rev-"))
    paths: list[Path] = []
    try:
        for i, commit in enumerate(commits):
            path = tmp / f"{i:03d}-{commit[:8]}"
            git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
            paths.append(path)
        yield paths
    finally:
        for path in paths:
            with contextlib.suppress(RevisionError):
                git(repo, "worktree", "remove", "--force", str(path))
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(RevisionError):
            git(repo, "worktree", "prune")


# -- runs ---------------------------------------------------------------------


def suite_file(worktree: Path, suite: str) -> Path:
    path = Path(suite)
    if path.suffix == ".toml":
        if not path.is_file():
            raise RevisionError(f"suite file {suite} does not exist")
        return path.resolve()
    candidate = worktree / "suites" / f"{suite}.toml"
    if not candidate.is_file():
        raise RevisionError(f"this revision has no suite {suite!r} (no suites/{suite}.toml)")
    return candidate


def run_argv(
    suite_path: Path,
    out: Path,
    *,
    device: str = "auto",
    backends: Sequence[str] = (),
    dtypes: Sequence[Dtype] = (),
    modes: Sequence[Mode] = (),
    batch: int | None = None,
    samples: int | None = None,
    threads: int | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """argv of `invbench run` for one suite file (extra: further options, as given)."""
    args = ["run", "--suite", str(suite_path), "--device", device, "--out", str(out)]
    for b in backends:
        args += ["--backend", b]
    for d in dtypes:
        args += ["--dtype", Dtype(d).value]
    for m in modes:
        args += ["--mode", Mode(m).value]
    if batch is not None:
        args += ["--batch", str(batch)]
    if samples is not None:
        args += ["--samples", str(samples)]
    if threads is not None:
        args += ["--threads", str(threads)]
    return args + list(extra)


# The loop each side's worker process runs: argv lines in, {"rc": N} lines out. It
# imports the revision's own invbench.cli (the worktree is first on sys.path) and
# calls its main(argv); everything main prints goes to stderr (a log file). A line
# {"lockstep": config} hands the process to the revision's invbench.running.lockstep
# (answered {"unsupported": why} by a revision that has none).
_WORKER = """
import contextlib, json, os, sys
if os.environ.get("INVBENCH_REVISION_TREE"):
    # an editable install's import hook would fill in any module the revision lacks
    # with this checkout's: only the revision's own tree may answer for invbench
    sys.meta_path[:] = [
        f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
    ]
reply = sys.stdout
def send(message):
    reply.write(json.dumps(message) + "\\n"); reply.flush()
from invbench.cli import main
send({"ready": True})
for line in sys.stdin:
    request = json.loads(line)
    with contextlib.redirect_stdout(sys.stderr):
        if isinstance(request, dict) and "lockstep" in request:
            try:
                from invbench.running.lockstep import serve
            except ImportError as exc:
                send({"unsupported": f"no lockstep runs in this revision ({exc})"})
                continue
            inbox = (json.loads(l) for l in sys.stdin)
            try:
                rc = serve(request["lockstep"], inbox, send)
            except BaseException as exc:
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
                send({"failed": f"{type(exc).__name__}: {exc}"})
                rc = 1
            sys.exit(rc)
        try:
            rc = main(request)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            rc = 1
    send({"rc": rc})
"""


class Worker:
    """A process that imports one revision's invbench and runs `invbench run` on request.

    worktree None: this checkout's own invbench, in the current directory.
    """

    def __init__(self, python: str, worktree: Path | None, log: Path, label: str) -> None:
        env = dict(os.environ)
        # The size of the environment shifts where the stack starts, and with it the
        # alignment of everything on it: a fixed size would deal every process of a side
        # the same layout, and a layout effect would pose as a difference between sides.
        env["INVBENCH_LAYOUT_PAD"] = "x" * secrets.randbelow(4096)
        if worktree is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(worktree), env.get("PYTHONPATH", "")) if p
            )
            env["INVBENCH_REVISION_TREE"] = str(worktree)
        self.label = label
        self.log = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in close()
        try:
            self.proc = subprocess.Popen(
                [python, "-c", _WORKER],
                cwd=worktree if worktree is not None else Path.cwd(),
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                text=True,
            )
        except OSError as exc:
            self._log.close()
            raise RevisionError(f"{label}: cannot start {python}: {exc}") from None

    def _reply(self, timeout_s: float, what: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            if not ready:
                self.proc.kill()
            raise RevisionError(f"{what}: {'no answer' if not ready else 'exited'}; {self._tail()}")
        return dict(json.loads(line))

    def _tail(self) -> str:
        self._log.flush()
        lines = [ln for ln in self.log.read_text().splitlines() if ln.strip()]
        return lines[-1].strip() if lines else "no output"

    def wait_ready(self, timeout_s: float) -> None:
        self._reply(timeout_s, f"{self.label}: importing invbench")

    def send(self, message: Any, what: str) -> None:
        """Send one JSON message; its reply is read with receive()."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise RevisionError(f"{what}: worker exited; {self._tail()}") from None

    def receive(self, timeout_s: float, what: str) -> dict[str, Any]:
        """The reply to the last message sent (a RevisionError if none comes)."""
        answer = self._reply(timeout_s, what)
        if "failed" in answer:
            raise RevisionError(f"{what}: {answer['failed']}")
        return answer

    def ask(self, message: Any, timeout_s: float, what: str) -> dict[str, Any]:
        """Send one JSON message, return the JSON reply (a RevisionError if none comes)."""
        self.send(message, what)
        return self.receive(timeout_s, what)

    def run(self, argv: Sequence[str], timeout_s: float, what: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(list(argv)) + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise RevisionError(f"{what}: worker exited; {self._tail()}") from None
        rc = self._reply(timeout_s, what).get("rc")
        if rc != 0:
            raise RevisionError(f"{what} failed (exit {rc}): {self._tail()}")

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def check_commit(out: Path, commit: str, label: str) -> ResultSet:
    """The run's result set, after checking it was made by the revision's own code."""
    try:
        results = load_results(out)
    except ResultsError as exc:
        raise RevisionError(f"{label}: {exc}") from None
    got = (results.meta.get("git") or {}).get("commit")
    if got != commit:
        raise RevisionError(
            f"{label} ran invbench from commit {got}, not {commit}: the revision's own "
            "code was not the one imported"
        )
    return results


def run_in_worker(
    python: str,
    worktree: Path | None,
    argv: Sequence[str],
    out: Path,
    commit: str | None,
    label: str,
    timeout_s: float,
) -> ResultSet:
    """One `invbench run` of the revision checked out at worktree, in a fresh process.

    worktree and commit None: this checkout's invbench, and no check of the commit.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    worker = Worker(python, worktree, out.with_suffix(".log"), label)
    try:
        worker.wait_ready(timeout_s)
        worker.run(argv, timeout_s, label)
    finally:
        worker.close()
    if commit is None:
        try:
            return load_results(out)
        except ResultsError as exc:
            raise RevisionError(f"{label}: {exc}") from None
    return check_commit(out, commit, label)
