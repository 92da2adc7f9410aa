"""What this machine is and can run: recorded in meta.json and shown by `invbench env`."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from invbench.measure.telemetry import nvml_devices

_SOURCE_DIR = Path(__file__).resolve().parents[2]


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_state(directory: Path = _SOURCE_DIR) -> dict[str, Any]:
    """Commit of the invbench checkout, and whether it has uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(directory), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "short_commit": "nogit", "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "short_commit": commit[:8], "dirty": bool(status)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvcc_version() -> str | None:
    nvcc = shutil.which("nvcc") or (
        str(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc") if "CUDA_HOME" in os.environ else None
    )
    if not nvcc:
        return None
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    last = [line for line in out.stdout.splitlines() if line.strip()]
    return last[-1].strip() if last else None


def ninja_version() -> str | None:
    """The ninja that torch's extension builds run (cuda_ext needs it), or None."""
    ninja = shutil.which("ninja")
    if not ninja:
        return None
    try:
        out = subprocess.run([ninja, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def cuda_devices() -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(
            {
                "index": i,
                "name": p.name,
                "capability": f"{p.major}.{p.minor}",
                "sm_count": p.multi_processor_count,
                "memory_bytes": p.total_memory,
                "l2_cache_bytes": getattr(p, "L2_cache_size", None),
            }
        )
    return out


def environment() -> dict[str, Any]:
    """Everything a result needs to be interpreted and compared later."""
    gpus, nvml_reason = nvml_devices()
    return {
        "invbench_version": package_version("invbench"),
        "git": git_state(),
        "utc_time": datetime.now(UTC).isoformat(timespec="seconds"),
        "command_line": sys.argv,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": package_version("triton"),
        "nvcc": nvcc_version(),
        "ninja": ninja_version(),
        "compiler": shutil.which("c++") or shutil.which("g++"),
        "cuda_devices": cuda_devices(),
        "nvml": {"devices": gpus, "unavailable_reason": nvml_reason},
    }


def device_identity(device: torch.device) -> dict[str, str]:
    """Where rows are measured: host, the device's model, and a GPU's UUID (nvidia-smi's form).

    A CPU has no UUID: its rows are told apart by host and model.
    """
    if device.type != "cuda":
        return {"host": socket.gethostname(), "device_name": cpu_model(), "device_uuid": ""}
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    raw = str(getattr(props, "uuid", "") or "")
    uuid = raw if not raw or raw.upper().startswith("GPU-") else f"GPU-{raw}"
    return {"host": socket.gethostname(), "device_name": props.name, "device_uuid": uuid}
