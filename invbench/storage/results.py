"""The result record, its on-disk schema, and crash-safe storage.

A run directory holds results.parquet and results.csv (one row per case x backend x
dtype x mode), samples.parquet (every raw sample) and meta.json. All three tables
are rewritten atomically (temporary file + rename) after every row, so a crash or
Ctrl-C at any moment leaves the rows measured so far readable.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from invbench.core.spec import Status

# 2: float32 rows without TF32 unless asked (tf32), cudnn_benchmark, host_ms, launch_reruns,
#    clock_dropped, nvml_busy_readings, energy_resolution_s; the L2 flush reads instead of
#    writing; clocks over busy time only. Version-1 directories load with these columns at
#    their defaults (see migrate_rows). Also host, device_name, device_uuid: where a row
#    was measured (empty in version-1 rows).
# 3: threads, load_avg, steal_pct (how the host ran the row), runs and run_spread (rows
#    merged from several runs); empty in older rows.
RESULT_SCHEMA_VERSION = 3
RESULTS_FILE = "results.parquet"
CSV_FILE = "results.csv"
SAMPLES_FILE = "samples.parquet"
META_FILE = "meta.json"

# Columns that identify a row: two runs' rows with equal keys measure the same thing.
KEY_COLUMNS = (
    "suite",
    "case",
    "backend",
    "device",
    "dtype",
    "mode",
    "batch",
    "channels",
    "height",
    "width",
    "kernel_size",
    "stride",
    "dilation",
    "groups",
    "padding",
)


@dataclass(frozen=True)
class ResultRow:
    suite: str
    case: str
    backend: str
    kind: str
    device: str
    dtype: str
    mode: str
    batch: int
    channels: int
    height: int
    width: int
    kernel_size: int
    stride: int
    dilation: int
    groups: int
    padding: int
    out_height: int
    out_width: int
    status: str
    reason: str = ""
    n_samples: int = 0
    median_ms: float | None = None
    p20_ms: float | None = None
    p80_ms: float | None = None
    min_ms: float | None = None
    mean_ms: float | None = None
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    stop_reason: str = ""
    cache_mode: str = ""
    timer: str = ""
    compile_ms: float | None = None  # first call: JIT, compilation, autotuning
    flops: int = 0
    bytes: int = 0
    tflops: float | None = None
    gbps: float | None = None
    peak_mem_bytes: int | None = None
    mem_method: str = ""
    max_rel_err: float | None = None
    # How the samples were taken (see docs/measurement.md).
    launch_hidden: bool = False  # samples enqueued behind a blocking kernel (short GPU kernels)
    calls_per_sample: int = 1  # graph mode: calls captured per replay; samples are per call
    host_ms: float | None = None  # GPU rows: median host time to enqueue one call
    launch_reruns: int | None = None  # exposed batches thrown away and timed again
    clock_dropped: int = 0  # samples dropped by --min-clock (batches under the clock floor)
    # Float32 precision policy while the row ran.
    tf32: bool | None = None  # TF32 allowed in float32 matmuls and convolutions (--tf32)
    cudnn_benchmark: bool | None = None  # cuDNN chose its algorithms by timing them
    # NVML telemetry over this row's timed batches; None where unavailable.
    telemetry: str = ""  # "nvml", or "unavailable: <reason>"
    sm_clock_mhz: float | None = None  # mean SM clock
    mem_clock_mhz: float | None = None  # mean memory clock
    temp_c_max: float | None = None
    power_w_mean: float | None = None
    gpu_util_pct: float | None = None  # mean GPU utilisation
    energy_j: float | None = None  # energy counter difference over the timed batches
    throttled: bool | None = None  # a power or thermal slowdown reason was active
    throttle_reasons: str = ""  # every active clock-event reason but idle, comma-separated
    nvml_mem_peak_bytes: int | None = None  # device memory used (NVML) while prepared or timed
    nvml_busy_readings: int = 0  # readings taken while the GPU ran a timed batch
    energy_resolution_s: float | None = None  # energy counter's update period
    roofline_frac: float | None = None  # gbps / the run's measured copy bandwidth
    # How the host ran the row (invbench.measure.hygiene): torch's intra-op threads, the
    # one-minute load average after the row's group was timed, and the share of CPU time
    # the hypervisor stole while it was timed.
    threads: int | None = None
    load_avg: float | None = None
    steal_pct: float | None = None
    # Rows merged from several runs (run --repeats, ab): how many, and the spread of the
    # runs' medians (standard deviation of their logs, about their coefficient of variation).
    runs: int | None = None
    run_spread: float | None = None
    warnings: str = ""  # health warnings, "; "-separated
    # the code path the backend ran, when it has several (cuda_ext on a CPU: its vector
    # instruction set and width, avx512bf16-zmm ... avx2 / generic, or scalar for float64)
    variant: str = ""
    # layer and model levels (op rows keep the defaults)
    level: str = "op"
    model: str = ""  # model level: "rednet-50", "resnet-50", ...
    gen_ms: float | None = None  # layer level: kernel generation alone (median, p20, p80)
    gen_p20_ms: float | None = None
    gen_p80_ms: float | None = None
    agg_ms: float | None = None  # layer level: aggregation alone on the generated weight
    agg_p20_ms: float | None = None
    agg_p80_ms: float | None = None
    images_per_s: float | None = None  # model level: batch / median
    # Where the row was measured: the machine, and the device's model and identity
    # (a GPU's UUID as nvidia-smi prints it; "" on a CPU). Filled by the writer or the worker.
    host: str = ""
    device_name: str = ""
    device_uuid: str = ""

    def __post_init__(self) -> None:
        Status(self.status)  # raises on an unknown status
        if self.status == Status.OK and self.median_ms is None:
            raise ValueError("an ok row needs median_ms")

    def key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in KEY_COLUMNS)


COLUMNS = tuple(f.name for f in fields(ResultRow))
_FIELD_TYPES = {f.name: str(f.type) for f in fields(ResultRow)}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def row_from_record(record: Mapping[Any, Any]) -> ResultRow:
    """A ResultRow from a stored record (a parquet row): NaN back to None, floats to ints."""
    values: dict[str, Any] = {}
    for name, typ in _FIELD_TYPES.items():
        if name not in record:
            continue  # a column added after the file was written: keep the default
        value = record[name]
        if _missing(value):
            values[name] = "" if typ == "str" else None
        elif typ.startswith("bool"):
            values[name] = bool(value)
        elif typ.startswith("int"):
            values[name] = int(value)
        elif typ.startswith("float"):
            values[name] = float(value)
        else:
            values[name] = str(value) if typ == "str" else value
    return ResultRow(**values)


def rows_frame(rows: Sequence[ResultRow]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in rows], columns=list(COLUMNS))


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    _atomic(path, lambda p: p.write_text(json.dumps(data, indent=2, default=str) + "\n"))


DEVICE_FIELDS = ("host", "device_name", "device_uuid")


def stamped(row: ResultRow, stamp: Mapping[str, str]) -> ResultRow:
    """The row with the device fields it lacks taken from stamp (see DEVICE_FIELDS)."""
    missing: dict[str, Any] = {
        k: v for k, v in stamp.items() if k in DEVICE_FIELDS and not getattr(row, k)
    }
    return replace(row, **missing) if missing else row


class ResultWriter:
    """Collects rows and raw samples; every add() leaves complete files on disk.

    stamp: host and device fields (DEVICE_FIELDS) given to every row added without them.
    """

    def __init__(self, directory: Path, stamp: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.rows: list[ResultRow] = []
        self._samples: list[pd.DataFrame] = []  # one frame per row (columnar: fast to write)
        self.stamp = dict(stamp or {})
        self._deferred = False

    @classmethod
    def resume(cls, directory: Path, stamp: Mapping[str, str] | None = None) -> ResultWriter:
        """A writer holding the rows and samples already in directory; adds append to them."""
        existing = load_results(directory)
        if "migrated_from" in existing.meta:
            raise ResultsError(
                f"{directory} was written with result schema {existing.meta['migrated_from']}; "
                "finish it with the invbench version that started it"
            )
        writer = cls(directory, stamp)
        writer.rows = [row_from_record(r) for r in existing.rows.to_dict("records")]
        keys = {row.key() for row in writer.rows}
        if not existing.samples.empty:
            frame = existing.samples[[*KEY_COLUMNS, "sample", "ms"]]
            kept = pd.MultiIndex.from_frame(frame[list(KEY_COLUMNS)]).isin(list(keys))
            writer._samples = [frame.loc[kept].reset_index(drop=True)]
        return writer

    def add(self, row: ResultRow, samples_ms: Sequence[float] = ()) -> None:
        row = stamped(row, self.stamp)
        self.rows.append(row)
        if len(samples_ms):
            n = len(samples_ms)
            frame = pd.DataFrame({k: [v] * n for k, v in zip(KEY_COLUMNS, row.key(), strict=True)})
            frame["sample"] = range(n)
            frame["ms"] = [float(ms) for ms in samples_ms]
            self._samples.append(frame)
        if not self._deferred:
            self.flush()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Rows added in the block are written once, at its end (a group's rows at once)."""
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False
            self.flush()

    def flush(self) -> None:
        # results.parquet goes last: a row is on disk only once its samples are, and a kill
        # in between leaves samples without a row, which resume() drops.
        columns = [*KEY_COLUMNS, "sample", "ms"]
        samples = (
            pd.concat(self._samples, ignore_index=True)[columns]
            if self._samples
            else pd.DataFrame(columns=columns)
        )
        _atomic(self.directory / SAMPLES_FILE, lambda p: samples.to_parquet(p, index=False))
        frame = rows_frame(self.rows)
        _atomic(self.directory / CSV_FILE, lambda p: frame.to_csv(p, index=False))
        _atomic(self.directory / RESULTS_FILE, lambda p: frame.to_parquet(p, index=False))


@dataclass(frozen=True)
class ResultSet:
    directory: Path
    rows: pd.DataFrame
    samples: pd.DataFrame
    meta: dict[str, Any]


class ResultsError(ValueError):
    pass


def load_results(directory: Path) -> ResultSet:
    """Read a run directory; a ResultsError says what is missing or from a newer schema."""
    directory = Path(directory)
    path = directory / RESULTS_FILE
    if not path.exists():
        raise ResultsError(f"{directory} holds no {RESULTS_FILE}: not an invbench result directory")
    meta: dict[str, Any] = {}
    if (directory / META_FILE).exists():
        meta = json.loads((directory / META_FILE).read_text())
    version = meta.get("schema_version", RESULT_SCHEMA_VERSION)
    if not isinstance(version, int) or not 1 <= version <= RESULT_SCHEMA_VERSION:
        raise ResultsError(
            f"{directory} has result schema {version}; this invbench reads "
            f"schemas 1 to {RESULT_SCHEMA_VERSION}"
        )
    rows = migrate_rows(pd.read_parquet(path), version)
    if version != RESULT_SCHEMA_VERSION:
        meta = dict(meta, migrated_from=version)
    samples_path = directory / SAMPLES_FILE
    samples = pd.read_parquet(samples_path) if samples_path.exists() else pd.DataFrame()
    return ResultSet(directory=directory, rows=rows, samples=samples, meta=meta)


# What a column added in a schema version holds in rows written before it.
_ADDED_IN: dict[int, dict[str, Any]] = {
    2: {
        "host_ms": None,
        "launch_reruns": None,
        "clock_dropped": 0,
        # version 1 left torch's defaults: cuDNN could use TF32 for float32 convolutions
        "tf32": None,
        "cudnn_benchmark": None,
        "nvml_busy_readings": 0,
        "energy_resolution_s": None,
        "host": "",
        "device_name": "",
        "device_uuid": "",
    },
    3: {"threads": None, "load_avg": None, "steal_pct": None, "runs": None, "run_spread": None},
}


def migrate_rows(rows: pd.DataFrame, version: int) -> pd.DataFrame:
    """Rows of an older schema with the columns added since, at what they stood for then.

    A version-1 row's ``tf32`` and ``cudnn_benchmark`` are unknown (empty): torch's
    defaults let cuDNN use TF32, and the baselines switched autotuning on as they built.
    """
    rows = rows.copy()
    for added, columns in _ADDED_IN.items():
        if version < added:
            for name, value in columns.items():
                if name not in rows.columns:
                    rows[name] = pd.Series([value] * len(rows), index=rows.index, dtype=object)
    return rows


def _machine(meta: Mapping[str, Any]) -> tuple[Any, ...]:
    gpus = tuple(d.get("name") for d in meta.get("cuda_devices") or [])
    return (meta.get("host"), meta.get("cpu"), gpus)


def device_names(rows: pd.DataFrame) -> list[str]:
    """The device models rows were measured on, in order of appearance ("" rows left out)."""
    if "device_name" not in rows.columns:
        return []
    return list(dict.fromkeys(str(d) for d in rows["device_name"].dropna() if str(d)))


def _tagged(rs: ResultSet) -> pd.DataFrame:
    """rs's samples with the device_name of their row (rows of several devices combined)."""
    if "device_name" in rs.samples.columns:
        return rs.samples
    names = rs.rows[[*KEY_COLUMNS, "device_name"]].drop_duplicates(list(KEY_COLUMNS))
    return rs.samples.merge(names, on=list(KEY_COLUMNS), how="left")


def _names_devices(rs: ResultSet) -> bool:
    return "device_name" in rs.rows.columns and bool((rs.rows["device_name"] != "").all())


def combine_results(sets: Sequence[ResultSet]) -> ResultSet:
    """Several runs as one set: e.g. a fwd and a fwd+bwd run, or one run per GPU type.

    Rows are concatenated in order. Runs of different machines (host, CPU or GPU models)
    combine only when every row names its device (device_name): the device is then a
    dimension of the set, and a row key is unique per device. A row key found twice on
    one device is a ResultsError. The meta is the first run's, with ``combined_from``
    listing every directory.
    """
    if not sets:
        raise ResultsError("no result directories to combine")
    if len(sets) == 1:
        return sets[0]
    first = sets[0]
    for other in sets[1:]:
        if _machine(other.meta) != _machine(first.meta) and not all(map(_names_devices, sets)):
            raise ResultsError(
                f"{other.directory} was measured on another machine than {first.directory} "
                "and their rows do not name their devices; combine runs of one machine "
                "(compare runs of two)"
            )
    seen: dict[tuple[Any, ...], Path] = {}
    for rs in sets:
        columns = [*KEY_COLUMNS, "device_name"]
        for key in rs.rows[columns].itertuples(index=False, name=None):
            if key in seen:
                what = ", ".join(f"{k}={v}" for k, v in zip(columns, key, strict=True) if v != "")
                raise ResultsError(f"the row {what} is in both {seen[key]} and {rs.directory}")
            seen[key] = rs.directory
    rows = pd.concat([rs.rows for rs in sets], ignore_index=True)
    several = len(device_names(rows)) > 1
    parts = [_tagged(rs) if several else rs.samples for rs in sets if not rs.samples.empty]
    samples = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    meta = dict(first.meta, combined_from=[str(rs.directory) for rs in sets])
    return ResultSet(directory=first.directory, rows=rows, samples=samples, meta=meta)
