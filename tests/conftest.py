from __future__ import annotations

import atexit
import os
import sys

import pytest
import torch

from invbench.backends.registry import Registry, builtin_registry
from invbench.core.spec import Geometry

_INTERPRET_AT_START = os.environ.get("TRITON_INTERPRET")


def pytest_collection_finish(session: pytest.Session) -> None:
    # A test module that leaves the Triton interpreter switched on after its import
    # would silently run every later Triton kernel (GPU tests too) interpreted.
    if os.environ.get("TRITON_INTERPRET") != _INTERPRET_AT_START:
        raise pytest.UsageError("a test module changed TRITON_INTERPRET at import and left it")


def _stderr_to_devnull() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A passing run sends what the interpreter's teardown prints to /dev/null.

    At exit Triton's nanobind bindings list the objects still alive ("nanobind: leaked
    ...", some 30 lines), which says nothing about the tests (Triton silences its own
    compile workers the same way). The handler is registered after every import, so it
    runs before the teardown of the modules already loaded. A run that failed, errored
    or was interrupted keeps its stderr whole.
    """
    if exitstatus == pytest.ExitCode.OK:
        atexit.register(_stderr_to_devnull)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def registry() -> Registry:
    return builtin_registry()


# Shapes covering non-square inputs, strides, dilations, groups and explicit padding.
GEOMETRIES = [
    Geometry(batch=2, channels=8, height=9, width=7, kernel_size=3, stride=1, groups=2),
    Geometry(
        batch=1, channels=6, height=11, width=8, kernel_size=5, stride=2, dilation=2, groups=3
    ),
    Geometry(batch=2, channels=4, height=10, width=13, kernel_size=3, stride=3, groups=1),
    Geometry(batch=1, channels=4, height=7, width=9, kernel_size=3, stride=1, groups=4, padding=0),
    Geometry(batch=1, channels=8, height=13, width=11, kernel_size=7, stride=2, groups=2),
    Geometry(batch=1, channels=2, height=5, width=6, kernel_size=1, stride=1, groups=1),
]


def random_inputs(
    geom: Geometry, dtype: torch.dtype = torch.float64, seed: int = 0, grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(geom.x_shape, generator=gen, dtype=torch.float64).to(dtype)
    w = torch.randn(geom.weight_shape, generator=gen, dtype=torch.float64).to(dtype)
    return x.requires_grad_(grad), w.requires_grad_(grad)
