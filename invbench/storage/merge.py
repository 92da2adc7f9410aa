"""Several runs of one side merged into one result directory.

Samples of the same row are pooled and the summary recomputed; samples.parquet gains a
`run` column saying which run each sample came from (comparisons and figures treat the
runs as the replicates). A row that is not ok in any run stays not ok, and a merged
row carries the health warnings of every run, its number of runs and the spread of
their medians (``runs``, ``run_spread``), with a warning when the runs disagree by more
than RUN_SPREAD_LIMIT.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from invbench.core.noise import run_spread
from invbench.core.spec import Status
from invbench.core.stats import summarize
from invbench.storage.results import (
    KEY_COLUMNS,
    META_FILE,
    SAMPLES_FILE,
    ResultRow,
    ResultSet,
    ResultWriter,
    write_json,
)

# Column of samples.parquet: which run (process) a sample came from.
RUN_COLUMN = "run"

_ROW_FIELDS = tuple(f.name for f in fields(ResultRow))
RUN_SPREAD_LIMIT = 0.10  # the runs' medians spread more than 10%: the runs disagree


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def merge_runs(
    runs: Sequence[ResultSet], out: Path, extra_meta: dict[str, Any], meta_key: str = "ab"
) -> Path:
    """One result directory from several runs of a side; samples of equal rows pooled.

    extra_meta is kept under meta.json's meta_key ("ab" for a side of an A/B run,
    "repeats" for `invbench run --repeats`).
    """
    rows: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    samples: dict[tuple[Any, ...], list[float]] = {}
    medians: dict[tuple[Any, ...], list[float]] = {}  # each run's median of its samples
    tagged: list[pd.DataFrame] = []
    for index, run in enumerate(runs):
        for record in run.rows.to_dict("records"):
            row = {k: _clean(record.get(k)) for k in _ROW_FIELDS}
            key = tuple(row[k] for k in KEY_COLUMNS)
            rows.setdefault(key, []).append(row)
        if not run.samples.empty:
            for key, group in run.samples.groupby(list(KEY_COLUMNS), sort=False, dropna=False):
                k = tuple(_clean(v) for v in key)
                values = group["ms"].astype(float).tolist()
                samples.setdefault(k, []).extend(values)
                medians.setdefault(k, []).append(float(np.median(values)))
            tagged.append(run.samples.assign(**{RUN_COLUMN: index}))
    writer = ResultWriter(out)
    ok_keys: list[tuple[Any, ...]] = []
    with writer.deferred():
        _merge_rows(writer, rows, samples, medians, ok_keys)
    _write_tagged(out, tagged, ok_keys)
    meta = dict(runs[0].meta) if runs else {}
    meta[meta_key] = extra_meta
    if "run" in meta:
        meta["run"] = {**meta["run"], "status": "complete", "rows": len(rows)}
    write_json(out / META_FILE, meta)
    return out


def _merge_rows(
    writer: ResultWriter,
    rows: dict[tuple[Any, ...], list[dict[str, Any]]],
    samples: dict[tuple[Any, ...], list[float]],
    medians: dict[tuple[Any, ...], list[float]],
    ok_keys: list[tuple[Any, ...]],
) -> None:
    """One row per key: a failure as it was, else the runs' samples pooled (ok_keys gains it)."""
    for key, versions in rows.items():
        failed = [r for r in versions if r["status"] != Status.OK]
        if failed:
            writer.add(ResultRow(**failed[0]))
            continue
        ok_keys.append(key)
        pooled = samples.get(key, [])
        row = dict(versions[0])
        if pooled:
            s = summarize(pooled)
            median_s = s.median / 1e3
            row.update(
                **s.row_fields(),
                tflops=row["flops"] / median_s / 1e12 if median_s > 0 else None,
                gbps=row["bytes"] / median_s / 1e9 if median_s > 0 else None,
                stop_reason="+".join(dict.fromkeys(r["stop_reason"] for r in versions)),
            )
        phrases = [w.strip() for r in versions for w in (r["warnings"] or "").split(";")]
        spread = run_spread(medians.get(key) or [r["median_ms"] for r in versions])
        row.update(runs=len(versions), run_spread=spread)
        if spread is not None and spread > RUN_SPREAD_LIMIT:
            phrases.append(
                f"runs disagree: their medians spread {spread:.0%} over {len(versions)} runs"
            )
        row["warnings"] = "; ".join(dict.fromkeys(p for p in phrases if p))
        if any(r["throttled"] for r in versions):
            row["throttled"] = True
        writer.add(ResultRow(**row), pooled)


def _write_tagged(
    out: Path, tagged: Sequence[pd.DataFrame], ok_keys: Sequence[tuple[Any, ...]]
) -> None:
    # The same samples, tagged with the run they came from (compare resamples runs).
    frame = pd.concat(tagged, ignore_index=True) if tagged else pd.DataFrame()
    if not frame.empty:  # only rows that are ok on every run keep samples
        keep = pd.MultiIndex.from_frame(frame[list(KEY_COLUMNS)]).isin(ok_keys)
        frame = frame.loc[keep, [*KEY_COLUMNS, "sample", "ms", RUN_COLUMN]]
        tmp = out / f".{SAMPLES_FILE}.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, out / SAMPLES_FILE)
