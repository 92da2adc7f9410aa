"""The float64 reference against a literal, element-by-element reading of the definition."""

from __future__ import annotations

import pytest
import torch

from invbench.core.spec import Geometry
from invbench.operator.reference import involution_reference, relative_error
from tests.conftest import GEOMETRIES, random_inputs


def literal_forward(x: torch.Tensor, w: torch.Tensor, g: Geometry) -> torch.Tensor:
    out = torch.zeros(g.out_shape, dtype=torch.float64)
    cpg = g.channels // g.groups
    for b in range(g.batch):
        for c in range(g.channels):
            for i in range(g.out_height):
                for j in range(g.out_width):
                    acc = 0.0
                    for u in range(g.kernel_size):
                        for v in range(g.kernel_size):
                            y = i * g.stride - g.pad + u * g.dilation
                            z = j * g.stride - g.pad + v * g.dilation
                            if 0 <= y < g.height and 0 <= z < g.width:
                                acc += float(w[b, c // cpg, u, v, i, j]) * float(x[b, c, y, z])
                    out[b, c, i, j] = acc
    return out


def literal_grads(
    x: torch.Tensor, w: torch.Tensor, go: torch.Tensor, g: Geometry
) -> tuple[torch.Tensor, torch.Tensor]:
    gx = torch.zeros_like(x, dtype=torch.float64)
    gw = torch.zeros_like(w, dtype=torch.float64)
    cpg = g.channels // g.groups
    for b in range(g.batch):
        for c in range(g.channels):
            for i in range(g.out_height):
                for j in range(g.out_width):
                    for u in range(g.kernel_size):
                        for v in range(g.kernel_size):
                            y = i * g.stride - g.pad + u * g.dilation
                            z = j * g.stride - g.pad + v * g.dilation
                            if 0 <= y < g.height and 0 <= z < g.width:
                                gx[b, c, y, z] += w[b, c // cpg, u, v, i, j] * go[b, c, i, j]
                                gw[b, c // cpg, u, v, i, j] += go[b, c, i, j] * x[b, c, y, z]
    return gx, gw


@pytest.mark.parametrize("geom", GEOMETRIES[:4], ids=lambda g: f"{g.height}x{g.width}s{g.stride}")
def test_reference_matches_the_definition(geom: Geometry) -> None:
    x, w = random_inputs(geom, grad=True)
    out = involution_reference(x, w, geom)
    assert out.shape == geom.out_shape
    assert relative_error(out, literal_forward(x.detach(), w.detach(), geom)) < 1e-12
    go = torch.randn(geom.out_shape, dtype=torch.float64)
    gx, gw = torch.autograd.grad(out, (x, w), go)
    ex, ew = literal_grads(x.detach(), w.detach(), go, geom)
    assert relative_error(gx, ex) < 1e-12
    assert relative_error(gw, ew) < 1e-12


def test_grouping_is_contiguous() -> None:
    geom = Geometry(batch=1, channels=4, height=3, width=3, kernel_size=1, groups=2)
    x = torch.ones(geom.x_shape, dtype=torch.float64)
    w = torch.empty(geom.weight_shape, dtype=torch.float64)
    w[:, 0] = 2.0
    w[:, 1] = 3.0
    out = involution_reference(x, w, geom)
    assert out[0, :, 0, 0].tolist() == [2.0, 2.0, 3.0, 3.0]


def test_relative_error_flags_nan() -> None:
    a = torch.tensor([1.0, float("nan")])
    assert relative_error(a, torch.tensor([1.0, 2.0])) == float("inf")
