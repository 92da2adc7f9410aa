"""Caption text: what a figure was measured on, from the rows and meta.json."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from invbench.measure.ceiling_record import gpu_name
from invbench.render.plots.data import health_warnings
from invbench.storage.results import ResultSet, device_names


def _distinct(values: pd.Series) -> str:
    """The distinct values in order of appearance; empty ones (rows that did not run) left out."""
    texts = values.dropna().astype(str).tolist()
    return ", ".join(v for v in dict.fromkeys(texts) if v)


def short_cpu(name: str) -> str:
    name = re.sub(r"\((R|TM|tm|r)\)", "", name)
    name = re.sub(r"\s+CPU\s*@.*$", "", name)
    name = re.sub(r"\s+\d+-Core Processor$", "", name)
    return re.sub(r"\s+", " ", name).strip()


def device_text(meta: Mapping[str, Any], rows: pd.DataFrame) -> str:
    devices = set(rows["device"].astype(str)) if not rows.empty else set()
    names = device_names(rows)
    if len(names) > 1:
        return " vs ".join(names)
    if any(d.startswith("cuda") for d in devices):
        return gpu_name(meta) or (names[0] if names else "CUDA GPU (name not recorded)")
    cpu = meta.get("cpu")
    if cpu:
        threads = meta.get("torch_threads")
        return f"CPU {short_cpu(str(cpu))}" + (f", {threads} threads" if threads else "")
    return ", ".join(sorted(devices)) or "unknown device"


def commit_text(meta: Mapping[str, Any]) -> str:
    git = meta.get("git") or {}
    short = git.get("short_commit") or "unknown"
    return f"commit {short}" + (" (dirty)" if git.get("dirty") else "")


def caption_line(rs: ResultSet, rows: pd.DataFrame | None = None) -> str:
    """One line: device, dtype, mode, batch, commit."""
    rows = rs.rows if rows is None else rows
    parts = [device_text(rs.meta, rows)]
    if not rows.empty:
        parts.append(_distinct(rows["dtype"]))
        parts.append(_distinct(rows["mode"]))
        parts.append("batch " + _distinct(rows["batch"]))
    parts.append(commit_text(rs.meta))
    return " · ".join(parts)


def caption_details(rs: ResultSet, rows: pd.DataFrame | None = None) -> list[str]:
    """Longer lines for the sidecar caption file."""
    rows = rs.rows if rows is None else rows
    meta = rs.meta
    run = meta.get("run") or {}
    dirs = meta.get("combined_from") or [rs.directory]
    out = ["results: " + ", ".join(Path(d).name for d in dirs)]
    if run.get("suite"):
        out.append(f"suite: {run['suite']}")
    if not rows.empty:
        if "cache_mode" in rows and rows["cache_mode"].astype(str).str.len().gt(0).any():
            out.append(f"cache mode: {_distinct(rows['cache_mode'])}")
        if "timer" in rows and rows["timer"].astype(str).str.len().gt(0).any():
            out.append(f"timer: {_distinct(rows['timer'])}")
        n = rows.loc[rows["status"] == "ok", "n_samples"].dropna()
        if not n.empty:
            out.append(f"samples per row: {int(n.min())} to {int(n.max())}")
    versions = [f"torch {meta['torch']}" if meta.get("torch") else ""]
    if meta.get("torch_cuda"):
        versions.append(f"CUDA {meta['torch_cuda']}")
    if meta.get("utc_time"):
        versions.append(f"measured {meta['utc_time']}")
    out.append(", ".join(v for v in versions if v))
    for backend, group in rows.groupby("backend", sort=False):
        if not (group["status"] == "ok").any():
            first = group.iloc[0]
            reason = str(first.get("reason") or "").strip().splitlines()
            why = f"{first['status']}" + (f": {reason[0][:100]}" if reason else "")
            out.append(f"not shown: {backend}, no row ran ({why})")
    flagged = health_warnings(rs)
    if flagged:
        out.append(f"{len(flagged)} rows carry health warnings (invbench report lists them).")
    return [line for line in out if line]
