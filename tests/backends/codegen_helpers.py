"""Shared by the codegen tests: run a tools/ script that compiles kernels for sm_90."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def needs_nvidia_tools(triton: Any) -> pytest.MarkDecorator:
    """Skip unless this triton bundles ptxas, nvdisasm and cuobjdump."""
    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return pytest.mark.skipif(
        not all((bin_dir / t).exists() for t in ("ptxas", "nvdisasm", "cuobjdump")),
        reason="this triton has no bundled NVIDIA tools (ptxas, nvdisasm, cuobjdump)",
    )


def tool_json(script: str, *args: str, timeout: float = 600) -> list[dict[str, Any]]:
    """The --json output of tools/<script>, run without TRITON_INTERPRET."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / script), "--json", *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows: list[dict[str, Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return rows
