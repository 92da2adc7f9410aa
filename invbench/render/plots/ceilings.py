"""Bandwidth and compute ceilings for rooflines and '% of floor' columns.

Measured ceilings come from a run's meta.json ("ceilings": a large device-to-device
copy and a large matmul timed during the run). When a run has none, a CUDA run falls
back to the datasheet numbers of a few known GPUs, always labelled "datasheet"; a CPU
run gets no ceilings at all.

The reader accepts the shapes a "ceilings" object is likely to take, flat or nested,
starting with the one `invbench run` writes::

    {"copy": {"gbps": 3010.5, ...}, "matmul": [{"tflops": 51.2, "dtype": "float32"}, ...]}
    {"bandwidth_gbps": 3010.5, "matmul_tflops": {"float32": 51.2, "bfloat16": 702.0}}
    {"copy": {"gbps": 3010.5}, "matmul": {"float32": {"tflops": 51.2}}}
    {"bandwidth_bytes_per_s": 3.01e12, "matmul_flops_per_s": 5.1e13, "dtype": "float32"}

A key path naming bandwidth (bandwidth, copy, memory, hbm, dram) with a unit suffix
(gbps, gb_s, tbps, tb_s, bytes_per_s, b_s) is a bandwidth; one naming compute
(matmul, gemm, compute, flops) with a unit (tflops, gflops, flops_per_s) is a compute
ceiling, for the dtype named in its path or list item (or every dtype when none is).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from invbench.core.spec import Dtype

Source = Literal["measured", "datasheet"]


@dataclass(frozen=True)
class Ceiling:
    value: float  # GB/s for bandwidth, FLOP/s for compute
    source: Source
    what: str  # e.g. "device copy", "fp32 CUDA cores"

    @property
    def marked(self) -> str:
        return f"{self.source}, {self.what}" if self.what else self.source


@dataclass(frozen=True)
class Ceilings:
    device: str
    bandwidth: Ceiling | None = None
    compute: dict[str, Ceiling] = field(default_factory=dict)  # dtype -> ceiling
    compute_any: Ceiling | None = None  # a compute ceiling that names no dtype

    def compute_for(self, dtype: str) -> Ceiling | None:
        return self.compute.get(dtype, self.compute_any)

    @property
    def empty(self) -> bool:
        return self.bandwidth is None and not self.compute and self.compute_any is None


_BW_WORDS = ("bandwidth", "copy", "memory", "hbm", "dram", "bw")
_COMPUTE_WORDS = ("matmul", "gemm", "compute", "flops", "mma")
# unit suffix -> factor to GB/s
_BW_UNITS = {
    "gbps": 1.0,
    "gb_s": 1.0,
    "gb_per_s": 1.0,
    "tbps": 1e3,
    "tb_s": 1e3,
    "tb_per_s": 1e3,
    "bytes_per_s": 1e-9,
    "b_per_s": 1e-9,
    "b_s": 1e-9,
}
# unit suffix -> factor to FLOP/s
_FLOP_UNITS = {
    "tflops": 1e12,
    "tflop_s": 1e12,
    "gflops": 1e9,
    "gflop_s": 1e9,
    "flops_per_s": 1.0,
    "flop_per_s": 1.0,
    "flop_s": 1.0,
}
_DTYPE_ALIASES = {
    "float32": "float32",
    "fp32": "float32",
    "tf32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float64": "float64",
    "fp64": "float64",
}


def _flatten(obj: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(key path, leaf) pairs; a list item is keyed by its "dtype" when it has one."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _flatten(v, (*path, str(k).lower()))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            tag = str(v.get("dtype", i)) if isinstance(v, Mapping) else str(i)
            yield from _flatten(v, (*path, tag.lower().removeprefix("torch.")))
    else:
        yield path, obj


def _unit(path: tuple[str, ...], units: Mapping[str, float]) -> float | None:
    """The unit named at the end of the path, or of the nearest key above it that names
    one ({"matmul_tflops": {"float32": 51.2}})."""
    suffixes = sorted(units, key=len, reverse=True)
    for i in range(len(path), 0, -1):
        joined = "_".join(path[:i])
        for suffix in suffixes:
            if joined.endswith(suffix):
                return units[suffix]
    return None


def _dtype_in(path: tuple[str, ...], sibling_dtype: str | None) -> str | None:
    for part in path:
        for token in part.replace("-", "_").split("_"):
            if token in _DTYPE_ALIASES:
                return _DTYPE_ALIASES[token]
    return sibling_dtype


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) and v > 0 else None


def measured_ceilings(meta: Mapping[str, Any], device: str) -> Ceilings | None:
    """The ceilings a run measured, or None when its meta.json has none we can read."""
    raw = meta.get("ceilings")
    if not isinstance(raw, Mapping) or not raw:
        return None
    sibling = raw.get("dtype")
    sibling_dtype = _DTYPE_ALIASES.get(str(sibling).lower()) if sibling else None
    bandwidth: Ceiling | None = None
    compute: dict[str, Ceiling] = {}
    compute_any: Ceiling | None = None
    for path, value in _flatten(raw):
        v = _number(value)
        if v is None:
            continue
        text = "_".join(path)
        bw_unit = _unit(path, _BW_UNITS)
        flop_unit = _unit(path, _FLOP_UNITS)
        if flop_unit is not None and any(w in text for w in _COMPUTE_WORDS):
            dtype = _dtype_in(path, sibling_dtype)
            ceiling = Ceiling(v * flop_unit, "measured", "matmul")
            if dtype is None:
                compute_any = compute_any or ceiling
            else:
                compute.setdefault(dtype, ceiling)
        elif bw_unit is not None and any(w in text for w in _BW_WORDS) and bandwidth is None:
            bandwidth = Ceiling(v * bw_unit, "measured", "device copy")
    found = Ceilings(device, bandwidth, compute, compute_any)
    return None if found.empty else found


@dataclass(frozen=True)
class _Sheet:
    pattern: str  # regular expression matched against the lower-case device name
    gbps: float
    fp32_tflops: float  # non-tensor FP32
    fp16_tflops: float  # dense FP16 tensor-core peak (no sparsity)
    bf16_tflops: float | None  # dense BF16 tensor-core peak; None: no BF16 tensor cores


# NVIDIA datasheet peaks (boost clock). First match wins, so specific entries go first.
_DATASHEETS = (
    _Sheet(r"\bh100\b.*\bpcie\b", 2000.0, 51.0, 756.0, 756.0),
    _Sheet(r"\bh100\b.*\bnvl\b", 3900.0, 60.0, 835.0, 835.0),
    _Sheet(r"\bh100\b", 3350.0, 67.0, 989.0, 989.0),  # SXM5 ("H100 80GB HBM3")
    _Sheet(r"\bh200\b", 4800.0, 67.0, 989.0, 989.0),
    _Sheet(r"\ba100\b.*80gb.*\bpcie\b", 1935.0, 19.5, 312.0, 312.0),
    _Sheet(r"\ba100\b.*80gb", 2039.0, 19.5, 312.0, 312.0),
    _Sheet(r"\ba100\b", 1555.0, 19.5, 312.0, 312.0),
    _Sheet(r"\bv100\b", 900.0, 15.7, 125.0, None),
    _Sheet(r"\bl4\b", 300.0, 30.3, 121.0, 121.0),
)


def datasheet_ceilings(device_name: str) -> Ceilings | None:
    name = device_name.lower().replace("-", " ")
    for sheet in _DATASHEETS:
        if not re.search(sheet.pattern, name):
            continue
        compute = {
            Dtype.FLOAT32.value: Ceiling(sheet.fp32_tflops * 1e12, "datasheet", "FP32"),
            Dtype.FLOAT16.value: Ceiling(
                sheet.fp16_tflops * 1e12, "datasheet", "FP16 tensor, dense"
            ),
        }
        if sheet.bf16_tflops is not None:
            compute[Dtype.BFLOAT16.value] = Ceiling(
                sheet.bf16_tflops * 1e12, "datasheet", "BF16 tensor, dense"
            )
        return Ceilings(device_name, Ceiling(sheet.gbps, "datasheet", "DRAM"), compute, None)
    return None


def gpu_name(meta: Mapping[str, Any]) -> str | None:
    devices = meta.get("cuda_devices") or []
    if devices and isinstance(devices[0], Mapping):
        name = devices[0].get("name")
        return str(name) if name else None
    return None


def ceilings_for(meta: Mapping[str, Any], device: str) -> Ceilings | None:
    """Measured ceilings when the run has them; datasheet ones for a known GPU; else None.

    device is the rows' device column ("cpu", "cuda", "cuda:0"); a CPU run gets no
    datasheet ceilings (CPU peaks depend on too much we do not record).
    """
    measured = measured_ceilings(meta, device)
    if measured is not None:
        return measured
    if not device.startswith("cuda"):
        return None
    name = gpu_name(meta)
    return datasheet_ceilings(name) if name else None
