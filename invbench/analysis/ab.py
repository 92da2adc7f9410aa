"""`invbench ab`: run a suite on two git revisions, interleaved, and compare them.

Both revisions are checked out with `git worktree add --detach` into a temporary
directory (the user's checkout, index and uncommitted changes are never touched)
and removed afterwards (invbench.running.revisions does that for `ab` and for
`history backfill`). Each run is a worker process, started with that
worktree as working directory and first on PYTHONPATH, so it imports its own
invbench and reads its own suites/, and runs `invbench run` through the
revision's `invbench.cli.main(argv)`. Every run gets a fresh process: what a
process is dealt (core placement, memory layout) can shift its timings by tens of
percent for its whole life, so runs of one side must not share one, or that shift
would look like a difference between the revisions. The commit recorded in each
run's meta.json is checked against the revision.

Interleaving: the suite is split into one chunk per `[[cases]]` entry (a copy of
the suite file holding that entry only, with every other table kept verbatim, so
axes still expand it and the suite keeps its name). For each chunk the two sides
alternate, base, head, head, base, ... for `repeats` runs each, so that drift and
heat hit both sides alike and within seconds of each other. With
`interleave=suite` a run covers the whole suite instead (fewer processes, for
small suites; the alternation is then per suite). The runs of a side
are merged into one result directory: samples of the same row are pooled and the
summary recomputed (samples.parquet gains a `run` column saying which run each
sample came from); a row that is not ok in any run stays not ok.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import tomllib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from invbench.analysis.compare import ComparePolicy, Comparison, compare_dirs
from invbench.core.choices import Interleave
from invbench.core.spec import Dtype, Mode
from invbench.running.bench import RunRequest
from invbench.running.lockstep_driver import LockstepUnsupported, lockstep_config, run_pair
from invbench.running.replicates import request_argv
from invbench.running.revisions import (
    RevisionError,
    Worker,
    check_commit,
    repo_root,
    resolve_revision,
    run_in_worker,
    suite_file,
    worktrees,
)
from invbench.storage.merge import merge_runs
from invbench.storage.results import (
    ResultRow,
    ResultSet,
)

SIDES = ("base", "head")
LOCKSTEP_MIN_TIME_S = 0.5


# Something that stops an A/B run; the CLI prints it on one line and exits 2.
AbError = RevisionError


@dataclass(frozen=True)
class AbRequest:
    base_rev: str
    head_rev: str
    suite: str
    backends: Sequence[str] = ()
    device: str = "auto"
    dtypes: Sequence[Dtype] = ()
    modes: Sequence[Mode] = ()
    batch: int | None = None
    samples: int | None = None
    threads: int | None = None  # None: each revision's suite default
    repeats: int = 3
    min_time_s: float = LOCKSTEP_MIN_TIME_S  # lockstep: each row timed this long a side
    interleave: Interleave = Interleave.LOCKSTEP
    repo: Path = Path(".")
    out: Path | None = None
    policy: ComparePolicy = field(default_factory=ComparePolicy)
    python: str = sys.executable
    timeout_s: float = 3600.0  # per run, and for a side's start


@dataclass(frozen=True)
class AbResult:
    base_dir: Path
    head_dir: Path
    comparison: Comparison
    runs: int


# -- git ----------------------------------------------------------------------


# -- suite chunks -------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise AbError(f"cannot write {value!r} to a suite chunk")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML for a suite: top-level scalars, tables (one level of subtables), [[cases]]."""
    lines: list[str] = []

    def table(prefix: str, body: Mapping[str, Any]) -> None:
        subtables = {k: v for k, v in body.items() if isinstance(v, Mapping)}
        lines.append(f"[{prefix}]")
        for k, v in body.items():
            if k not in subtables:
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        lines.append("")
        for k, v in subtables.items():
            table(f"{prefix}.{_toml_key(k)}", v)

    for k, v in data.items():
        if not isinstance(v, Mapping) and not (k == "cases" and isinstance(v, list)):
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    lines.append("")
    for k, v in data.items():
        if isinstance(v, Mapping):
            table(_toml_key(k), v)
    for case in data.get("cases", []):
        lines.append("[[cases]]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in case.items()]
        lines.append("")
    return "\n".join(lines)


def split_suite(path: Path, device: str = "cpu") -> dict[str, str]:
    """One suite text per [[cases]] entry that runs on device ("cpu" or "cuda"), in file order.

    A run table's ``only`` list (the cases a device runs) is applied here: entries it
    leaves out get no chunk, and the chunks drop the list, since each holds one case.
    """
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AbError(f"{path.name}: {exc}") from None
    cases = data.get("cases")
    if not isinstance(cases, list) or not cases:
        raise AbError(f"{path.name} has no [[cases]] to run")
    run = dict(data.get("run") or {})
    cpu = dict(run.pop("cpu", None) or {})
    only = (cpu.get("only") or run.get("only")) if device == "cpu" else run.get("only")
    run.pop("only", None)
    cpu.pop("only", None)
    if cpu:
        run["cpu"] = cpu
    base = {**data, "run": run} if run else {k: v for k, v in data.items() if k != "run"}
    chunks: dict[str, str] = {}
    for i, case in enumerate(cases):
        name = str(case.get("name", f"#{i + 1}")) if isinstance(case, Mapping) else f"#{i + 1}"
        if only and name not in only:
            continue
        chunks[name] = dump_toml({**base, "cases": [case]})
    return chunks


def schedule(names: Sequence[str], repeats: int) -> list[tuple[str, str, int]]:
    """(case entry, side, repeat) in run order: per entry base, head, head, base, ..."""
    out = []
    for name in names:
        for r in range(repeats):
            order = SIDES if r % 2 == 0 else SIDES[::-1]
            out += [(name, side, r) for side in order]
    return out


# -- runs ---------------------------------------------------------------------


def run_args(request: AbRequest, suite_path: Path, out: Path) -> list[str]:
    """argv of `invbench run` for one chunk (the same argv `run --repeats` gives a run)."""
    return request_argv(_run_request(request, suite_path), out)


# -- merging ------------------------------------------------------------------

_ROW_FIELDS = tuple(f.name for f in fields(ResultRow))


def default_out(base: str, head: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / "ab" / f"{stamp}-{base[:8]}-vs-{head[:8]}"


def run_ab(request: AbRequest, on_status: Callable[[str], None] | None = None) -> AbResult:
    status = on_status or (lambda text: None)
    if request.repeats < 1:
        raise AbError(f"--repeats must be >= 1, got {request.repeats}")
    repo = repo_root(request.repo)
    commits = {
        "base": resolve_revision(repo, request.base_rev),
        "head": resolve_revision(repo, request.head_rev),
    }
    revs = {"base": request.base_rev, "head": request.head_rev}
    out = (request.out or default_out(commits["base"], commits["head"])).resolve()
    if out.exists() and any(out.iterdir()):
        raise AbError(f"{out} exists and is not empty")
    with (
        worktrees(repo, [commits[side] for side in SIDES]) as paths,
        tempfile.TemporaryDirectory(prefix="invbench-ab-") as tmp_name,
    ):
        tmp = Path(tmp_name)
        trees = dict(zip(SIDES, paths, strict=True))
        device_kind = request.device
        if device_kind == "auto":
            import torch

            device_kind = "cuda" if torch.cuda.is_available() else "cpu"
        sources: dict[str, Path] = {}
        for side in SIDES:
            try:
                sources[side] = suite_file(trees[side], request.suite)
            except AbError as exc:
                raise AbError(f"{side} revision {revs[side]!r}: {exc}") from None
        (out / "runs").mkdir(parents=True, exist_ok=True)
        sides = _Sides(trees, sources, commits, revs)
        interleave = request.interleave
        plan: list[tuple[str, str, int]] = []
        done: dict[str, list[ResultSet]] = {side: [] for side in SIDES}
        if interleave is Interleave.LOCKSTEP:
            try:
                done = _lockstep_runs(request, sides, out, status)
                plan = [("suite", side, r) for r in range(request.repeats) for side in SIDES]
            except LockstepUnsupported as exc:
                status(f"lockstep runs not possible ({exc}); running the sides in turn")
                interleave = Interleave.CASE
                shutil.rmtree(out / "runs", ignore_errors=True)
                (out / "runs").mkdir(parents=True)
        if interleave is not Interleave.LOCKSTEP:
            plan, done = _runs_in_turn(request, interleave, sides, device_kind, tmp, out, status)
    pairing = uuid.uuid4().hex
    dirs = {}
    for side in SIDES:
        dirs[side] = merge_runs(
            done[side],
            out / side,
            {
                "side": side,
                "rev": revs[side],
                "commit": commits[side],
                "repeats": request.repeats,
                "runs": [str(rs.directory.relative_to(out)) for rs in done[side]],
                "order": [f"{n}:{s}" for n, s, _ in plan],
                "interleave": interleave.value,
                # run i of base and head were timed together: compare pairs them
                "pairing": pairing if interleave is Interleave.LOCKSTEP else None,
            },
        )
    comparison = compare_dirs(dirs["base"], dirs["head"], request.policy)
    return AbResult(dirs["base"], dirs["head"], comparison, runs=len(plan))


@dataclass(frozen=True)
class _Sides:
    """Per side ("base", "head"): the worktree, its suite file, the commit, the name given."""

    trees: Mapping[str, Path]
    sources: Mapping[str, Path]
    commits: Mapping[str, str]
    revs: Mapping[str, str]


def _runs_in_turn(
    request: AbRequest,
    interleave: Interleave,
    sides: _Sides,
    device_kind: str,
    tmp: Path,
    out: Path,
    status: Callable[[str], None],
) -> tuple[list[tuple[str, str, int]], dict[str, list[ResultSet]]]:
    """Each run its own process, the sides taking turns per case entry (or per suite)."""
    trees, sources, commits, revs = sides.trees, sides.sources, sides.commits, sides.revs
    chunks: dict[str, dict[str, Path]] = {side: {} for side in SIDES}
    for side in SIDES:
        source = sources[side]
        if interleave is Interleave.SUITE:
            chunks[side][f"suite {source.stem}"] = source
            continue
        for i, (name, text) in enumerate(split_suite(source, device_kind).items()):
            path = tmp / "chunks" / side / f"{i:03d}" / source.name
            path.parent.mkdir(parents=True)
            path.write_text(text)
            chunks[side][name] = path
    names = list(chunks["base"]) + [n for n in chunks["head"] if n not in chunks["base"]]
    plan = [(n, s, r) for n, s, r in schedule(names, request.repeats) if n in chunks[s]]
    done: dict[str, list[ResultSet]] = {side: [] for side in SIDES}
    for i, (name, side, _) in enumerate(plan, 1):
        label = f"[{i}/{len(plan)}] {side} {revs[side]} ({commits[side][:8]}) {name}"
        status(label)
        run_dir = out / "runs" / f"{i:03d}-{side}"
        argv = run_args(request, chunks[side][name], run_dir)
        done[side].append(
            run_in_worker(
                request.python, trees[side], argv, run_dir, commits[side], label, request.timeout_s
            )
        )
    return plan, done


def _lockstep_runs(
    request: AbRequest, sides: _Sides, out: Path, status: Callable[[str], None]
) -> dict[str, list[ResultSet]]:
    """repeats pairs of runs, a base and a head process at once, their rounds alternated."""
    trees, sources, commits, revs = sides.trees, sides.sources, sides.commits, sides.revs
    done: dict[str, list[ResultSet]] = {side: [] for side in SIDES}
    for pair in range(request.repeats):
        label = f"[pair {pair + 1}/{request.repeats}]"
        status(
            f"{label} base {revs['base']} ({commits['base'][:8]}) and head {revs['head']} "
            f"({commits['head'][:8]}) in lockstep"
        )
        dirs = {side: out / "runs" / f"{pair + 1:03d}-{side}" for side in SIDES}
        workers: dict[str, Worker] = {}
        try:
            for side in SIDES:
                workers[side] = Worker(
                    request.python, trees[side], dirs[side].with_suffix(".log"), f"{label} {side}"
                )
            configs = {
                side: lockstep_config(
                    _run_request(request, sources[side]).to_json(),
                    dirs[side],
                    side,
                    pair,
                    request.min_time_s,
                )
                for side in SIDES
            }
            run_pair(workers, configs, request.timeout_s, label)
        finally:
            for worker in workers.values():
                worker.close()
        for side in SIDES:
            done[side].append(check_commit(dirs[side], commits[side], f"{label} {side}"))
    return done


def _run_request(request: AbRequest, suite: Path) -> RunRequest:
    return RunRequest(
        suite=str(suite),
        backends=tuple(request.backends),
        device=request.device,
        dtypes=tuple(request.dtypes),
        modes=tuple(request.modes),
        batch=request.batch,
        samples=request.samples,
        threads=request.threads,
    )
