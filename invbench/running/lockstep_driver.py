"""The driving side of a lockstep A/B run: two worker processes, their rounds alternated.

For each pair of runs, one worker process per side (each importing its own revision,
invbench.running.revisions.Worker) serves its run (invbench.running.lockstep). For
every group both prepare, then each backend present on both sides is timed a round
at a time, alternating the sides (base then head, head then base, ...) and the
backends (A B C, C B A, ...), until both sides' stopping rules have said stop; then
both write the group's rows. While one process times, the other waits on its pipe;
what is not timed (start-up, building and checking a group, writing its rows) both
processes do at once.
A backend present on one side only is timed on that side alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invbench.core.stats import StopReason
from invbench.running.revisions import RevisionError, Worker

SIDES = ("base", "head")
# stopping reasons that end a backend for both sides at once: a cap, not convergence
_FINAL = {StopReason.TIME_CAP.value, StopReason.FIXED.value}


class LockstepUnsupported(RevisionError):
    """A revision's invbench has no lockstep runs; ab falls back to runs in turn."""


@dataclass
class _Side:
    name: str
    worker: Worker
    groups: list[tuple[str, ...]]


def run_pair(
    workers: Mapping[str, Worker],
    configs: Mapping[str, dict[str, Any]],
    timeout_s: float,
    label: str,
) -> None:
    """One lockstep pair of runs: every group of both sides, rounds alternated."""
    for name in SIDES:
        workers[name].wait_ready(timeout_s)
    answers = _all(
        {name: (workers[name], {"lockstep": configs[name]}) for name in SIDES}, timeout_s, label
    )
    sides: dict[str, _Side] = {}
    for name, answer in answers.items():
        if "unsupported" in answer:
            raise LockstepUnsupported(f"{name}: {answer['unsupported']}")
        sides[name] = _Side(name, workers[name], [tuple(g) for g in answer["groups"]])
    order = list(dict.fromkeys([*sides["base"].groups, *sides["head"].groups]))
    for group in order:
        _run_group(sides, group, timeout_s, f"{label} {' '.join(group)}")
    _all({s.name: (s.worker, {"op": "close"}) for s in sides.values()}, timeout_s, label)


def _all(
    messages: Mapping[str, tuple[Worker, dict[str, Any]]], timeout_s: float, label: str
) -> dict[str, dict[str, Any]]:
    """One message to each worker, all sent before any reply is read: they work at once."""
    for name, (worker, message) in messages.items():
        worker.send(message, f"{label} {name}")
    return {
        name: worker.receive(timeout_s, f"{label} {name}") for name, (worker, _) in messages.items()
    }


def _run_group(
    sides: dict[str, _Side], group: tuple[str, ...], timeout_s: float, label: str
) -> None:
    present = [s for s in sides.values() if group in s.groups]
    prepared = _all(
        {s.name: (s.worker, {"op": "prepare", "group": s.groups.index(group)}) for s in present},
        timeout_s,
        label,
    )
    arms = {name: list(answer["arms"]) for name, answer in prepared.items()}
    backends = list(dict.fromkeys(b for side in present for b in arms[side.name]))
    # per backend: the sides still timing it, and whether each has said stop
    running = {b: {s.name: False for s in present if b in arms[s.name]} for b in backends}
    rnd = 0
    while running:
        names = list(running) if rnd % 2 == 0 else list(running)[::-1]
        for i, backend in enumerate(names):
            stops = running[backend]
            turn = [s for s in SIDES if s in stops]
            if (rnd + i) % 2 == 1:
                turn.reverse()
            final = False
            for name in turn:
                answer = sides[name].worker.ask(
                    {"op": "round", "backend": backend, "rnd": rnd}, timeout_s, label
                )
                stopped = answer.get("stop")
                stops[name] = stopped is not None or bool(answer.get("error"))
                final |= stopped in _FINAL or bool(answer.get("error"))
            if final or all(stops.values()):
                del running[backend]
        rnd += 1
    _all({s.name: (s.worker, {"op": "finish"}) for s in present}, timeout_s, label)


def lockstep_config(
    request_json: dict[str, Any], out: Path, side: str, pair: int, min_time_s: float
) -> dict[str, Any]:
    return {
        "request": request_json,
        "out": str(out),
        "side": side,
        "pair": pair,
        "min_time_s": min_time_s,
        "pin": True,
    }
