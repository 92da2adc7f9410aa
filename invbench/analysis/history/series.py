"""Series: one row of the results (a key and a machine) followed over commits.

Rows come from the store in commit order. A series holds one point per commit:
the median of the medians of that commit's runs (a commit run twice is one point
with two runs). Series never mix machines: the machine identity is part of the
series key, so a change of machine starts a new series.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from invbench.storage.results import KEY_COLUMNS


@dataclass(frozen=True)
class Point:
    commit: str
    commit_time: str
    subject: str
    run_ms: tuple[float, ...]  # each run's median at this commit, in run order
    run_ids: tuple[str, ...]

    @property
    def ms(self) -> float:
        return float(np.median(self.run_ms))


@dataclass(frozen=True)
class Series:
    id: str
    key: Mapping[str, Any]  # KEY_COLUMNS -> value
    machine_id: str
    machine: str  # the machine's label
    points: tuple[Point, ...]

    @property
    def values(self) -> np.ndarray:
        return np.array([p.ms for p in self.points], dtype=np.float64)

    @property
    def commits(self) -> list[str]:
        return [p.commit for p in self.points]

    @property
    def label(self) -> str:
        k = self.key
        return f"{k['case']} {k['backend']} {k['dtype']} {k['mode']}"

    @property
    def suite(self) -> str:
        return str(self.key["suite"])


def series_id(machine_id: str, key: Mapping[str, Any]) -> str:
    text = json.dumps([machine_id, *(key[k] for k in KEY_COLUMNS)], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def build_series(rows: pd.DataFrame) -> list[Series]:
    """Series from store rows (HistoryStore.rows with ok_only=True), in the rows' order."""
    if rows.empty:
        return []
    # The store's order (commit time, then commits in its history, then run time) is kept.
    out: list[Series] = []
    for group_key, group in rows.groupby(["machine_id", *KEY_COLUMNS], sort=False):
        machine_id, *values = (_plain(v) for v in group_key)
        key = dict(zip(KEY_COLUMNS, values, strict=True))
        points: list[Point] = []
        for commit, runs in group.groupby("commit_sha", sort=False):
            first = runs.iloc[0]
            points.append(
                Point(
                    commit=str(commit),
                    commit_time=str(first["commit_time"]),
                    subject=str(first["subject"]),
                    run_ms=tuple(float(v) for v in runs["median_ms"]),
                    run_ids=tuple(str(v) for v in runs["run_id"]),
                )
            )
        out.append(
            Series(
                id=series_id(str(machine_id), key),
                key=key,
                machine_id=str(machine_id),
                machine=str(group["machine"].iloc[0]),
                points=tuple(points),
            )
        )
    out.sort(key=lambda s: (s.suite, s.machine, *(str(s.key[k]) for k in KEY_COLUMNS)))
    return out


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """The last `width` values as block characters, lowest to highest."""
    blocks = "▁▂▃▄▅▆▇█"
    tail = np.asarray(values[-width:], dtype=np.float64)
    if tail.size == 0:
        return ""
    lo, hi = float(np.min(tail)), float(np.max(tail))
    if hi <= lo:
        return blocks[3] * tail.size
    scaled = (tail - lo) / (hi - lo) * (len(blocks) - 1)
    return "".join(blocks[round(v)] for v in scaled)
