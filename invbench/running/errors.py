"""What an exception becomes in a result row: a one-line reason and a status.

Every level of the engine, and the isolated workers, classify failures here, so a
CUDA error reads ``crashed`` and an out-of-memory error ``oom`` wherever it happens.
"""

from __future__ import annotations

import torch

from invbench.core.spec import Status

MAX_REASON_CHARS = 300


def one_line(exc: BaseException) -> str:
    """``TypeName: message`` on one line, cut to MAX_REASON_CHARS characters."""
    text = " ".join(str(exc).split())
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def is_cuda_error(exc: BaseException) -> bool:
    """A CUDA error: the context is lost, so nothing after it in this process is trusted."""
    return type(exc).__name__ == "AcceleratorError" or "CUDA error" in str(exc)


def classify(exc: BaseException) -> Status:
    """oom for out-of-memory, crashed for a CUDA error, else error."""
    if is_oom(exc):
        return Status.OOM
    if is_cuda_error(exc):
        return Status.CRASHED
    return Status.ERROR
