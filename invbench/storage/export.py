"""A result directory as pytest-benchmark JSON, for tools that already read that format.

Each ok row becomes one benchmark whose `stats` are computed from the raw samples,
in seconds, with pytest-benchmark's definitions (quartiles by its Wikipedia methods
2 and 3, Tukey fences at 1.5 IQR, sample standard deviation). Rows that are not ok
are left out, as pytest-benchmark leaves out benchmarks that errored. The group is
suite/case/dtype/mode so that backends of one case are compared with each other.
"""

from __future__ import annotations

import json
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from invbench.core.spec import Status
from invbench.storage.results import KEY_COLUMNS, ResultsError, ResultSet, load_results

# The pytest-benchmark JSON layout this module writes (the `version` field).
PYTEST_BENCHMARK_FORMAT = "5.1.0"


class ExportError(ValueError):
    pass


def _q1(data: Sequence[float]) -> float:
    n = len(data)
    if n == 1:
        return data[0]
    if n % 2:
        k, r = n // 4, n % 4
        if r == 1:
            return 0.25 * data[k - 1] + 0.75 * data[k]
        return 0.75 * data[k] + 0.25 * data[k + 1]
    return statistics.median(data[: n // 2])


def _q3(data: Sequence[float]) -> float:
    n = len(data)
    if n == 1:
        return data[0]
    if n % 2:
        k, r = n // 4, n % 4
        if r == 1:
            return 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
        return 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]
    return statistics.median(data[n // 2 :])


def pytest_benchmark_stats(samples_s: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's `stats` block of raw per-call durations in seconds."""
    data = [float(x) for x in samples_s]
    if not data:
        raise ValueError("no samples")
    s = sorted(data)
    n = len(s)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if n > 1 else 0.0
    q1, q3 = _q1(s), _q3(s)
    iqr = q3 - q1
    lo_fence, hi_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_out = sum(1 for v in data if v < lo_fence or v > hi_fence)
    std_out = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    total = sum(data)
    return {
        "min": s[0],
        "max": s[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": n,
        "median": statistics.median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_out,
        "stddev_outliers": std_out,
        "outliers": f"{std_out};{iqr_out}",
        "ld15iqr": s[0] if n == 1 else s[bisect_left(s, lo_fence)],
        "hd15iqr": s[0] if n == 1 else s[bisect_right(s, hi_fence) - 1],
        "ops": n / total if total else 0,
        "total": total,
        "data": data,
        "iterations": 1,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def machine_info(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "node": meta.get("host", ""),
        "processor": meta.get("cpu", ""),
        "machine": str(meta.get("platform", "")),
        "python_implementation": "CPython",
        "python_version": meta.get("python", ""),
        "system": str(meta.get("platform", "")).split("-")[0],
        "release": "",
        "cpu": {"brand_raw": meta.get("cpu", ""), "count": meta.get("cpu_count")},
        "invbench": {
            k: meta.get(k)
            for k in ("invbench_version", "torch", "torch_cuda", "cudnn", "triton", "cuda_devices")
        }
        | {"nvml_devices": (meta.get("nvml") or {}).get("devices", [])},
    }


def commit_info(meta: Mapping[str, Any]) -> dict[str, Any]:
    git = meta.get("git") or {}
    ab = meta.get("ab") or {}
    return {
        "id": ab.get("commit") or git.get("commit") or "unversioned",
        "time": None,
        "author_time": None,
        "dirty": bool(git.get("dirty")),
        "project": "invbench",
        "branch": ab.get("rev") or "(unknown)",
    }


def pytest_benchmark_json(results: ResultSet) -> tuple[dict[str, Any], int]:
    """The JSON document, and how many rows were left out because they were not ok."""
    meta = results.meta
    run = meta.get("run") or {}
    policy = run.get("policy") or {}
    samples: dict[tuple[Any, ...], list[float]] = {}
    if not results.samples.empty:
        for key, group in results.samples.groupby(list(KEY_COLUMNS), sort=False, dropna=False):
            samples[tuple(_plain(k) for k in key)] = (group["ms"] / 1e3).tolist()
    benchmarks = []
    skipped = 0
    for record in results.rows.to_dict("records"):
        row = {k: _plain(v) for k, v in record.items()}
        key = tuple(row[k] for k in KEY_COLUMNS)
        data = samples.get(key, [])
        if row["status"] != Status.OK or not data:
            skipped += 1
            continue
        param = f"{row['backend']}-{row['device']}-{row['dtype']}-{row['mode']}"
        name = f"{row['case']}[{param}]"
        benchmarks.append(
            {
                "group": f"{row['suite']}/{row['case']}/{row['dtype']}/{row['mode']}",
                "name": name,
                "fullname": f"invbench::{row['suite']}::{name}",
                "params": {k: row[k] for k in KEY_COLUMNS if k not in ("suite", "case")},
                "param": param,
                "extra_info": {
                    k: row.get(k)
                    for k in (
                        "kind",
                        "tflops",
                        "gbps",
                        "max_rel_err",
                        "peak_mem_bytes",
                        "stop_reason",
                        "cache_mode",
                        "compile_ms",
                    )
                },
                "options": {
                    "disable_gc": False,
                    "timer": row.get("timer") or "",
                    "min_rounds": policy.get("min_samples"),
                    "max_time": policy.get("max_time_s"),
                    "min_time": policy.get("min_time_s"),
                    "warmup": run.get("warmup_ms") is not None,
                },
                "stats": pytest_benchmark_stats(data),
            }
        )
    document = {
        "machine_info": machine_info(meta),
        "commit_info": commit_info(meta),
        "benchmarks": benchmarks,
        "datetime": meta.get("utc_time", ""),
        "version": PYTEST_BENCHMARK_FORMAT,
    }
    return document, skipped


def write_pytest_benchmark(directory: Path) -> tuple[str, int]:
    """JSON text of a result directory, and the count of rows left out."""
    if not Path(directory).is_dir():
        raise ExportError(f"{directory} is not a directory")
    try:
        results = load_results(directory)
    except ResultsError as exc:
        raise ExportError(str(exc)) from None
    document, skipped = pytest_benchmark_json(results)
    return json.dumps(document, indent=4, default=str) + "\n", skipped
