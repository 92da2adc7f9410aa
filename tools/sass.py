"""Machine code of a compiled kernel, read without a GPU: the tools' shared part.

Disassembles a cubin with the nvdisasm and cuobjdump that Triton bundles with its
NVIDIA backend, and finds the innermost loop that holds multiply-adds.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import triton

_INSTR = re.compile(r"^\s*/\*[0-9a-f]+\*/\s*(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")
_LABEL = re.compile(r"^(\.L_x_\d+):")


@dataclass(frozen=True)
class Disassembly:
    sass: str
    registers: int  # per thread; -1 if cuobjdump did not say
    stack_bytes: int  # local memory per thread: > 0 means spills

    def opcodes(self) -> list[str]:
        """Every instruction's opcode, without its modifiers (LDG.E -> LDG)."""
        return [m.group(1) for m in map(_INSTR.match, self.sass.splitlines()) if m]


def _tool(name: str) -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def disassemble(cubin: bytes) -> Disassembly:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run(
            [_tool("nvdisasm"), "-c", f.name], capture_output=True, text=True, check=True
        ).stdout
        usage = subprocess.run(
            [_tool("cuobjdump"), "--dump-resource-usage", f.name],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    registers = re.search(r"REG:(\d+)", usage)
    stack = re.search(r"STACK:(\d+)", usage)
    return Disassembly(
        sass,
        int(registers.group(1)) if registers else -1,
        int(stack.group(1)) if stack else -1,
    )


def innermost_fma_loop(sass: str) -> list[str]:
    """Opcodes of the shortest loop (label ... backward branch to it) holding an FFMA."""
    lines = sass.splitlines()
    best: list[str] | None = None
    for i, line in enumerate(lines):
        label = _LABEL.match(line)
        if not label:
            continue
        for j in range(i + 1, len(lines)):
            if "BRA" in lines[j] and f"{label.group(1)})" in lines[j]:
                ops = [m.group(1) for m in map(_INSTR.match, lines[i + 1 : j + 1]) if m]
                if "FFMA" in ops and (best is None or len(ops) < len(best)):
                    best = ops
                break
    return best or []
