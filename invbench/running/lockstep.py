"""The worker side of a lockstep A/B run: one process's run, timed a round at a time.

`invbench ab` (invbench.running.lockstep_driver) starts a worker process for each
revision and has both prepare the same group (case x dtype x mode: build, check, warm
up every backend); it then asks them in turn for one interleaved round of a backend
(about 10 ms of samples), base then head, head then base, ... On a shared machine a
process's speed changes with its neighbours for seconds at a time; two processes
whose rounds alternate every few milliseconds see the same states, so the ratio of
their medians is free of them, where two runs one after the other are not.

Messages are JSON lines, one reply each:
  {"op": "prepare", "group": i}     -> {"arms": [backend, ...]}  (rows for the others)
  {"op": "round", "backend": b, "rnd": r} -> {"stop": reason or null, "error": bool}
  {"op": "finish"}                   -> {"rows": n}  (the group's rows written)
  {"op": "close"}                    -> {"done": true}  (meta.json complete)
The first reply, before any message, lists the groups: {"groups": [[case, dtype, mode]]}.
Each run directory is an ordinary one (results, samples, meta.json with run.lockstep).

A row converges on its own samples long before the two processes have seen the same
mix of the machine's states (a row of the smoke suite converges in a few rounds, and a
state lasts from tens of milliseconds to seconds), so in lockstep every row is timed for
at least config["min_time_s"] on each side (a convergence before that does not stop it),
and the time cap is raised to that if it is lower. With config["pin"] both sides are
pinned to the same CPUs (see _pinned).
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from invbench.backends.registry import default_registry
from invbench.core.stats import StopReason
from invbench.measure.environment import device_identity
from invbench.measure.precision import PrecisionPolicy, precision_policy
from invbench.running.arms import Arm
from invbench.running.bench import RunRequest, plan_run, run_meta, telemetry_meta
from invbench.running.engine import Engine, apply_host_settings
from invbench.running.plan import RunPlan
from invbench.storage.results import META_FILE, ResultWriter, write_json

Message = dict[str, Any]
_EARLY = (StopReason.CONVERGED, StopReason.RESOLUTION)


def _pinned(plan: RunPlan, pin: bool) -> tuple[int, ...]:
    """The CPUs both sides share: the last `threads` usable ones (the plan's own if set).

    Only one side times at a time, so the two can share CPUs for free; sharing the same
    ones keeps a CPU that is slower than the other (a busy hyperthread sibling, another
    guest's vCPU) from making one side look slower for a whole pair.
    """
    if plan.affinity or not pin:
        return plan.affinity
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cpus:
        return ()
    return tuple(cpus[-(plan.threads or len(cpus)) :])


def serve(config: Message, inbox: Iterable[Message], reply: Callable[[Message], None]) -> int:
    """Run config's request into config["out"] as the messages ask; returns an exit code."""
    request = RunRequest.from_json(config["request"])
    out = Path(config["out"])
    registry = default_registry()
    suite, plan = plan_run(request, registry)
    min_time_s = float(config.get("min_time_s") or 0.0)
    policy = replace(plan.policy, max_time_s=max(plan.policy.max_time_s, min_time_s))
    plan = replace(plan, policy=policy, affinity=_pinned(plan, bool(config.get("pin"))))
    plan = replace(plan, threads=apply_host_settings(plan))
    writer = ResultWriter(out, stamp=device_identity(plan.device))
    meta = run_meta(suite, plan, request)
    meta["telemetry"] = telemetry_meta(plan)
    meta["run"]["lockstep"] = {
        "side": config.get("side"),
        "pair": config.get("pair"),
        "min_time_s": min_time_s,
    }
    write_json(out / META_FILE, meta)
    engine = Engine(plan, registry, writer)
    groups = list(plan.groups())
    gc.freeze()  # what is imported lives until exit: keep it out of every collection
    reply({"groups": [[c.name, d.value, m.value] for c, d, m in groups]})
    arms: dict[str, Arm] = {}
    stack = contextlib.ExitStack()
    engine.sampler.start()
    try:
        for message in inbox:
            op = message.get("op")
            if op == "prepare":
                case, dtype, mode = groups[int(message["group"])]
                stack.enter_context(precision_policy(PrecisionPolicy(tf32=plan.tf32)))
                prepared = engine.prepare_group(
                    case, dtype, mode, engine.pending(case, dtype, mode)
                )
                arms = {a.backend.name: a for a in prepared}
                engine.begin_timing()
                reply({"arms": list(arms)})
            elif op == "round":
                arm = arms[str(message["backend"])]
                engine.round_of(arm, int(message["rnd"]))
                stop = arm.stop
                if stop in _EARLY and arm.elapsed_s < min_time_s:
                    stop = None  # converged, but not yet over enough of the machine's states
                reply({"stop": stop.value if stop else None, "error": arm.error is not None})
            elif op == "finish":
                engine.end_timing()
                with writer.deferred():
                    engine.finish_group(list(arms.values()))
                arms = {}
                stack.close()
                engine.release()
                reply({"rows": len(writer.rows)})
            elif op == "close":
                meta["run"]["status"] = "complete"
                meta["run"]["rows"] = len(writer.rows)
                write_json(out / META_FILE, meta)
                reply({"done": True})
                return 0
            else:
                reply({"error": f"unknown message {message!r}"})
        return 1  # the driver went away before closing the run
    finally:
        stack.close()
        engine.sampler.stop()
