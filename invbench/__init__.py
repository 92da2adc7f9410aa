"""invbench: trustworthy numbers for involution and convolution kernels.

The public API is loaded on first use, so that `import invbench` (and the command
line's --help) does not pay for torch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from invbench.backends.base import Backend, InvolutionBackend, Workload
    from invbench.backends.registry import (
        ENTRY_POINT_GROUP,
        Registry,
        builtin_registry,
        default_registry,
    )
    from invbench.core.spec import Geometry
    from invbench.operator.ops import Involution, involution

__version__ = "0.1.0"

_PUBLIC = {
    "involution": "invbench.operator.ops",
    "Involution": "invbench.operator.ops",
    "Geometry": "invbench.core.spec",
    "Backend": "invbench.backends.base",
    "InvolutionBackend": "invbench.backends.base",
    "Workload": "invbench.backends.base",
    "Registry": "invbench.backends.registry",
    "builtin_registry": "invbench.backends.registry",
    "default_registry": "invbench.backends.registry",
    "ENTRY_POINT_GROUP": "invbench.backends.registry",
}

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "Geometry",
    "Involution",
    "InvolutionBackend",
    "Registry",
    "Workload",
    "__version__",
    "builtin_registry",
    "default_registry",
    "involution",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'invbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
