"""NVML access (package nvidia-ml-py, module pynvml), imported lazily.

Static facts of every GPU for meta.json (nvml_devices), the processes on a GPU, and
NvmlSampler, which polls clocks, power, temperature, utilisation, memory and
throttle reasons from a background thread while a case runs. Clocks, power and
throttling of a row come from busy readings only: taken while the GPU was running a
timed batch (the timer says when), never across the idle gaps between batches, where
the SM clock drops. Without NVML (no NVIDIA driver, or the library missing) every
function returns a reason instead of raising.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch


def _nvml() -> Any:
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_devices() -> tuple[list[dict[str, Any]], str | None]:
    """Static facts of every GPU NVML sees, and None; or [] and the reason NVML is unusable."""
    try:
        nv = _nvml()
    except ImportError:
        return [], "nvidia-ml-py (pynvml) is not installed"
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return [], f"NVML unavailable: {exc}"
    devices = []
    try:
        driver = _text(nv.nvmlSystemGetDriverVersion())
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            info: dict[str, Any] = {"index": i, "driver": driver}
            probes = {
                "name": lambda h=h: _text(nv.nvmlDeviceGetName(h)),
                "uuid": lambda h=h: _text(nv.nvmlDeviceGetUUID(h)),
                "memory_total_bytes": lambda h=h: int(nv.nvmlDeviceGetMemoryInfo(h).total),
                "memory_bus_width_bits": lambda h=h: int(nv.nvmlDeviceGetMemoryBusWidth(h)),
                "power_limit_w": lambda h=h: nv.nvmlDeviceGetPowerManagementLimit(h) / 1000,
                "max_sm_clock_mhz": lambda h=h: int(
                    nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM)
                ),
                "max_mem_clock_mhz": lambda h=h: int(
                    nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM)
                ),
                "compute_capability": lambda h=h: ".".join(
                    map(str, nv.nvmlDeviceGetCudaComputeCapability(h))
                ),
                "ecc_enabled": lambda h=h: bool(nv.nvmlDeviceGetEccMode(h)[0]),
                "mig_enabled": lambda h=h: bool(nv.nvmlDeviceGetMigMode(h)[0]),
                "other_processes": lambda h=h: len(nv.nvmlDeviceGetComputeRunningProcesses(h)),
            }
            for key, probe in probes.items():
                try:
                    info[key] = probe()
                except Exception as exc:  # a field this GPU or driver does not report
                    info[key] = f"unavailable: {type(exc).__name__}"
            devices.append(info)
    except Exception as exc:
        return devices, f"NVML query failed: {exc}"
    return devices, None


# --- sampling while a case runs -------------------------------------------------------

# Clock-event reason bits (nvmlClocksEventReason*) and the names rows record.
_REASONS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clock",
    0x2: "applications_clocks",
    0x200: "board_limit",
    0x400: "reliability",
}
# The reasons that mean the clocks were pulled down by power or heat.
THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80


def reason_names(mask: int) -> list[str]:
    """Names of the active clock-event reasons in an NVML bitmask (idle left out)."""
    return [name for bit, name in sorted(_REASONS.items()) if mask & bit]


@dataclass(frozen=True)
class Reading:
    """One poll of the device."""

    sm_mhz: float | None
    mem_mhz: float | None
    temp_c: float | None
    power_w: float | None
    util_pct: float | None
    mem_used_bytes: int | None
    reasons: int | None
    timing: bool  # taken while the label's samples were being timed
    busy: bool = False  # and while the GPU was still running one of its batches


@dataclass(frozen=True)
class RowTelemetry:
    """What a result row records from NVML; source says 'nvml' or why it is unavailable."""

    source: str
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    temp_c_max: float | None = None
    power_w_mean: float | None = None
    gpu_util_pct: float | None = None
    energy_j: float | None = None
    throttled: bool | None = None
    throttle_reasons: str = ""
    nvml_mem_peak_bytes: int | None = None
    n_readings: int = 0
    busy_readings: int = 0  # readings the clocks, power and throttling are summarised over
    energy_resolution_s: float | None = None  # the energy counter's update period

    def row_fields(self) -> dict[str, Any]:
        """The result-row columns this telemetry fills (both runners use it)."""
        return dict(
            telemetry=self.source,
            sm_clock_mhz=self.sm_clock_mhz,
            mem_clock_mhz=self.mem_clock_mhz,
            temp_c_max=self.temp_c_max,
            power_w_mean=self.power_w_mean,
            gpu_util_pct=self.gpu_util_pct,
            energy_j=self.energy_j,
            throttled=self.throttled,
            throttle_reasons=self.throttle_reasons,
            nvml_mem_peak_bytes=self.nvml_mem_peak_bytes,
            nvml_busy_readings=self.busy_readings,
            energy_resolution_s=self.energy_resolution_s,
        )


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # a field this GPU or driver does not report
        return None


def nvml_index(device: torch.device) -> int:
    """NVML's index of a torch CUDA device (they differ under CUDA_VISIBLE_DEVICES)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        nv = _nvml()
        uuid = str(torch.cuda.get_device_properties(index).uuid).lower().removeprefix("gpu-")
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            if _text(nv.nvmlDeviceGetUUID(h)).lower().removeprefix("gpu-") == uuid:
                return i
    except Exception:  # older torch without .uuid, or NVML missing: fall back below
        pass
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    parts = [p.strip() for p in visible.split(",") if p.strip()]
    if index < len(parts) and parts[index].isdigit():
        return int(parts[index])
    return index


def gpu_processes(index: int) -> list[dict[str, Any]] | None:
    """Every process holding a context on GPU `index`; None when NVML cannot tell."""
    try:
        nv = _nvml()
        h = nv.nvmlDeviceGetHandleByIndex(index)
        procs = list(nv.nvmlDeviceGetComputeRunningProcesses(h))
        procs += list(_try(lambda: nv.nvmlDeviceGetGraphicsRunningProcesses(h)) or [])
    except Exception:
        return None
    out: dict[int, dict[str, Any]] = {}
    for p in procs:
        pid = int(p.pid)
        name = _try(lambda: _text(nv.nvmlSystemGetProcessName(pid)))  # noqa: B023
        out[pid] = {"pid": pid, "name": name, "used_bytes": getattr(p, "usedGpuMemory", None)}
    return list(out.values())


def other_processes(
    processes: list[dict[str, Any]], own_pids: Iterable[int]
) -> tuple[int, list[dict[str, Any]]]:
    """How many of processes are not this run's, and those that can be told apart.

    Inside a container NVML reports host process ids, so none of the run's own ids
    appear; then the run's own contexts (one per id in own_pids) are subtracted
    from the count instead.
    """
    own = set(own_pids)
    others = [p for p in processes if p["pid"] not in own]
    if len(others) < len(processes):
        return len(others), others
    return max(0, len(processes) - len(own)), processes


# Energy is reported only over timed windows at least this many counter updates long:
# a counter that steps every 100 ms cannot split 50 ms of work between two backends.
ENERGY_MIN_UPDATES = 10


class NvmlSampler:
    """Polls one GPU from a background thread and files each reading under a label.

    The runner opens a window per backend (window(label, timing=...)); readings taken
    inside a timing window count for that backend's clocks, power and throttling only
    while the timer holds busy() open and the GPU is still running the batch. The
    timer enters busy() when it starts waiting for a batch, which takes one reading
    at once (last_batch_sm_mhz: the clock of that batch). Windows opened for preparing
    a backend count for its memory only.

    A sampler that no timer reports busy time to counts every reading of the timing
    windows instead (one at each window's start and the polls), as older runners did.

    Energy is the difference of NVML's energy counter across the timing windows. The
    counter's update period is learnt from the polls (energy_resolution_s); a row gets
    energy only when its timed windows span ENERGY_MIN_UPDATES updates. Without NVML,
    `reason` says why and every row gets RowTelemetry(source='unavailable: ...').
    """

    def __init__(
        self,
        index: int,
        interval_s: float = 0.02,
        ignore_pids: Iterable[int] = (),
        unavailable: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index = index
        self.interval_s = interval_s
        self.ignore_pids = tuple(ignore_pids)
        self.reason: str | None = None
        self.max_sm_clock_mhz: float | None = None
        self.last_batch_sm_mhz: float | None = None
        self.clock = clock
        self._nv: Any = None
        self._handle: Any = None
        self._lock = threading.Lock()
        self._label: str | None = None
        self._timing = False
        self._busy_fn: Callable[[], bool] | None = None
        self._hooked = False  # a timer reports busy time (else: every timing reading counts)
        self._readings: dict[str, list[Reading]] = {}
        self._energy_mj: dict[str, float] = {}
        self._energy_window_s: dict[str, float] = {}
        self._energy_last: float | None = None
        self._energy_steps: list[float] = []  # when the counter was seen to change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if unavailable is not None:
            self.reason = unavailable
            return
        try:
            self._nv = _nvml()
            self._handle = self._nv.nvmlDeviceGetHandleByIndex(index)
        except ImportError:
            self.reason = "nvidia-ml-py (pynvml) is not installed"
        except Exception as exc:
            self.reason = f"NVML unavailable: {exc}"
        if self._nv is not None:
            clock_mhz = _try(lambda: self._nv.nvmlDeviceGetMaxClockInfo(self._handle, 1))
            self.max_sm_clock_mhz = float(clock_mhz) if clock_mhz else None
            reasons = getattr(self._nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
            self._reasons_fn = reasons or self._nv.nvmlDeviceGetCurrentClocksThrottleReasons

    @classmethod
    def unavailable(cls, reason: str) -> NvmlSampler:
        return cls(-1, unavailable=reason)

    @property
    def available(self) -> bool:
        return self._nv is not None and self.reason is None

    def read(self) -> Reading:
        nv, h = self._nv, self._handle
        mem = _try(lambda: nv.nvmlDeviceGetMemoryInfo(h))
        util = _try(lambda: nv.nvmlDeviceGetUtilizationRates(h))
        power = _try(lambda: nv.nvmlDeviceGetPowerUsage(h))
        return Reading(
            sm_mhz=_try(lambda: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))),
            mem_mhz=_try(lambda: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM))),
            temp_c=_try(lambda: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))),
            power_w=power / 1000 if power is not None else None,
            util_pct=float(util.gpu) if util is not None else None,
            mem_used_bytes=int(mem.used) if mem is not None else None,
            reasons=_try(lambda: int(self._reasons_fn(h))),
            timing=self._timing,
        )

    def energy_mj(self) -> float | None:
        return _try(lambda: float(self._nv.nvmlDeviceGetTotalEnergyConsumption(self._handle)))

    @property
    def energy_resolution_s(self) -> float | None:
        """The energy counter's update period (median of the intervals seen), or None."""
        with self._lock:
            steps = list(self._energy_steps)
        if len(steps) < 3:
            return None
        return statistics.median(b - a for a, b in itertools.pairwise(steps))

    def _watch_energy(self) -> None:
        value = self.energy_mj()
        if value is None:
            return
        now = self.clock()
        with self._lock:
            if self._energy_last is not None and value != self._energy_last:
                self._energy_steps = [*self._energy_steps[-31:], now]
            self._energy_last = value

    def _record(self) -> None:
        self._watch_energy()
        with self._lock:
            busy_fn = self._busy_fn if self._timing else None
        reading = self.read()
        if busy_fn is not None:
            reading = replace(reading, busy=bool(busy_fn()))  # still busy once read
        with self._lock:
            wanted = reading.busy or not self._timing or not self._hooked
            if self._label is not None and wanted:
                self._readings.setdefault(self._label, []).append(reading)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._record()

    def start(self) -> None:
        if self.available and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    @contextlib.contextmanager
    def window(self, label: str, timing: bool) -> Iterator[None]:
        """File readings under label while the block runs.

        A preparing window (timing=False) takes one reading at once (memory); a timing
        window takes none itself: its readings come from busy().
        """
        if not self.available:
            yield
            return
        with self._lock:
            self._label, self._timing = label, timing
        if not timing or not self._hooked:
            self._record()
        t0 = self.clock()
        e0 = self.energy_mj() if timing else None
        try:
            yield
        finally:
            e1 = self.energy_mj() if timing else None
            spent = self.clock() - t0
            with self._lock:
                self._label, self._timing, self._busy_fn = None, False, None
                if e0 is not None and e1 is not None:
                    self._energy_mj[label] = self._energy_mj.get(label, 0.0) + e1 - e0
                    self._energy_window_s[label] = self._energy_window_s.get(label, 0.0) + spent

    @contextlib.contextmanager
    def busy(self, still_busy: Callable[[], bool]) -> Iterator[None]:
        """The GPU is running a timed batch while the block runs (the timer waits in it).

        One reading is taken at once; it counts, and sets last_batch_sm_mhz, only if
        still_busy() holds once it is read.
        """
        self.last_batch_sm_mhz = None
        if not self.available:
            yield
            return
        self._hooked = True
        with self._lock:
            timing = self._timing and self._label is not None
            self._busy_fn = still_busy if timing else None
        if timing:
            reading = replace(self.read(), busy=bool(still_busy()))
            if reading.busy:
                self.last_batch_sm_mhz = reading.sm_mhz
                with self._lock:
                    if self._label is not None:
                        self._readings.setdefault(self._label, []).append(reading)
        try:
            yield
        finally:
            with self._lock:
                self._busy_fn = None

    def take(self, label: str) -> RowTelemetry:
        """Aggregate and forget the readings filed under label."""
        if not self.available:
            return RowTelemetry(source=f"unavailable: {self.reason}")
        resolution = self.energy_resolution_s
        with self._lock:
            readings = self._readings.pop(label, [])
            energy = self._energy_mj.pop(label, None)
            window_s = self._energy_window_s.pop(label, 0.0)
        if resolution is None or window_s < ENERGY_MIN_UPDATES * resolution:
            energy = None  # too short a window for the counter's steps
        if self._hooked:
            busy = [r for r in readings if r.busy]
        else:  # no timer reports busy time: every reading of the timing windows
            busy = [r for r in readings if r.timing] or readings
        masks = [r.reasons for r in busy if r.reasons is not None]
        mask = 0
        for m in masks:
            mask |= m
        temps = [r.temp_c for r in busy if r.temp_c is not None]
        mems = [r.mem_used_bytes for r in readings if r.mem_used_bytes is not None]
        return RowTelemetry(
            source="nvml",
            sm_clock_mhz=_mean([r.sm_mhz for r in busy]),
            mem_clock_mhz=_mean([r.mem_mhz for r in busy]),
            temp_c_max=max(temps) if temps else None,
            power_w_mean=_mean([r.power_w for r in busy]),
            gpu_util_pct=_mean([r.util_pct for r in busy]),
            energy_j=energy / 1e3 if energy is not None else None,
            throttled=bool(mask & THROTTLE_MASK) if masks else None,
            throttle_reasons=",".join(reason_names(mask)),
            nvml_mem_peak_bytes=max(mems) if mems else None,
            n_readings=len(readings),
            busy_readings=sum(r.busy for r in readings),
            energy_resolution_s=resolution,
        )

    def other_processes(self) -> int | None:
        """Processes on the GPU that are not this run's (see other_processes())."""
        if not self.available:
            return None
        processes = gpu_processes(self.index)
        if processes is None:
            return None
        return other_processes(processes, (os.getpid(), *self.ignore_pids))[0]
