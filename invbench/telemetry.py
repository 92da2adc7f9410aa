"""NVML access (package nvidia-ml-py, module pynvml), imported lazily.

Without NVML (no NVIDIA driver, or the library missing) every function returns a
reason instead of raising.
"""

from __future__ import annotations

from typing import Any


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
