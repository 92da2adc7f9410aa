"""The ceilings record in a run's meta.json, read back: one writer, one reader.

`invbench.measure.ceilings.measure_ceilings` writes it while a run starts::

    {"device": "cuda", "copy": {"gbps": 3010.5, "bytes_moved": ..., "median_ms": ...},
     "matmul": [{"tflops": 51.2, "n": 8192, "dtype": "float32"}, ...]}

(`copy` is None with a `copy_error` when the copy failed; a failed matmul has an
`error` instead of `tflops`). This module reads exactly that shape, without torch, for
the engine's roofline_frac, the reports' "% of floor" columns and the roofline figure.
When a CUDA run has no usable record, the datasheet numbers of a few known GPUs stand
in, always labelled "datasheet"; a CPU run then gets no ceilings at all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
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

    def compute_for(self, dtype: str) -> Ceiling | None:
        return self.compute.get(dtype)

    @property
    def empty(self) -> bool:
        return self.bandwidth is None and not self.compute


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) and v > 0 else None


def copy_gbps(ceilings: Mapping[str, Any] | None) -> float | None:
    """The measured copy bandwidth (GB/s, bytes read plus written) of a record, or None."""
    if not isinstance(ceilings, Mapping) or not isinstance(ceilings.get("copy"), Mapping):
        return None
    return _positive(ceilings["copy"].get("gbps"))


def measured_ceilings(meta: Mapping[str, Any], device: str) -> Ceilings | None:
    """The ceilings a run measured, or None when its meta.json has no usable record."""
    raw = meta.get("ceilings")
    if not isinstance(raw, Mapping):
        return None
    gbps = copy_gbps(raw)
    bandwidth = Ceiling(gbps, "measured", "device copy") if gbps is not None else None
    compute: dict[str, Ceiling] = {}
    for item in raw.get("matmul") or ():
        if not isinstance(item, Mapping):
            continue
        tflops = _positive(item.get("tflops"))
        dtype = str(item.get("dtype", "")).removeprefix("torch.")
        if tflops is not None and dtype:
            compute.setdefault(dtype, Ceiling(tflops * 1e12, "measured", "matmul"))
    found = Ceilings(device, bandwidth, compute)
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
        return Ceilings(device_name, Ceiling(sheet.gbps, "datasheet", "DRAM"), compute)
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


def roof_ms(ceilings: Ceilings | None, flops: float, nbytes: float, dtype: str) -> float | None:
    """The fastest a row could run: the larger of its bytes over the bandwidth ceiling and
    its FLOPs over the compute ceiling of its dtype, in ms (a ceiling that is missing, such
    as a dtype whose matmul was not measured, drops out); None without any ceiling."""
    if ceilings is None:
        return None
    times = []
    if ceilings.bandwidth is not None and nbytes > 0:
        times.append(nbytes / (ceilings.bandwidth.value * 1e9))
    compute = ceilings.compute_for(dtype)
    if compute is not None and flops > 0:
        times.append(flops / compute.value)
    return max(times) * 1e3 if times else None
