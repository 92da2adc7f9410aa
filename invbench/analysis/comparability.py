"""Whether two sides measured the same thing the same way, and rows not to trust.

`not comparable`: a difference in how a number was taken (timer, cache mode, launch
hiding, calls per sample, TF32, cuDNN autotuning, level, threads, stopping policy,
allocator settings)
changes the number without
any change of the code, so no speed verdict is given. Versions of the driver, torch,
CUDA, triton and the CPU or GPU model are warned about: they are often what a
comparison is for, but a reader must know.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from invbench.core import allocator

# Row columns that say how a row's samples were taken.
ROW_SETTINGS = (
    ("level", "level"),
    ("cache_mode", "cache mode"),
    ("timer", "timer"),
    ("launch_hidden", "launch hiding"),
    ("calls_per_sample", "calls per sample"),
    ("tf32", "TF32"),
    ("cudnn_benchmark", "cuDNN autotuning"),
)

# Health warnings that forbid a change verdict outright, and those that only matter when
# the row has no replicates of its own (its run-to-run variance then does not hold them).
UNTRUSTED = ("throttled", "low clock", "shared GPU")
NOISY = ("noisy", "unconverged")


def _threads(meta: Mapping[str, Any]) -> Any:
    run = meta.get("run") or {}
    return run.get("threads", meta.get("torch_threads"))


def _policy(meta: Mapping[str, Any]) -> str:
    return json.dumps((meta.get("run") or {}).get("policy"), sort_keys=True)


# Run-wide settings: (label, getter on meta.json).
RUN_SETTINGS = (
    ("suite", lambda m: (m.get("run") or {}).get("suite")),
    ("device", lambda m: (m.get("run") or {}).get("device")),
    ("thread count", _threads),
    ("stopping policy", _policy),
    ("cache mode", lambda m: (m.get("run") or {}).get("cache_mode")),
    ("allocator", lambda m: allocator.recorded(m.get("run") or {})),
)


def run_differences(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[str]:
    """Run-wide measurement settings that differ (each: 'label: base vs head')."""
    out = []
    for label, get in RUN_SETTINGS:
        b, h = get(base), get(head)
        if b is not None and h is not None and b != h:
            out.append(f"{label} {b} (base) vs {h} (head)")
    return out


def row_differences(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[str]:
    out = []
    for column, label in ROW_SETTINGS:
        b, h = base.get(column), head.get(column)
        if b is not None and h is not None and b != h:
            out.append(f"{label} {b} (base) vs {h} (head)")
    return out


def _gpus(meta: Mapping[str, Any]) -> str:
    return ", ".join(str(d.get("name")) for d in meta.get("cuda_devices") or []) or "none"


def _drivers(meta: Mapping[str, Any]) -> str:
    devices = (meta.get("nvml") or {}).get("devices") or []
    return ", ".join(sorted({str(d.get("driver")) for d in devices})) or "unknown"


_ENV_FIELDS = (
    ("GPU", _gpus),
    ("driver", _drivers),
    ("torch", lambda m: str(m.get("torch"))),
    ("CUDA", lambda m: str(m.get("torch_cuda"))),
    ("triton", lambda m: str(m.get("triton"))),
    ("CPU", lambda m: str(m.get("cpu"))),
)


def environment_warnings(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[str]:
    """One line per environment field that differs between the two runs."""
    out = []
    for label, get in _ENV_FIELDS:
        b, h = get(base), get(head)
        if b != h:
            out.append(f"{label} differs: {b} (base) vs {h} (head)")
    return out


def row_flags(row: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(untrusted, noisy) health phrases of one result row."""
    phrases = [w.strip() for w in str(row.get("warnings") or "").split(";") if w.strip()]
    if row.get("throttled") and not any(p.startswith("throttled") for p in phrases):
        phrases.append("throttled")
    untrusted = [p for p in phrases if p.startswith(UNTRUSTED)]
    noisy = [p for p in phrases if p.startswith(NOISY)]
    return untrusted, noisy
