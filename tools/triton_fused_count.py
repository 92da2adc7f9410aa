"""Static code statistics of the fused inference kernel (triton_fused), without a GPU.

Compiles the kernel for a CUDA target (sm_90 by default) with Triton's bundled
ptxas (``compile_offline``), disassembles it with the bundled nvdisasm and reads
registers and stack (spill) bytes per thread from cuobjdump. Per dtype and resnet
layer shape it reports:

- registers and stack bytes per thread (stack > 0: the kernel spills);
- LDL/STL: local-memory loads and stores (spill traffic);
- tensor-core instructions (HMMA, HGMMA, any *MMA opcode);
- FFMA and all instructions of the whole kernel (NOPs left out);
- the innermost loop that holds FFMAs: its instructions per multiply-add.

    python tools/triton_fused_count.py --layer layer1 --dtype bf16
    python tools/triton_fused_count.py            # every layer, bf16 fp16 fp32

These are static counts of the machine code, not timings. --json for a machine-
readable list (tests/test_triton_fused_codegen.py uses it). Follows the installed
Triton version.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass

os.environ.pop("TRITON_INTERPRET", None)

import torch
import triton
from resnet_layers import LAYERS
from sass import disassemble, innermost_fma_loop

from invbench.backends.triton_fused_kernel import compile_offline

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class FusedStats:
    dtype: str
    layer: str
    registers: int
    stack_bytes: int
    ldl: int
    stl: int
    tensor_core: int  # HMMA, HGMMA, ...: any opcode with MMA in its name
    ffma: int
    instructions: int
    loop_instructions: int  # the innermost loop holding FFMAs
    loop_ffma: int

    @property
    def loop_per_ffma(self) -> float:
        return self.loop_instructions / max(self.loop_ffma, 1)

    def line(self) -> str:
        return (
            f"{self.dtype:4} {self.layer:10} {self.registers:3} reg {self.stack_bytes:5} B stack "
            f"{self.ldl:5} LDL {self.stl:5} STL {self.tensor_core:4} MMA {self.ffma:6} FFMA "
            f"{self.instructions:6} instr; inner loop {self.loop_instructions} instr "
            f"{self.loop_ffma} FFMA ({self.loop_per_ffma:.2f}/FFMA)"
        )


def count(dtype: str, layer: str, arch: int = 90) -> FusedStats:
    c, _h, stride, k, g = LAYERS[layer]
    asm = compile_offline(DTYPES[dtype], c, k, stride, g, arch=arch)
    code = disassemble(asm["cubin"])
    ops = Counter(op for op in code.opcodes() if op != "NOP")
    loop = innermost_fma_loop(code.sass)
    return FusedStats(
        dtype=dtype,
        layer=layer,
        registers=code.registers,
        stack_bytes=code.stack_bytes,
        ldl=ops["LDL"],
        stl=ops["STL"],
        tensor_core=sum(n for op, n in ops.items() if "MMA" in op),
        ffma=ops["FFMA"],
        instructions=sum(ops.values()),
        loop_instructions=len(loop),
        loop_ffma=loop.count("FFMA"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=list(DTYPES), action="append")
    parser.add_argument("--layer", choices=list(LAYERS), action="append")
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90")
    parser.add_argument("--json", action="store_true", help="one JSON list instead of lines")
    args = parser.parse_args()
    stats = [
        count(dtype, layer, args.arch)
        for dtype in args.dtype or list(DTYPES)
        for layer in args.layer or list(LAYERS)
    ]
    if args.json:
        print(json.dumps([asdict(s) for s in stats]))
    else:
        print(f"triton {triton.__version__}, sm_{args.arch}: static counts, not timings")
        for s in stats:
            print(s.line())


if __name__ == "__main__":
    main()
