"""Built-in backends. A new backend is one module here plus one line in BUILTINS."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from invbench.backends.registry import Registry

# "module:Class" of every built-in backend, in the order runs and tables show them.
BUILTINS = (
    "invbench.backends.unfold:UnfoldBackend",
    "invbench.backends.compiled:CompileBackend",
    "invbench.backends.conv:Conv3x3Backend",
    "invbench.backends.conv:DepthwiseConvBackend",
    "invbench.backends.triton_backend:TritonBackend",
    "invbench.backends.cuda_ext:CudaExtBackend",
    "invbench.backends.cuda_ext:CudaNaiveBackend",
    "invbench.backends.triton_fused:TritonFusedBackend",
)


def register_builtins(registry: Registry) -> None:
    """Import and register each built-in backend (their heavy dependencies stay lazy)."""
    for spec in BUILTINS:
        module, _, cls = spec.partition(":")
        registry.register(getattr(importlib.import_module(module), cls)())
