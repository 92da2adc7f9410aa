"""The history store: every recorded run, its rows and samples, in one SQLite file.

A store is a directory holding ``history.sqlite``; a user can cache it in CI or
commit it. SQLite gives what the store promises without code of our own:

- a run is added in one transaction, so a kill at any moment leaves either the
  whole run or none of it (the rollback journal is undone by the next opener);
- two concurrent adds are serialised by SQLite's file lock (``BEGIN IMMEDIATE``
  with a busy timeout): the second waits, then sees what the first wrote;
- adding a run twice changes nothing: a run's id is a hash of its meta.json and
  its rows, and an id already stored is skipped.

The schema carries a version (table ``info``); a store written by a newer
invbench is refused instead of being misread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from invbench.analysis.history.machine import Machine, machine_of
from invbench.storage.results import KEY_COLUMNS, ResultsError, load_results

SCHEMA_VERSION = 1
DB_FILE = "history.sqlite"
STAT_COLUMNS = (
    "status",
    "reason",
    "n_samples",
    "median_ms",
    "p20_ms",
    "p80_ms",
    "min_ms",
    "mean_ms",
    "ci_low_ms",
    "ci_high_ms",
)
BUSY_TIMEOUT_S = 300.0


class HistoryError(ValueError):
    """A store or a run that cannot be used; the CLI prints it on one line and exits 2."""


def _q(name: str) -> str:
    return f'"{name}"'  # "case" and "groups" are SQL keywords


_KEYS_SQL = ", ".join(_q(k) for k in KEY_COLUMNS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS machines (
    machine_id TEXT PRIMARY KEY, label TEXT NOT NULL, fields TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, commit_sha TEXT NOT NULL, commit_time TEXT NOT NULL,
    commit_depth INTEGER, subject TEXT NOT NULL, run_time TEXT NOT NULL, suite TEXT NOT NULL,
    source TEXT NOT NULL, added_at TEXT NOT NULL, meta TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    run_id TEXT NOT NULL REFERENCES runs(run_id), machine_id TEXT NOT NULL,
    {", ".join(f"{_q(k)} NOT NULL" for k in KEY_COLUMNS)},
    status TEXT NOT NULL, reason TEXT NOT NULL, n_samples INTEGER NOT NULL,
    median_ms REAL, p20_ms REAL, p80_ms REAL, min_ms REAL, mean_ms REAL,
    ci_low_ms REAL, ci_high_ms REAL, record TEXT NOT NULL, samples BLOB,
    PRIMARY KEY (run_id, {_KEYS_SQL}));
CREATE INDEX IF NOT EXISTS rows_by_series ON rows (machine_id, {_KEYS_SQL});
"""


@dataclass(frozen=True)
class AddOutcome:
    run_id: str
    commit: str
    rows: int
    machines: tuple[Machine, ...]
    added: bool  # False: the run was already in the store


@dataclass(frozen=True)
class Filters:
    """Which rows a query returns; an empty tuple means any value."""

    suite: Sequence[str] = ()
    backend: Sequence[str] = ()
    case: Sequence[str] = ()
    dtype: Sequence[str] = ()
    mode: Sequence[str] = ()
    machine: Sequence[str] = ()  # machine ids or prefixes of them, or words of the label
    extra: Mapping[str, Any] = field(default_factory=dict)

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (
            ("suite", self.suite),
            ("backend", self.backend),
            ("case", self.case),
            ("dtype", self.dtype),
            ("mode", self.mode),
        ):
            if values:
                clauses.append(f"r.{_q(column)} IN ({', '.join('?' * len(values))})")
                params += [str(v) for v in values]
        for column, value in self.extra.items():
            clauses.append(f"r.{_q(column)} = ?")
            params.append(value)
        if self.machine:
            alternatives = []
            for m in self.machine:
                alternatives.append("(r.machine_id LIKE ? OR m.label LIKE ?)")
                params += [f"{m}%", f"%{m}%"]
            clauses.append("(" + " OR ".join(alternatives) + ")")
        return (" AND ".join(clauses) or "1"), params


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _git(repo: Path, *args: str) -> list[str] | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.splitlines() if done.returncode == 0 and done.stdout.strip() else None


def commit_info(repo: Path | None, commit: str) -> tuple[str | None, int | None, str]:
    """(committer date in ISO form, commits in its history, subject) of a commit.

    The count orders commits made within the same second (a rebase, a scripted series);
    (None, None, "") when git cannot tell.
    """
    if repo is None:
        return None, None, ""
    shown = _git(repo, "show", "-s", "--format=%cI%n%s", commit)
    if shown is None:
        return None, None, ""
    count = _git(repo, "rev-list", "--count", commit)
    depth = int(count[0]) if count else None
    return shown[0].strip(), depth, (shown[1].strip() if len(shown) > 1 else "")


class HistoryStore:
    """A history directory. Every method opens its own connection: safe across processes."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_FILE

    def exists(self) -> bool:
        return self.path.is_file()

    @contextlib.contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        if not write and not self.exists():
            raise HistoryError(f"{self.directory} holds no history ({DB_FILE}); add runs first")
        if write:
            self.directory.mkdir(parents=True, exist_ok=True)
        try:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot open {self.path}: {exc}") from None
        try:
            con.execute("PRAGMA foreign_keys = ON")
            if write:
                con.execute("BEGIN IMMEDIATE")  # the write lock, held to COMMIT
                for statement in _SCHEMA.split(";"):  # executescript would COMMIT first
                    if statement.strip():
                        con.execute(statement)
                self._check_version(con, create=True)
            else:
                self._check_version(con, create=False)
            yield con
            if write:
                con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise HistoryError(f"{self.path}: {exc}") from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def _check_version(self, con: sqlite3.Connection, create: bool) -> None:
        try:
            found = con.execute("SELECT value FROM info WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            found = None
        if found is None:
            if not create:
                raise HistoryError(f"{self.path} is not an invbench history (no schema version)")
            con.execute(
                "INSERT INTO info (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            return
        version = int(found[0])
        if version != SCHEMA_VERSION:
            raise HistoryError(
                f"{self.path} has history schema {version}; this invbench reads "
                f"schema {SCHEMA_VERSION}"
            )

    # -- writing --------------------------------------------------------------

    def add(
        self, result_dir: Path | str, repo: Path | None = None, allow_dirty: bool = False
    ) -> AddOutcome:
        """Record one result directory; a run already in the store is left as it is."""
        try:
            results = load_results(Path(result_dir))
        except (ResultsError, OSError, ValueError) as exc:
            raise HistoryError(str(exc)) from None
        meta = results.meta
        git = meta.get("git") or {}
        commit = git.get("commit")
        if not commit:
            raise HistoryError(f"{result_dir}: meta.json names no git commit; history needs one")
        if git.get("dirty") and not allow_dirty:
            raise HistoryError(
                f"{result_dir} was measured on a checkout with uncommitted changes "
                "(pass --allow-dirty to record it under its commit anyway)"
            )
        status = (meta.get("run") or {}).get("status")
        if status not in (None, "complete"):
            raise HistoryError(f"{result_dir}: the run is {status}, not complete")
        if results.rows.empty:
            raise HistoryError(f"{result_dir} holds no rows")
        rows = results.rows.sort_values(list(KEY_COLUMNS), kind="stable")
        records = [{str(k): _clean(v) for k, v in r.items()} for r in rows.to_dict("records")]
        run_id = hashlib.sha256((_canonical(meta) + _canonical(records)).encode()).hexdigest()[:16]
        samples = self._samples_by_key(results.samples)
        commit_time, depth, subject = commit_info(repo, commit)
        run_time = str(meta.get("utc_time") or "")
        machines: dict[str, Machine] = {}
        values = []
        for record in records:
            machine = machine_of(meta, str(record["device"]))
            machines[machine.id] = machine
            key = tuple(record[k] for k in KEY_COLUMNS)
            blob = samples.get(key)
            values.append(
                (
                    run_id,
                    machine.id,
                    *key,
                    *(
                        record.get(c)
                        if record.get(c) is not None
                        else ("" if c == "reason" else None)
                        for c in STAT_COLUMNS
                    ),
                    _canonical(record),
                    blob,
                )
            )
        with self._connect(write=True) as con:
            if con.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                return AddOutcome(run_id, commit, len(records), tuple(machines.values()), False)
            con.executemany(
                "INSERT OR IGNORE INTO machines VALUES (?, ?, ?)",
                [(m.id, m.label, _canonical(m.fields)) for m in machines.values()],
            )
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    commit,
                    commit_time or run_time,
                    depth,
                    subject,
                    run_time,
                    str(rows["suite"].iloc[0]),
                    str(Path(result_dir).resolve().name),
                    datetime.now(UTC).isoformat(timespec="seconds"),
                    _canonical(meta),
                ),
            )
            n_cols = 2 + len(KEY_COLUMNS) + len(STAT_COLUMNS) + 2
            con.executemany(f"INSERT INTO rows VALUES ({', '.join('?' * n_cols)})", values)
        return AddOutcome(run_id, commit, len(records), tuple(machines.values()), True)

    @staticmethod
    def _samples_by_key(samples: pd.DataFrame) -> dict[tuple[Any, ...], bytes]:
        if samples.empty or "ms" not in samples:
            return {}
        out: dict[tuple[Any, ...], bytes] = {}
        for key, group in samples.groupby(list(KEY_COLUMNS), sort=False, dropna=False):
            k = tuple(_clean(v) for v in key)
            out[k] = np.asarray(group["ms"], dtype="<f8").tobytes()
        return out

    # -- reading --------------------------------------------------------------

    def runs(self) -> pd.DataFrame:
        with self._connect(write=False) as con:
            return pd.read_sql_query(
                "SELECT run_id, commit_sha, commit_time, commit_depth, subject, run_time, suite, "
                "source, added_at FROM runs ORDER BY commit_time, commit_depth, run_time",
                con,
            )

    def machines(self) -> pd.DataFrame:
        with self._connect(write=False) as con:
            return pd.read_sql_query("SELECT machine_id, label, fields FROM machines", con)

    def rows(self, filters: Filters | None = None, ok_only: bool = False) -> pd.DataFrame:
        """Rows joined with their run (commit, times) and machine label, in commit order."""
        where, params = (filters or Filters()).where()
        if ok_only:
            where += " AND r.status = 'ok' AND r.median_ms IS NOT NULL"
        columns = ", ".join(f"r.{_q(c)}" for c in (*KEY_COLUMNS, *STAT_COLUMNS))
        sql = (
            f"SELECT r.run_id, r.machine_id, m.label AS machine, {columns}, "
            "u.commit_sha, u.commit_time, u.commit_depth, u.subject, u.run_time "
            "FROM rows r JOIN runs u USING (run_id) JOIN machines m USING (machine_id) "
            f"WHERE {where} ORDER BY u.commit_time, u.commit_depth, u.run_time, u.run_id"
        )
        with self._connect(write=False) as con:
            return pd.read_sql_query(sql, con, params=params)

    def samples(self, run_id: str, key: Mapping[str, Any]) -> np.ndarray:
        where = " AND ".join(f"{_q(k)} = ?" for k in KEY_COLUMNS)
        with self._connect(write=False) as con:
            found = con.execute(
                f"SELECT samples FROM rows WHERE run_id = ? AND {where}",
                (run_id, *(_clean(key[k]) for k in KEY_COLUMNS)),
            ).fetchone()
        if found is None or found[0] is None:
            return np.empty(0)
        return np.frombuffer(found[0], dtype="<f8").copy()

    def check(self) -> list[str]:
        """Problems SQLite's integrity check finds, plus rows of runs that are not stored."""
        with self._connect(write=False) as con:
            problems = [r[0] for r in con.execute("PRAGMA integrity_check") if r[0] != "ok"]
            orphans = con.execute(
                "SELECT COUNT(*) FROM rows WHERE run_id NOT IN (SELECT run_id FROM runs)"
            ).fetchone()[0]
        if orphans:
            problems.append(f"{orphans} rows belong to no run")
        return problems
