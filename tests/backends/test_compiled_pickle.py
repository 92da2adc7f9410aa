"""A compile backend that has compiled still travels to a worker process."""

from __future__ import annotations

import pickle

import torch

from invbench.backends.compiled import CompileBackend
from invbench.core.spec import Geometry


def test_a_used_compile_backend_pickles_without_its_compiled_function() -> None:
    backend = CompileBackend()
    g = Geometry(batch=1, channels=4, height=5, width=6, kernel_size=3, groups=2)
    x = torch.randn(g.x_shape)
    w = torch.randn(g.weight_shape)
    first = backend.apply(x, w, g)  # compiles: the backend now holds torch.compile's wrapper
    copy = pickle.loads(pickle.dumps(backend))
    assert copy._fn is None and backend._fn is not None
    torch.testing.assert_close(copy.apply(x, w, g), first)
