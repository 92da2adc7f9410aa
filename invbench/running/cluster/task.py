"""What a cluster worker runs: one shard, its rows streamed back as they are measured.

run_shard is a generator (a Ray streaming task on the cluster, a plain call in tests):
it first yields a `start` message (who the worker is: host, pid, the device's model
and UUID, its measured ceilings), then one `row` message per result row, stamped
with that host and device. The runner works in a thread and hands its rows over a
queue, so each row leaves the worker when the runner files it, not when the shard
ends; a worker that dies has sent every row it finished.

The run machinery is reached through run_plan only: a plan (restricted to the
shard's case) and a row sink.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from invbench.backends.registry import Registry
from invbench.core.spec import Level
from invbench.running.cluster.shards import Shard
from invbench.running.engine import RowSink
from invbench.running.plan import RunPlan
from invbench.storage.results import ResultRow, stamped

Message = tuple[Any, ...]  # ("start", info) | ("row", record, samples) | ("error", reason)
_CEILINGS: dict[str, dict[str, Any]] = {}  # per worker process and device


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs; pickled to it."""

    shard: Shard
    plan: RunPlan  # restricted to the shard's case
    level: Level
    registry: Registry | None = None  # None: the worker's default registry
    skip: tuple[tuple[Any, ...], ...] = ()  # row keys already measured (resume)
    extra: dict[str, Any] = field(default_factory=dict)  # recorded with the start message


class _QueueSink:
    """A RowSink handing each row to the generator that streams it back.

    add() returns once the generator has passed the row on (on Ray, with a backpressure
    of one object: once the driver took it), so a worker killed while measuring the
    next group has already delivered every row before.
    """

    def __init__(
        self, out: queue.Queue[tuple[Message, threading.Event]], stamp: dict[str, str]
    ) -> None:
        self.rows: list[ResultRow] = []
        self._out = out
        self._stamp = stamp

    def add(self, row: ResultRow, samples_ms: Sequence[float] = ()) -> None:
        row = stamped(row, self._stamp)
        self.rows.append(row)
        delivered = threading.Event()
        self._out.put((("row", asdict(row), [float(x) for x in samples_ms]), delivered))
        delivered.wait()


def run_plan(
    plan: RunPlan,
    level: Level,
    registry: Registry,
    sink: RowSink,
    copy_gbps: float | None,
    skip: Iterable[tuple[Any, ...]] = (),
) -> None:
    """Run every row of plan into sink (the one place a worker calls the runners)."""
    from invbench.running.engine import run_plan as run_engine

    run_engine(replace(plan, level=level), registry, sink, copy_gbps=copy_gbps, skip=skip)


def _ceilings(plan: RunPlan) -> dict[str, Any]:
    from invbench.measure.ceilings import measure_ceilings

    name = str(plan.device)
    if name not in _CEILINGS:
        _CEILINGS[name] = measure_ceilings(plan.device)
    return _CEILINGS[name]


def worker_info(job: ShardJob) -> dict[str, Any]:
    """Who runs the shard: host, process, Ray's worker and node ids, the device."""
    from invbench.measure.environment import device_identity

    info: dict[str, Any] = {"pid": os.getpid(), **device_identity(job.plan.device)}
    try:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            info["node_id"] = ctx.get_node_id()
            info["worker_id"] = ctx.get_worker_id()
            info["accelerator_ids"] = ctx.get_accelerator_ids().get("GPU", [])
    except ImportError:
        pass
    return info


def run_shard(job: ShardJob) -> Iterator[Message]:
    """Run one shard; yield its start message, then its rows as they come."""
    import gc

    from invbench.backends.registry import default_registry
    from invbench.measure.ceilings import copy_gbps

    plan = job.plan
    info = worker_info(job)
    ceilings = _ceilings(plan)
    yield ("start", {**info, **job.extra, "ceilings": ceilings})
    stamp = {k: info[k] for k in ("host", "device_name", "device_uuid")}
    out: queue.Queue[tuple[Message, threading.Event]] = queue.Queue()
    sink = _QueueSink(out, stamp)
    registry = job.registry or default_registry()
    done = object()

    def work() -> None:
        try:
            run_plan(plan, job.level, registry, sink, copy_gbps(ceilings), job.skip)
        except BaseException as exc:  # the runners make rows of failures; this is a bug
            out.put((("error", f"{type(exc).__name__}: {exc}"), threading.Event()))
        finally:
            out.put(((done,), threading.Event()))

    gc.freeze()  # what is imported lives on: keep the runner's collections short
    thread = threading.Thread(target=work, name=f"invbench-shard-{job.shard.label}", daemon=True)
    thread.start()
    while True:
        message, delivered = out.get()
        if message[0] is done:
            break
        yield message
        delivered.set()
    thread.join()
