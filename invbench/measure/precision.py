"""The float32 precision policy of a run: TF32 off unless asked for, cuDNN autotuning on.

torch lets cuDNN convolutions use TF32 (10-bit mantissa) for float32 inputs by default,
while the involution backends compute true float32. A float32 comparison of the two is
then not like for like, in the convolutions' favour. A run therefore switches TF32 off
for cuBLAS and cuDNN unless it is asked for (``--tf32``), and every row records whether
TF32 was allowed (``tf32``) and whether cuDNN picked its algorithms by timing them
(``cudnn_benchmark``).

The flags are set through torch's ``allow_tf32`` switches: mixing them with the newer
``fp32_precision`` settings makes torch raise when either is read, and compiled code
(torch.compile) still reads the former.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class PrecisionPolicy:
    """What a run asks for; on the CPU neither switch changes anything."""

    tf32: bool = False  # allow TF32 in float32 matmuls and convolutions
    cudnn_benchmark: bool = True  # cuDNN times its algorithms per shape (in the warm-up)

    def to_json(self) -> dict[str, Any]:
        return {"tf32": self.tf32, "cudnn_benchmark": self.cudnn_benchmark}


def _flags() -> tuple[bool, bool, bool]:
    b = torch.backends
    return bool(b.cuda.matmul.allow_tf32), bool(b.cudnn.allow_tf32), bool(b.cudnn.benchmark)


def _set(matmul_tf32: bool, cudnn_tf32: bool, benchmark: bool) -> None:
    b = torch.backends
    b.cuda.matmul.allow_tf32 = matmul_tf32
    b.cudnn.allow_tf32 = cudnn_tf32
    b.cudnn.benchmark = benchmark


@contextlib.contextmanager
def precision_policy(policy: PrecisionPolicy) -> Iterator[PrecisionPolicy]:
    """Apply the policy for the block; the flags as they were are restored afterwards."""
    saved = _flags()
    _set(policy.tf32, policy.tf32, policy.cudnn_benchmark)
    try:
        yield policy
    finally:
        _set(*saved)


def tf32_in_effect(dtype: str, device_type: str = "cuda") -> bool:
    """Whether a row ran with TF32 allowed: only float32 rows on a GPU can."""
    if dtype != "float32" or device_type != "cuda":
        return False
    matmul, cudnn, _ = _flags()
    return matmul or cudnn


def precision_fields(dtype: str, device_type: str) -> dict[str, Any]:
    """The row columns ``tf32`` and ``cudnn_benchmark``, read while the row runs."""
    gpu = device_type == "cuda"
    return {"tf32": tf32_in_effect(dtype, device_type), "cudnn_benchmark": gpu and _flags()[2]}
