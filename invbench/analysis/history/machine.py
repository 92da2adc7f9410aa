"""Which machine a run was measured on: the identity that keys every history series.

Two runs belong to one series only if they ran on the same kind of machine: the
same GPU model and driver (GPU rows) or CPU model, core and thread count (CPU
rows), and the same torch build. A change of any of these starts a new series
instead of showing up as a change point. The host name is not part of it, so
identical CI runners share their series.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Machine:
    id: str  # 12 hex digits of the fields' hash
    label: str  # for people: "cpu AMD EPYC x2, torch 2.13.0+cpu"
    fields: Mapping[str, Any]


def _gpu_names(meta: Mapping[str, Any]) -> list[str]:
    return sorted(str(d.get("name")) for d in meta.get("cuda_devices") or [] if d.get("name"))


def _drivers(meta: Mapping[str, Any]) -> list[str]:
    devices = (meta.get("nvml") or {}).get("devices") or []
    return sorted({str(d.get("driver")) for d in devices if d.get("driver")})


def machine_fields(meta: Mapping[str, Any], device: str) -> dict[str, Any]:
    """The fields that make a machine identity for rows of one device kind ("cpu", "cuda")."""
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    fields: dict[str, Any] = {"device": kind, "torch": meta.get("torch")}
    if kind == "cuda":
        fields |= {
            "gpus": _gpu_names(meta),
            "driver": _drivers(meta),
            "torch_cuda": meta.get("torch_cuda"),
        }
    else:
        fields |= {
            "cpu": meta.get("cpu"),
            "cpu_count": meta.get("cpu_count"),
            "torch_threads": meta.get("torch_threads"),
        }
    return fields


def machine_label(fields: Mapping[str, Any]) -> str:
    if fields.get("device") == "cuda":
        gpus = ", ".join(fields.get("gpus") or []) or "unknown GPU"
        driver = "/".join(fields.get("driver") or []) or "driver ?"
        return f"{gpus}, driver {driver}, torch {fields.get('torch')}"
    threads = fields.get("torch_threads")
    return (
        f"{fields.get('cpu') or 'unknown CPU'} x{fields.get('cpu_count')}"
        f"{f' ({threads} threads)' if threads else ''}, torch {fields.get('torch')}"
    )


def machine_of(meta: Mapping[str, Any], device: str) -> Machine:
    fields = machine_fields(meta, device)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
    return Machine(id=digest[:12], label=machine_label(fields), fields=fields)
