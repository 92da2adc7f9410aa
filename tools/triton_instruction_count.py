"""Count the instructions of the triton backend's innermost loops, without a GPU.

Compiles each kernel for a CUDA target with Triton's bundled ptxas, disassembles
the cubin with the bundled nvdisasm and reports, for the innermost loop that
holds multiply-adds, its instruction count per multiply-add (FFMA and FMUL).

    python tools/triton_instruction_count.py --layer layer1 --dtype bf16 --dtype fp32

Also reports registers and stack (spill) bytes per thread; --json for a machine-readable
list (tests/test_triton_codegen.py uses it).

Needs triton with its NVIDIA backend; uses Triton's compiler API, so it follows
the installed Triton version.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass

os.environ.pop("TRITON_INTERPRET", None)

import triton
from resnet_layers import LAYERS
from sass import disassemble, innermost_fma_loop
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from invbench.backends import triton_kernels as tk
from invbench.core.spec import Geometry

KERNELS = {
    "fwd": (tk._fwd_kernel, ("x_ptr", "w_ptr", "out_ptr")),
    "grad_x": (tk._grad_x_kernel, ("go_ptr", "w_ptr", "gx_ptr")),
    "grad_w": (tk._grad_w_kernel, ("go_ptr", "x_ptr", "gw_ptr")),
}


@dataclass(frozen=True)
class LoopStats:
    """The innermost multiply-add loop of one compiled kernel."""

    kernel: str
    dtype: str
    layer: str
    block_p: int
    warps: int
    channel_axis: int
    instructions: int
    multiply_adds: int
    loads: int
    registers: int
    stack_bytes: int  # local memory per thread: > 0 means spills

    @property
    def per_multiply_add(self) -> float:
        return self.instructions / max(self.multiply_adds, 1)

    def line(self) -> str:
        return (
            f"{self.kernel:6} {self.dtype:4} {self.layer:10} BLOCK_P={self.block_p} "
            f"warps={self.warps} channel axis {self.channel_axis}: {self.instructions} "
            f"instructions, {self.multiply_adds} multiply-adds, {self.loads} loads -> "
            f"{self.per_multiply_add:.2f} per multiply-add; {self.registers} registers, "
            f"{self.stack_bytes} bytes of stack"
        )


def count(kernel: str, dtype: str, layer: str, block_p: int, warps: int, arch: int) -> LoopStats:
    c, h, stride, k, g = LAYERS[layer]
    geom = Geometry(64, c, h, h, k, stride=stride, groups=g)
    fn, pointers = KERNELS[kernel]
    constants: dict[str, int | bool] = dict(tk._shape_args(geom))
    constants.pop("B")
    constants["BLOCK_C"] = tk._block_c(geom, tk.LaunchMode.AUTOTUNE)
    constants["BLOCK_P"] = block_p
    constants["CH_AXIS"] = tk.channel_axis()
    if kernel == "grad_w":
        constants["ONE_CHUNK"] = tk._block_c(geom, tk.LaunchMode.AUTOTUNE) >= geom.group_channels
    signature = {p: "*" + dtype for p in pointers} | {"B": "i32"}
    signature |= {name: "constexpr" for name in constants}
    compiled = triton.compile(
        ASTSource(triton.jit(fn), signature, constexprs=constants),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": warps, "enable_fp_fusion": tk.FP_FUSION},
    )
    code = disassemble(compiled.asm["cubin"])
    ops = innermost_fma_loop(code.sass)
    tally = Counter(ops)
    return LoopStats(
        kernel=kernel,
        dtype=dtype,
        layer=layer,
        block_p=block_p,
        warps=warps,
        channel_axis=int(constants["CH_AXIS"]),
        instructions=len(ops),
        multiply_adds=tally["FFMA"] + tally["FMUL"],
        loads=tally["LDG"],
        registers=code.registers,
        stack_bytes=code.stack_bytes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", choices=[*KERNELS, "all"], default="all")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], action="append")
    parser.add_argument("--layer", choices=list(LAYERS), default="layer1")
    parser.add_argument("--block-p", type=int, default=128)
    parser.add_argument("--warps", type=int, default=4)
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90")
    parser.add_argument("--json", action="store_true", help="one JSON list instead of lines")
    args = parser.parse_args()
    stats = [
        count(kernel, dtype, args.layer, args.block_p, args.warps, args.arch)
        for dtype in args.dtype or ["bf16"]
        for kernel in (KERNELS if args.kernel == "all" else [args.kernel])
    ]
    if args.json:
        print(json.dumps([asdict(s) for s in stats]))
    else:
        for s in stats:
            print(s.line())


if __name__ == "__main__":
    main()
