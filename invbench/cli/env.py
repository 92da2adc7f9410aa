"""`invbench env`: what this machine is and can run."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from invbench.cli.console import out


def env(
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
) -> None:
    """What this machine is and can run: GPU, driver, NVML, nvcc, ninja, triton, compiler."""
    from rich.table import Table

    from invbench.measure.environment import environment

    info = environment()
    if as_json:
        print(json.dumps(info, indent=2, default=str))
        return
    table = Table(title="environment", show_header=False)
    table.add_column("what")
    table.add_column("value")
    gpus = info["cuda_devices"]
    nvml = info["nvml"]
    rows = [
        (
            "invbench",
            f"{info['invbench_version']} (commit {info['git']['short_commit']}"
            f"{', dirty' if info['git']['dirty'] else ''})",
        ),
        ("python", info["python"]),
        ("torch", f"{info['torch']} (CUDA {info['torch_cuda'] or 'none'}, cuDNN {info['cudnn']})"),
        ("triton", info["triton"] or "not installed"),
        (
            "cpu",
            f"{info['cpu']} ({info['cpu_count']} cores, torch threads {info['torch_threads']})",
        ),
        (
            "gpu",
            "; ".join(
                f"{g['name']} sm_{g['capability'].replace('.', '')}, {g['sm_count']} SMs"
                for g in gpus
            )
            or "none visible to torch",
        ),
        (
            "nvml",
            nvml["unavailable_reason"]
            or "; ".join(f"{d.get('name')} driver {d.get('driver')}" for d in nvml["devices"]),
        ),
        ("nvcc", info["nvcc"] or "not found"),
        ("ninja", info.get("ninja") or "not found (the cuda_ext build needs it)"),
        ("c++ compiler", info["compiler"] or "not found"),
    ]
    for what, value in rows:
        table.add_row(what, str(value))
    out.print(table)
