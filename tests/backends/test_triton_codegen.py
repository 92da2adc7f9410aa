"""What the installed Triton makes of the triton backend's kernels, compiled for sm_90.

No GPU is needed: tools/triton_instruction_count.py compiles each kernel with
Triton's bundled ptxas and counts the instructions of its innermost multiply-add
loop in the disassembly. A tile layout that splits a pixel's channels across
threads (what Triton <= 3.6 did to the original channels-first tiles) shows up
here as three to four times the instructions per multiply-add, long before a GPU
run would show it as time.
"""

from __future__ import annotations

import pytest

from .codegen_helpers import needs_nvidia_tools, tool_json

triton = pytest.importorskip("triton")

pytestmark = needs_nvidia_tools(triton)

# Instructions per multiply-add in the innermost loop: what the kernels reach (fp32
# 2.5-3.0, bf16 3.6-4.2 with Triton 3.6 and 3.9 at layer1) with some margin, and
# far below what a channel-splitting layout costs (8 or more).
BUDGET = {"fp32": 3.3, "bf16": 4.6}


def _stats(*args: str) -> list[dict[str, object]]:
    return tool_json("triton_instruction_count.py", *args)


@pytest.mark.parametrize("layer", ["layer1", "layer2-1st"])
def test_inner_loops_keep_each_pixels_channels_in_one_thread(layer: str) -> None:
    stats = _stats("--layer", layer, "--dtype", "fp32", "--dtype", "bf16")
    assert {(s["kernel"], s["dtype"]) for s in stats} == {
        (k, d) for k in ("fwd", "grad_x", "grad_w") for d in ("fp32", "bf16")
    }
    for s in stats:
        per_mac = int(s["instructions"]) / int(s["multiply_adds"])  # type: ignore[call-overload]
        # K=7, 16 channels per group, one pixel per thread: 7 taps x 16 channels
        assert s["multiply_adds"] == 112, s
        assert per_mac <= BUDGET[str(s["dtype"])], s
        assert s["stack_bytes"] == 0 and 0 < int(s["registers"]) <= 128, s  # type: ignore[call-overload]
