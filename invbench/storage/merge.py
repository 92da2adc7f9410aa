"""Several runs of one side merged into one result directory.

Samples of the same row are pooled and the summary recomputed; samples.parquet gains a
`run` column saying which run each sample came from (comparisons and figures treat the
runs as the replicates). A row that is not ok in any run stays not ok, and a merged
row carries the health warnings of every run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

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


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def merge_runs(runs: Sequence[ResultSet], out: Path, extra_meta: dict[str, Any]) -> Path:
    """One result directory from several runs of a side; samples of equal rows pooled."""
    rows: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    samples: dict[tuple[Any, ...], list[float]] = {}
    tagged: list[pd.DataFrame] = []
    for index, run in enumerate(runs):
        for record in run.rows.to_dict("records"):
            row = {k: _clean(record.get(k)) for k in _ROW_FIELDS}
            key = tuple(row[k] for k in KEY_COLUMNS)
            rows.setdefault(key, []).append(row)
        if not run.samples.empty:
            for key, group in run.samples.groupby(list(KEY_COLUMNS), sort=False, dropna=False):
                k = tuple(_clean(v) for v in key)
                samples.setdefault(k, []).extend(group["ms"].astype(float).tolist())
            tagged.append(run.samples.assign(**{RUN_COLUMN: index}))
    writer = ResultWriter(out)
    ok_keys = []
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
        row["warnings"] = "; ".join(dict.fromkeys(p for p in phrases if p))
        if any(r["throttled"] for r in versions):
            row["throttled"] = True
        writer.add(ResultRow(**row), pooled)
    # The same samples, tagged with the run they came from (compare resamples runs).
    frame = pd.concat(tagged, ignore_index=True) if tagged else pd.DataFrame()
    if not frame.empty:  # only rows that are ok on every run keep samples
        keep = pd.MultiIndex.from_frame(frame[list(KEY_COLUMNS)]).isin(ok_keys)
        frame = frame.loc[keep, [*KEY_COLUMNS, "sample", "ms", RUN_COLUMN]]
        tmp = out / f".{SAMPLES_FILE}.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, out / SAMPLES_FILE)
    meta = dict(runs[0].meta) if runs else {}
    meta["ab"] = extra_meta
    if "run" in meta:
        meta["run"] = {**meta["run"], "status": "complete", "rows": len(rows)}
    write_json(out / META_FILE, meta)
    return out
