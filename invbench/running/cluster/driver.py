"""The driver of a cluster run: connect to Ray, submit the shards, collect their rows.

Each shard is a Ray streaming task (invbench.running.cluster.task.run_shard) asking
for one GPU (and --cpus-per-task CPUs) on a GPU run, or CPUs on a CPU run, and on a
run by GPU type for one GPU of that type (Ray's accelerator_type). Rows are written
into the lane's result directory with the ordinary ResultWriter as they arrive, so
every file on disk is complete at every moment.

A worker that dies (killed, segfault, node lost) turns the rows its shard still owed
into `crashed` rows; one that sends nothing for --timeout seconds is cancelled and
its owed rows become `timeout` rows. Ctrl-C cancels every task, keeps every row
received, marks the run interrupted, and `--resume` runs what is missing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from invbench.backends.registry import Registry
from invbench.core.spec import Level, Status
from invbench.core.suites import Suite
from invbench.running.bench import RunRequest, UsageError, plan_run, run_meta
from invbench.running.cluster.shards import (
    Shard,
    key_of,
    missing_rows,
    owed_rows,
    plan_order,
    plan_shards,
    shard_plan,
)
from invbench.running.cluster.task import ShardJob, run_shard
from invbench.running.plan import RunPlan
from invbench.storage.results import (
    META_FILE,
    ResultRow,
    ResultsError,
    ResultWriter,
    row_from_record,
    write_json,
)

RAY_HINT = "pip install 'invbench[ray]'"
POLL_S = 0.5  # how often the driver looks at the clock for silent workers


@dataclass(frozen=True)
class ClusterOptions:
    address: str = "local"  # auto, local, ray://HOST:PORT or HOST:PORT
    gpu_types: tuple[str, ...] = ()  # one full copy of the suite per type
    cpus_per_task: float = 1.0


@dataclass
class Lane:
    """One result directory: the whole suite on one kind of device."""

    gpu_type: str
    directory: Path
    suite: Suite
    plan: RunPlan
    level: Level
    registry: Registry  # for the rows owed (the workers may run their own copy)
    writer: ResultWriter
    meta: dict[str, Any]
    shards: list[Shard]

    def save_meta(self) -> None:
        write_json(self.directory / META_FILE, self.meta)


@dataclass
class _Task:
    lane: Lane
    shard: Shard
    owed: list[dict[str, Any]]
    ref: Any  # Ray's ObjectRefGenerator
    info: dict[str, Any] | None = None
    last: float | None = None  # when the worker last spoke (None: not started)
    error: str = ""
    rows: int = 0
    pids: set[int] = field(default_factory=set)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(f"--cluster needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


def connect(ray: Any, address: str) -> bool:
    """Connect to (or with `local`, start) a Ray cluster; True if this call did."""
    if ray.is_initialized():
        return False
    if address == "local":
        kwargs: dict[str, Any] = {"include_dashboard": False}
    elif address == "auto" or address.startswith("ray://") or ":" in address:
        kwargs = {"address": address}
    else:
        raise UsageError(
            f"--cluster must be auto, local, ray://HOST:PORT or HOST:PORT, got {address!r}"
        )
    try:
        ray.init(**kwargs, log_to_driver=False)
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise UsageError(f"--cluster {address}: cannot connect to Ray: {text}") from None
    return True


def _device_kind(ray: Any, request: RunRequest, options: ClusterOptions) -> str:
    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0)
    kind = request.device
    if kind == "auto":
        kind = "cuda" if gpus else "cpu"
    if kind not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {kind!r}")
    if kind == "cuda" and not gpus:
        raise UsageError("--device cuda: the Ray cluster has no GPUs")
    if options.gpu_types:
        if kind != "cuda":
            raise UsageError("--gpu-type runs on GPUs; this run is on the CPU")
        have = sorted(k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:"))
        for name in options.gpu_types:
            if name not in have:
                raise UsageError(
                    f"--gpu-type {name}: the Ray cluster has no such GPUs "
                    f"(it has: {', '.join(have) or 'no typed GPUs'})"
                )
        if len(set(options.gpu_types)) != len(options.gpu_types):
            raise UsageError("--gpu-type: a type is named twice")
    return kind


def _new_lanes(
    ray: Any,
    request: RunRequest,
    registry: Registry,
    out_dir: Path,
    options: ClusterOptions,
) -> list[Lane]:
    kind = _device_kind(ray, request, options)
    request = replace(request, device=kind)
    suite, plan = plan_run(request, registry, device=torch.device(kind))
    if plan.isolate:
        raise UsageError("--isolate and --cluster: each shard already runs in its own worker")
    lanes = []
    for gpu_type in options.gpu_types or ("",):
        directory = out_dir / gpu_type if gpu_type else out_dir
        meta = run_meta(suite, plan, replace(request, out=directory))
        meta["cluster"] = {
            "address": options.address,
            "gpu_type": gpu_type or None,
            "cpus_per_task": options.cpus_per_task,
            "shards": {},
        }
        lane = Lane(
            gpu_type,
            directory,
            suite,
            plan,
            suite.level,
            registry,
            ResultWriter(directory),
            meta,
            [],
        )
        lane.shards = plan_shards(plan, gpu_type)
        lane.save_meta()
        lanes.append(lane)
    return lanes


def _lane_dirs(directory: Path) -> list[Path]:
    if (directory / META_FILE).exists():
        return [directory]
    return sorted(p.parent for p in directory.glob(f"*/{META_FILE}"))


def is_cluster_run(directory: Path) -> bool:
    """Whether directory holds a cluster run (or, one level down, its lanes by GPU type)."""
    for lane_dir in _lane_dirs(Path(directory)):
        try:
            meta = json.loads((lane_dir / META_FILE).read_text())
        except (OSError, ValueError):
            return False
        if "cluster" in meta:
            return True
    return False


def _resumed_lanes(directory: Path, registry: Registry) -> tuple[list[Lane], ClusterOptions]:
    lanes = []
    options = ClusterOptions()
    for lane_dir in _lane_dirs(directory):
        meta = json.loads((lane_dir / META_FILE).read_text())
        cluster = meta.get("cluster")
        request_data = (meta.get("run") or {}).get("request")
        if not cluster or not request_data:
            raise UsageError(f"--resume {lane_dir}: not a cluster run")
        request = RunRequest.from_json(request_data)
        suite, plan = plan_run(request, registry, device=torch.device(request.device))
        try:
            writer = ResultWriter.resume(lane_dir)
        except ResultsError as exc:
            raise UsageError(f"--resume: {exc}") from None
        gpu_type = cluster.get("gpu_type") or ""
        options = ClusterOptions(
            address=cluster.get("address", "auto"),
            gpu_types=(*options.gpu_types, gpu_type) if gpu_type else options.gpu_types,
            cpus_per_task=float(cluster.get("cpus_per_task", 1.0)),
        )
        meta["run"].setdefault("resumed", []).append(
            datetime.now(UTC).isoformat(timespec="seconds")
        )
        meta["run"]["status"] = "running"
        lane = Lane(gpu_type, lane_dir, suite, plan, suite.level, registry, writer, meta, [])
        lane.shards = plan_shards(plan, gpu_type)
        lane.save_meta()
        lanes.append(lane)
    if not lanes:
        raise UsageError(f"--resume {directory}: no {META_FILE}, not an invbench run directory")
    return lanes, options


def _submit(
    ray: Any, lanes: Sequence[Lane], options: ClusterOptions, worker_registry: Registry | None
) -> list[_Task]:
    tasks = []
    for lane in lanes:
        have = {row.key() for row in lane.writer.rows}
        for shard in lane.shards:
            owed = owed_rows(lane.plan, lane.registry, shard)
            if all(key_of(b) in have for b in owed):
                continue
            opts: dict[str, Any] = {
                "num_returns": "streaming",
                "_generator_backpressure_num_objects": 1,  # a row is sent before the next
                "max_retries": 0,
                "num_cpus": options.cpus_per_task,
            }
            if lane.plan.device.type == "cuda":
                opts["num_gpus"] = 1
                if shard.lane:
                    opts["accelerator_type"] = shard.lane
            job = ShardJob(
                shard=shard,
                plan=shard_plan(lane.plan, shard),
                level=lane.level,
                registry=worker_registry,
                skip=tuple(key_of(b) for b in owed if key_of(b) in have),
            )
            ref = ray.remote(run_shard).options(**opts).remote(job)
            lane.meta["cluster"]["shards"][shard.label] = {"case": shard.case, "status": "queued"}
            tasks.append(_Task(lane, shard, owed, ref))
        lane.save_meta()
    return tasks


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _who(task: _Task) -> str:
    if task.info is None:
        return "its worker"
    return f"worker pid {task.info.get('pid')} on {task.info.get('host')}"


class _Collector:
    def __init__(
        self,
        ray: Any,
        tasks: list[_Task],
        timeout_s: float,
        on_row: Callable[[ResultRow], None] | None,
        on_status: Callable[[str], None] | None,
    ) -> None:
        self.ray = ray
        self.live = {id(t.ref): t for t in tasks}
        self.timeout_s = timeout_s
        self.on_row = on_row or (lambda row: None)
        self.on_status = on_status or (lambda text: None)

    def run(self) -> None:
        try:
            while self.live:
                refs = [t.ref for t in self.live.values()]
                ready, _ = self.ray.wait(refs, num_returns=1, timeout=POLL_S)
                for ref in ready:
                    self._next(self.live[id(ref)])
                self._check_silent(time.monotonic())
        except KeyboardInterrupt:
            for task in self.live.values():
                self.ray.cancel(task.ref, force=True)
                self._shard_meta(task, status="cancelled")
            raise

    def _shard_meta(self, task: _Task, **values: Any) -> None:
        entry = task.lane.meta["cluster"]["shards"].setdefault(task.shard.label, {})
        entry.update(values)
        task.lane.save_meta()

    def _next(self, task: _Task) -> None:
        try:
            message = self.ray.get(next(task.ref))
        except StopIteration:
            if task.error:
                self._finish(task, Status.ERROR, f"shard failed in the worker: {task.error}")
            else:
                self._finish(task, Status.ERROR, "the worker ended without these rows")
            return
        except Exception as exc:
            reason = f"{_who(task)} died: {_one_line(exc)}"
            self._finish(task, Status.CRASHED, reason)
            return
        task.last = time.monotonic()
        kind = message[0]
        if kind == "start":
            task.info = message[1]
            task.pids.add(int(task.info["pid"]))
            lane = task.lane
            lane.meta.setdefault("ceilings", task.info.get("ceilings"))
            self._shard_meta(task, status="running", worker=task.info)
            self.on_status(f"{task.shard.label}: running on {task.info.get('host')}")
        elif kind == "row":
            row = row_from_record(message[1])
            task.lane.writer.add(row, message[2])
            task.rows += 1
            self.on_row(row)
        elif kind == "error":
            task.error = str(message[1])

    def _finish(self, task: _Task, status: Status, reason: str) -> None:
        """The shard is over: its owed rows not yet written become rows with status."""
        del self.live[id(task.ref)]
        lane = task.lane
        missing = missing_rows(task.owed, lane.writer.rows, status.value, reason)
        for row in missing:
            lane.writer.add(row)
            self.on_row(row)
        outcome = "complete" if not missing else status.value
        self._shard_meta(
            task,
            status=outcome,
            rows=task.rows,
            filled=len(missing),
            reason=reason if missing else "",
            worker_pids=sorted(task.pids),
        )

    def _check_silent(self, now: float) -> None:
        for task in list(self.live.values()):
            if task.last is not None and now - task.last > self.timeout_s:
                self.ray.cancel(task.ref, force=True)
                reason = f"no row from {_who(task)} within {self.timeout_s:g} s; task cancelled"
                self._finish(task, Status.TIMEOUT, reason)


def _finalize(lanes: Sequence[Lane], started: datetime, status: str) -> None:
    spent = (datetime.now(UTC) - started).total_seconds()
    for lane in lanes:
        if status == "complete":
            lane.writer.rows.sort(key=plan_order(lane.plan))
            lane.writer.flush()
        run = lane.meta["run"]
        run["status"] = status
        run["duration_s"] = round(run.get("duration_s", 0) + spent, 1)
        run["rows"] = len(lane.writer.rows)
        lane.save_meta()


def _execute(
    ray: Any,
    lanes: list[Lane],
    options: ClusterOptions,
    timeout_s: float,
    worker_registry: Registry | None,
    on_row: Callable[[ResultRow], None] | None,
    on_status: Callable[[str], None] | None,
) -> list[Lane]:
    started = datetime.now(UTC)
    status = "interrupted"
    try:
        tasks = _submit(ray, lanes, options, worker_registry)
        if on_status:
            on_status(f"{len(tasks)} shards submitted to Ray")
        _Collector(ray, tasks, timeout_s, on_row, on_status).run()
        status = "complete"
    finally:
        _finalize(lanes, started, status)
    return lanes


def run_cluster(
    request: RunRequest,
    registry: Registry,
    out_dir: Path,
    options: ClusterOptions,
    *,
    worker_registry: Registry | None = None,
    on_row: Callable[[ResultRow], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> list[Lane]:
    """Run the request's suite on a Ray cluster; one lane (result directory) per GPU type.

    worker_registry: the backends the workers run (pickled to them); None: each
    worker's own default registry, which must name the same backends as registry.
    """
    ray = import_ray()
    owned = connect(ray, options.address)
    try:
        lanes = _new_lanes(ray, request, registry, out_dir, options)
        return _execute(ray, lanes, options, request.timeout_s, worker_registry, on_row, on_status)
    finally:
        if owned:
            ray.shutdown()


def resume_cluster(
    directory: Path,
    registry: Registry,
    address: str | None = None,
    *,
    worker_registry: Registry | None = None,
    on_row: Callable[[ResultRow], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> list[Lane]:
    """Finish a cluster run: the shards with rows missing run again, for those rows only."""
    lanes, options = _resumed_lanes(Path(directory), registry)
    if address is not None:
        options = replace(options, address=address)
    ray = import_ray()
    owned = connect(ray, options.address)
    try:
        timeout_s = lanes[0].plan.timeout_s
        return _execute(ray, lanes, options, timeout_s, worker_registry, on_row, on_status)
    finally:
        if owned:
            ray.shutdown()
