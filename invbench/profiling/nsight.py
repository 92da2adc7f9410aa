"""Nsight Compute (ncu) and Nsight Systems (nsys) command lines for one profiled case.

Each command re-invokes ``invbench profile`` for the same case with
``--capture-only``: the case runs its warm-up inside the NVTX range
``invbench-warmup`` and the captured iterations inside ``invbench-capture``, with
no torch.profiler in the way. ncu then profiles only the kernels of the captured
range (``--nvtx --nvtx-include invbench-capture/``), only those whose name matches
the backend's kernels (``--kernel-name regex:...``), and at most
``--launch-count`` of them: by default one iteration's worth.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from invbench.profiling.plan import CAPTURE_RANGE, KernelRow, ProfilePlan

# ncu's launch count when the backend's kernels per iteration are unknown (CPU profile).
DEFAULT_NCU_LAUNCHES = 16


@dataclass(frozen=True)
class NsightCommand:
    tool: str  # "ncu" or "nsys"
    argv: tuple[str, ...]
    report: Path  # where the tool writes its report (with the tool's extension)
    log: Path
    label: str  # the backend(s) it captures

    @property
    def line(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class NsightOutcome:
    command: NsightCommand
    status: str  # "ran", "failed", "not found", "needs cuda"
    message: str


def capture_argv(plan: ProfilePlan, suite_arg: str, backends: Sequence[str]) -> list[str]:
    """The invbench invocation that replays this case for a capture."""
    argv = [
        sys.executable,
        "-m",
        "invbench",
        "profile",
        "--suite",
        suite_arg,
        "--case",
        plan.case.name,
    ]
    for b in backends:
        argv += ["--backend", b]
    argv += [
        "--device",
        "cuda",
        "--dtype",
        plan.dtype.value,
        "--mode",
        plan.mode.value,
        "--batch",
        str(plan.case.geometry.batch),
        "--warmup",
        str(plan.warmup),
        "--iters",
        str(plan.iters),
        "--capture-only",
    ]
    if plan.layer:
        argv.append("--layer")
    return argv


def kernel_identifier(name: str) -> str:
    """The bare function name of a demangled kernel name, as ncu's default name base shows it.

    'void at::native::im2col_kernel<float>(long, float const*, ...)' -> 'im2col_kernel'
    """
    cut = min((i for i in (name.find("<"), name.find("(")) if i >= 0), default=len(name))
    head = name[:cut].split()
    return head[-1].split("::")[-1] if head else name


def kernel_filter(
    kernels: Sequence[KernelRow], iters: int, on_device: bool, regex: str | None = None
) -> tuple[str, int | None]:
    """The kernel-name regex and its matching launches per iteration (None when unknown).

    Without a regex given, the filter names every kernel the GPU profile saw for the
    backend (copies and memsets aside); after a CPU profile, which sees no kernels,
    it matches every kernel of the captured range.
    """
    rows = [k for k in kernels if on_device and not k.name.startswith(("Memcpy", "Memset"))]
    if regex is None:
        idents = list(dict.fromkeys(kernel_identifier(k.name) for k in rows))
        regex = "|".join(re.escape(i) for i in idents) if idents else ".*"
    if not rows:
        return regex, None
    pattern = re.compile(regex)
    matched = sum(k.calls for k in rows if pattern.search(k.name))
    return regex, max(1, round(matched / iters)) if matched else None


def ncu_command(
    argv: Sequence[str],
    out_dir: Path,
    backend: str,
    regex: str,
    launch_count: int,
) -> NsightCommand:
    stem = out_dir / f"ncu-{_slug(backend)}"
    cmd = (
        "ncu",
        "--set",
        "full",
        "--nvtx",
        "--nvtx-include",
        f"{CAPTURE_RANGE}/",
        "--kernel-name",
        f"regex:{regex}",
        "--launch-count",
        str(launch_count),
        "--force-overwrite",
        "-o",
        str(stem),
        *argv,
    )
    return NsightCommand(
        "ncu", cmd, stem.with_name(stem.name + ".ncu-rep"), stem.with_suffix(".log"), backend
    )


def nsys_command(argv: Sequence[str], out_dir: Path, label: str) -> NsightCommand:
    stem = out_dir / f"nsys-{_slug(label)}"
    cmd = (
        "nsys",
        "profile",
        "--trace=cuda,nvtx",
        "--force-overwrite=true",
        "-o",
        str(stem),
        *argv,
    )
    return NsightCommand(
        "nsys", cmd, stem.with_name(stem.name + ".nsys-rep"), stem.with_suffix(".log"), label
    )


def run_command(command: NsightCommand, on_cuda: bool, timeout_s: float = 3600) -> NsightOutcome:
    """Run the tool when this machine can, storing its output in the log next to the report."""
    if not on_cuda:
        return NsightOutcome(
            command, "needs cuda", f"{command.tool} was not run: it needs a CUDA device"
        )
    if shutil.which(command.tool) is None:
        return NsightOutcome(
            command,
            "not found",
            f"{command.tool} not found on PATH: run the command above where Nsight is installed",
        )
    with command.log.open("w") as log:
        proc = subprocess.run(
            command.argv, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
        )
    if proc.returncode != 0 or not command.report.exists():
        return NsightOutcome(
            command,
            "failed",
            f"{command.tool} exited with status {proc.returncode}; see {command.log}",
        )
    return NsightOutcome(command, "ran", f"{command.tool} report: {command.report}")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)
