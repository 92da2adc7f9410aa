"""What the installed Triton makes of the fused inference kernel, compiled for sm_90.

No GPU is needed: tools/triton_fused_count.py compiles the kernel with Triton's
bundled ptxas and reads registers, stack and the instruction mix of the machine
code. A kernel that spills (stack > 0: local-memory loads and stores in every
group) is far from the fused layer's memory-floor target long before a GPU run
would show it as time.
"""

from __future__ import annotations

import re

import pytest

from .codegen_helpers import needs_nvidia_tools, tool_json

triton = pytest.importorskip("triton")

pytestmark = needs_nvidia_tools(triton)


def _triton_before(major: int, minor: int) -> bool:
    m = re.match(r"(\d+)\.(\d+)", triton.__version__)
    return m is not None and (int(m.group(1)), int(m.group(2))) < (major, minor)


def _stats(*args: str) -> dict[str, dict[str, int]]:
    return {row["layer"]: row for row in tool_json("triton_fused_count.py", *args, timeout=300)}


@pytest.fixture(scope="module")
def bf16() -> dict[str, dict[str, int]]:
    return _stats("--dtype", "bf16", "--layer", "layer1", "--layer", "layer2-1st")


def test_bf16_layer1_does_not_spill_and_generates_on_tensor_cores(
    bf16: dict[str, dict[str, int]],
) -> None:
    s = bf16["layer1"]
    assert s["stack_bytes"] == 0 and s["ldl"] == 0 and s["stl"] == 0, s
    assert s["tensor_core"] > 0, s  # the reduce and span 1x1 convs: HGMMA on sm_90
    # the whole kernel: about 4000 instructions with Triton 3.6, 4300 with 3.9 (the
    # group loop: 16 channels x 49 taps of load, convert, multiply-add, ~3.8 each)
    assert s["instructions"] <= 5000, s


@pytest.mark.xfail(
    not _triton_before(3, 7),
    reason="Triton 3.7+ sums the taps as a tree and spills 72 B at stride 2",
    strict=False,
)
def test_bf16_stride_2_layer_does_not_spill(bf16: dict[str, dict[str, int]]) -> None:
    s = bf16["layer2-1st"]
    assert s["tensor_core"] > 0, s
    assert s["stack_bytes"] == 0 and s["ldl"] == 0 and s["stl"] == 0, s
