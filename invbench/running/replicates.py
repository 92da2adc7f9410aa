"""`invbench run --repeats N`: N runs of one suite, each in a fresh process, merged.

The samples of one process are not independent replicates of the code: they share
its memory layout, thread placement and neighbours, and on a shared machine a whole
process can land in a slow state and stay there. Runs in separate processes are the
replicates that comparisons need (invbench.analysis.verdicts judges run medians).

This is the machinery `invbench ab` uses for each of its sides: every run is a
worker process (invbench.running.revisions.Worker) running `invbench run` with the
same options into DIR/runs/NNN, and the runs are merged into DIR
(invbench.storage.merge: pooled summaries, a ``run`` column in samples.parquet, the
number of runs and the spread of their medians per row). An interrupted or failed
run keeps every run completed before it, merged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from invbench.running.bench import RunRequest
from invbench.running.revisions import RevisionError, run_argv, run_in_worker
from invbench.storage.merge import merge_runs
from invbench.storage.results import ResultSet

RUNS_DIR = "runs"


def request_argv(request: RunRequest, out: Path) -> list[str]:
    """argv of the `invbench run` that makes one run of request into out."""
    extra: list[str] = []
    for case in request.cases:
        extra += ["--case", case]
    extra += ["--cache", request.cache_mode.value]
    if request.target_rel_ci is not None:
        extra += ["--target-ci", repr(request.target_rel_ci)]
    if request.max_time_s is not None:
        extra += ["--max-time", repr(request.max_time_s)]
    if request.tf32:
        extra.append("--tf32")
    if request.min_clock is not None:
        extra += ["--min-clock", repr(request.min_clock)]
    if request.affinity is not None:
        extra += ["--affinity", request.affinity]
    suite = Path(request.suite)
    return run_argv(
        suite.resolve() if suite.suffix == ".toml" else suite,
        out,
        device=request.device,
        backends=request.backends,
        dtypes=request.dtypes,
        modes=request.modes,
        batch=request.batch,
        samples=request.samples,
        threads=request.threads,
        extra=extra,
    )


@dataclass(frozen=True)
class Repeated:
    directory: Path  # the merged result directory
    completed: int  # runs merged into it
    asked: int
    stopped: str | None = None  # why fewer runs than asked were merged


def run_repeats(
    request: RunRequest,
    repeats: int,
    out: Path,
    *,
    python: str = sys.executable,
    timeout_s: float = 3600.0,
    on_status: Callable[[str], None] | None = None,
) -> Repeated:
    """repeats runs of request, one fresh process each, merged into out."""
    status = on_status or (lambda text: None)
    if repeats < 1:
        raise RevisionError(f"--repeats must be >= 1, got {repeats}")
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise RevisionError(f"{out} exists and is not empty")
    done: list[ResultSet] = []
    stopped: str | None = None
    try:
        for i in range(1, repeats + 1):
            label = f"run {i} of {repeats}"
            status(label)
            run_dir = out / RUNS_DIR / f"{i:03d}"
            argv = request_argv(request, run_dir)
            done.append(run_in_worker(python, None, argv, run_dir, None, label, timeout_s))
    except KeyboardInterrupt:
        stopped = "interrupted"
    except RevisionError as exc:
        if not done:
            raise
        stopped = str(exc)
    if not done:
        raise KeyboardInterrupt
    _merge(done, out, repeats)
    return Repeated(out, len(done), repeats, stopped)


def _merge(done: Sequence[ResultSet], out: Path, repeats: int) -> None:
    merge_runs(
        done,
        out,
        {
            "asked": repeats,
            "completed": len(done),
            "runs": [str(rs.directory.relative_to(out)) for rs in done],
        },
        meta_key="repeats",
    )
