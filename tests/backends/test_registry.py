from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from invbench.backends import registry as registry_mod
from invbench.backends.base import InvolutionBackend
from invbench.backends.registry import Registry, UnknownBackendError
from invbench.core.spec import DeviceKind, Dtype, Geometry, Kind


class Doubler(InvolutionBackend):
    name = "doubler"
    description = "test backend"

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        raise NotImplementedError


def test_builtins_are_registered(registry: Registry) -> None:
    assert registry.names()[:4] == ["unfold", "compile", "conv3x3", "dwconv"]
    assert registry.names()[4:] == ["triton", "cuda_ext", "cuda_naive", "triton_fused"]
    assert registry.names(Kind.BASELINE) == ["conv3x3", "dwconv"]
    assert registry.get("unfold").kind is Kind.INVOLUTION


def test_duplicate_and_unknown(registry: Registry) -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get("unfold"))
    with pytest.raises(UnknownBackendError, match=r"unknown backend 'x'.*unfold"):
        registry.get("x")
    with pytest.raises(TypeError):
        registry.register(object())  # type: ignore[arg-type]


def test_availability_reasons(registry: Registry) -> None:
    unfold = registry.get("unfold")
    assert unfold.availability(DeviceKind.CPU, Dtype.FLOAT32) is None
    if not torch.cuda.is_available():
        assert unfold.availability(DeviceKind.CUDA) == "no CUDA device is available"
    conv = registry.get("conv3x3")
    assert conv.availability(DeviceKind.CPU, Dtype.FLOAT64) == "conv3x3 does not support float64"


def test_entry_points_load_and_broken_plugins_are_reported(monkeypatch: Any) -> None:
    def fake_entry_points(group: str) -> list[Any]:
        assert group == "invbench.backends"

        def broken() -> Any:
            raise ImportError("missing dependency")

        return [
            SimpleNamespace(name="doubler", load=lambda: Doubler),
            SimpleNamespace(name="broken", load=broken),
            SimpleNamespace(name="weird", load=lambda: 42),
        ]

    monkeypatch.setattr(registry_mod, "entry_points", fake_entry_points)
    reg = Registry()
    reg.load_entry_points()
    assert "doubler" in reg
    assert reg.load_errors["broken"] == "ImportError: missing dependency"
    assert "not a Backend" in reg.load_errors["weird"]
