"""Built-in backends. A new backend is one module here plus one line in register_builtins()."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from invbench.backends.registry import Registry


def register_builtins(registry: Registry) -> None:
    from invbench.backends.compiled import CompileBackend
    from invbench.backends.conv import Conv3x3Backend, DepthwiseConvBackend
    from invbench.backends.triton_fused import TritonFusedBackend
    from invbench.backends.unfold import UnfoldBackend

    registry.register(UnfoldBackend())
    registry.register(CompileBackend())
    registry.register(Conv3x3Backend())
    registry.register(DepthwiseConvBackend())
    registry.register(TritonFusedBackend())
