"""Fault isolation: each backend x case in a worker process with a time limit.

The worker runs the ordinary engine on one backend of one (case, dtype, mode), at
whatever level the plan is, and sends its row and samples back through a pipe. When
the worker dies instead (a segfault, an abort, the OS killing it) the row says
`crashed` with the signal or exit status; when it does not answer within the limit it
is killed and the row says `timeout`. Rows already written are never touched, and the run goes on.

Workers come from a forkserver that imported torch once (fast, and safe with CUDA,
since the server itself never touches the GPU), or are spawned where forkserver is
unavailable. Backends are pickled into the worker, so they must be importable.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import signal
import traceback
from dataclasses import asdict, replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from invbench.core.spec import Case, Dtype, Mode, Status
from invbench.storage.results import ResultRow, row_from_record

if TYPE_CHECKING:
    from invbench.backends.registry import Registry
    from invbench.running.engine import Engine
    from invbench.running.plan import RunPlan

_PRELOAD = [
    "torch",
    "invbench.running.engine",
    "invbench.running.levels.op",
    "invbench.running.levels.layer",
    "invbench.running.levels.model",
]
_context: Any = None


def context() -> Any:
    """The multiprocessing context workers start from (created once per process)."""
    global _context
    if _context is None:
        if "forkserver" in mp.get_all_start_methods():
            _context = mp.get_context("forkserver")
            _context.set_forkserver_preload(_PRELOAD)
        else:
            _context = mp.get_context("spawn")
    return _context


class _MemorySink:
    """The worker's writer: keeps rows and samples to send back."""

    def __init__(self) -> None:
        self.rows: list[ResultRow] = []
        self.samples: list[list[float]] = []

    def add(self, row: ResultRow, samples_ms: Any = ()) -> None:
        self.rows.append(row)
        self.samples.append([float(x) for x in samples_ms])


def _worker(
    conn: Connection,
    plan: RunPlan,
    registry: Registry,
    group: tuple[Case, Dtype, Mode],
    backend: str,
    copy_gbps: float | None,
    parent_pid: int,
) -> None:
    from invbench.backends.registry import default_registry
    from invbench.running.engine import Engine, default_sampler

    known = default_registry()
    for b in registry:  # layers and networks look their aggregation backend up by name
        if b.name not in known:
            known.register(b)
    gc.freeze()  # what the forkserver imported is never garbage: keep collections short
    sink = _MemorySink()
    engine = Engine(
        replace(plan, isolate=False),
        registry,
        sink,
        sampler=default_sampler(plan.device, ignore_pids=(parent_pid,)),
        copy_gbps=copy_gbps,
    )
    engine.sampler.start()
    try:
        engine.run_group(*group, [registry.get(backend)])
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        engine.sampler.stop()
    conn.send([(asdict(r), s) for r, s in zip(sink.rows, sink.samples, strict=True)])
    conn.close()


def describe_exit(code: int | None) -> str:
    """Why a worker ended, in words: a signal's name or an exit status."""
    if code is None:
        return "worker did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of host memory?)" if -code == signal.SIGKILL else ""
        return f"worker killed by {name}{hint}"
    return f"worker exited with status {code} without a result"


def run_one(
    engine: Engine, group: tuple[Case, Dtype, Mode], backend: str
) -> tuple[Status, str] | list[tuple[ResultRow, list[float]]]:
    """One backend of one group in a worker: its rows, or the fault and its reason."""
    ctx = context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_worker,
        args=(send, engine.plan, engine.registry, group, backend, engine.copy_gbps, os.getpid()),
        name=f"invbench-{backend}",
        daemon=True,
    )
    proc.start()
    send.close()
    timeout = engine.plan.timeout_s
    try:
        if not receive.poll(timeout):
            proc.kill()
            proc.join()
            return Status.TIMEOUT, f"no result within {timeout:g} s; worker killed"
        try:
            payload = receive.recv()
        except EOFError:
            proc.join(30)
            return Status.CRASHED, describe_exit(proc.exitcode)
    finally:
        receive.close()
    proc.join(30)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return [(row_from_record(record), samples) for record, samples in payload]


def run_isolated(engine: Engine) -> None:
    """The engine's plan, each pending backend x group in its own worker."""
    for case, dtype, mode in engine.plan.groups():
        label = f"{case.name} {dtype.value} {mode.value}"
        for backend in engine.pending(case, dtype, mode):
            engine.on_status(f"{label}: {backend.name} (isolated worker)")
            outcome = run_one(engine, (case, dtype, mode), backend.name)
            if isinstance(outcome, tuple):
                base = engine.base(case, backend, dtype, mode)
                engine.emit(
                    ResultRow(
                        **base,
                        status=outcome[0].value,
                        reason=outcome[1],
                        telemetry="unavailable: the worker gave no result",
                    )
                )
                continue
            for row, samples in outcome:
                engine.emit(row, samples)
