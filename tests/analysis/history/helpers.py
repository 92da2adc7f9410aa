"""Synthetic result directories for the history tests: a run of a commit on a machine."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from invbench.storage.results import (
    KEY_COLUMNS,
    META_FILE,
    RESULTS_FILE,
    SAMPLES_FILE,
    ResultRow,
    rows_frame,
    write_json,
)

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures" / "history"
CPU_META: dict[str, Any] = {
    "schema_version": 1,
    "host": "ci-1",
    "cpu": "Test CPU 9000",
    "cpu_count": 2,
    "torch_threads": 2,
    "torch": "2.13.0+cpu",
    "torch_cuda": None,
    "cuda_devices": [],
    "nvml": {"devices": [], "unavailable_reason": "none"},
}


def row(backend: str = "unfold", median_ms: float = 1.0, **kw: Any) -> ResultRow:
    fields: dict[str, Any] = dict(
        suite="smoke",
        case="k3-g2",
        backend=backend,
        kind="involution",
        device="cpu",
        dtype="float32",
        mode="fwd",
        batch=2,
        channels=8,
        height=12,
        width=10,
        kernel_size=3,
        stride=1,
        dilation=1,
        groups=2,
        padding=1,
        out_height=12,
        out_width=10,
        status="ok",
        n_samples=5,
        median_ms=median_ms,
        p20_ms=median_ms * 0.98,
        p80_ms=median_ms * 1.02,
    )
    fields.update(kw)
    if fields["status"] != "ok":
        fields["median_ms"] = fields["p20_ms"] = fields["p80_ms"] = None
    return ResultRow(**fields)


def write_run(
    out: Path,
    commit: str,
    medians: Mapping[str, float],
    *,
    time: str = "2026-01-01T00:00:00+00:00",
    meta: Mapping[str, Any] | None = None,
    samples: int = 5,
    extra_rows: Sequence[ResultRow] = (),
) -> Path:
    """A run directory: one ok row per backend with `samples` samples at its median."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [row(backend, ms) for backend, ms in medians.items()] + list(extra_rows)
    frame = rows_frame(rows)
    frame.to_parquet(out / RESULTS_FILE, index=False)
    ok = frame[frame["status"] == "ok"]
    sampled = ok.loc[ok.index.repeat(samples), [*KEY_COLUMNS, "median_ms"]]
    sampled = sampled.rename(columns={"median_ms": "ms"}).reset_index(drop=True)
    sampled.insert(len(KEY_COLUMNS), "sample", np.tile(np.arange(samples), len(ok)))
    sampled.to_parquet(out / SAMPLES_FILE, index=False)
    full = {
        **CPU_META,
        **(meta or {}),
        "git": {"commit": commit, "short_commit": commit[:8], "dirty": False},
        "utc_time": time,
        "run": {"suite": "smoke", "status": "complete"},
    }
    write_json(out / META_FILE, full)
    return out


def commit_name(i: int) -> str:
    return f"{i:040x}"


def machine_residuals() -> np.ndarray:
    """Log residuals of the fixture (each run median over its row median), tails and all."""
    doc = json.loads((FIXTURES / "cpu-smoke-runs.json").read_text())
    by_row: dict[tuple[str, str, str], list[float]] = {}
    for r in doc["rows"]:
        by_row.setdefault((r["case"], r["backend"], r["mode"]), []).append(np.log(r["median_ms"]))
    return np.concatenate([np.asarray(v) - np.median(v) for v in by_row.values()])


def machine_noise_sigma() -> float:
    """This machine's between-run noise: the robust sigma (MAD) of the fixture's residuals."""
    residuals = machine_residuals()
    return float(1.4826 * np.median(np.abs(residuals - np.median(residuals))))
