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

import sys
import tempfile
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from invbench.analysis.compare import ComparePolicy, Comparison, compare_dirs
from invbench.core.choices import Interleave
from invbench.core.spec import Dtype, Mode
from invbench.running.revisions import (
    RevisionError,
    repo_root,
    resolve_revision,
    run_argv,
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
    repeats: int = 3
    interleave: Interleave = Interleave.CASE
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
    """argv of `invbench run` for one chunk."""
    return run_argv(
        suite_path,
        out,
        device=request.device,
        backends=request.backends,
        dtypes=request.dtypes,
        modes=request.modes,
        batch=request.batch,
        samples=request.samples,
    )


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
        chunks: dict[str, dict[str, Path]] = {side: {} for side in SIDES}
        device_kind = request.device
        if device_kind == "auto":
            import torch

            device_kind = "cuda" if torch.cuda.is_available() else "cpu"
        for side in SIDES:
            try:
                source = suite_file(trees[side], request.suite)
            except AbError as exc:
                raise AbError(f"{side} revision {revs[side]!r}: {exc}") from None
            if request.interleave is Interleave.SUITE:
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
        (out / "runs").mkdir(parents=True, exist_ok=True)
        for i, (name, side, _) in enumerate(plan, 1):
            label = f"[{i}/{len(plan)}] {side} {revs[side]} ({commits[side][:8]}) {name}"
            status(label)
            run_dir = out / "runs" / f"{i:03d}-{side}"
            argv = run_args(request, chunks[side][name], run_dir)
            done[side].append(
                run_in_worker(
                    request.python,
                    trees[side],
                    argv,
                    run_dir,
                    commits[side],
                    label,
                    request.timeout_s,
                )
            )
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
            },
        )
    comparison = compare_dirs(dirs["base"], dirs["head"], request.policy)
    return AbResult(dirs["base"], dirs["head"], comparison, runs=len(plan))
