"""`compile`: torch.compile of the unfold algorithm, the tool a user would reach for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from invbench.backends.base import ALL_FLOATS, InvolutionBackend
from invbench.backends.unfold import unfold_involution
from invbench.core.spec import Geometry

# One compiled graph per shape; the suites hold more shapes than dynamo's default
# recompile limit, past which it would silently fall back to eager.
_RECOMPILE_LIMIT = 256


class CompileBackend(InvolutionBackend):
    name = "compile"
    description = "torch.compile (inductor, static shapes) of the unfold algorithm"
    dtypes = ALL_FLOATS

    def __init__(self) -> None:
        self._fn: Callable[..., Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The compiled function is a cache of this process: a worker process that
        # receives this backend (--isolate, a cluster shard) compiles its own.
        return {**self.__dict__, "_fn": None}

    def _compiled(self) -> Callable[..., Any]:
        if self._fn is None:
            import torch._dynamo.config as dynamo_config

            for knob in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
                if hasattr(dynamo_config, knob):
                    setattr(
                        dynamo_config, knob, max(getattr(dynamo_config, knob), _RECOMPILE_LIMIT)
                    )
            self._fn = torch.compile(unfold_involution, dynamic=False)
        return self._fn

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        out: torch.Tensor = self._compiled()(
            x, weight, geom.kernel_size, geom.stride, geom.pad, geom.dilation
        )
        return out
