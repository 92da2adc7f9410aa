"""The `triton` backend on the CPU, through the Triton interpreter.

TRITON_INTERPRET=1 is set before triton is imported. It is put back to its
previous value right after the import and set again only while this module's
tests run (the kernels read it at launch), so other test modules collected in
the same process are not switched to the interpreter.
"""

from __future__ import annotations

import os

_PREVIOUS_INTERPRET = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

pytest.importorskip("triton")

if _PREVIOUS_INTERPRET is None:
    del os.environ["TRITON_INTERPRET"]
else:
    os.environ["TRITON_INTERPRET"] = _PREVIOUS_INTERPRET

import copy  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import invbench  # noqa: E402
from invbench.backends.base import poisoned_outputs  # noqa: E402
from invbench.backends.triton_backend import (  # noqa: E402
    CPU_NEEDS_INTERPRETER,
    NO_CUDA,
    NOT_INSTALLED,
    TritonBackend,
)
from invbench.core.spec import DeviceKind, Dtype, Geometry  # noqa: E402
from invbench.operator.reference import involution_reference, relative_error  # noqa: E402

# Relative to max |reference|. The interpreter converts float32 to bfloat16 by
# truncation (compiled kernels round to nearest), so bfloat16 results here can be
# off by up to one bfloat16 ulp, 2^-7 = 0.78%, of the largest value.
TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    yield


@dataclass(frozen=True)
class Shape:
    b: int
    c: int
    h: int
    w: int
    k: int
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    padding: int | None = None

    def geometry(self) -> Geometry:
        return Geometry(
            batch=self.b, channels=self.c, height=self.h, width=self.w, kernel_size=self.k,
            stride=self.stride, dilation=self.dilation, groups=self.groups, padding=self.padding,
        )  # fmt: skip


SHAPES = {
    "k3-nonsquare-g2": Shape(2, 4, 7, 9, 3, groups=2),
    "k3-stride2-g1-odd": Shape(1, 4, 9, 7, 3, stride=2, groups=1),
    "k3-stride3-g=c": Shape(1, 3, 9, 8, 3, stride=3, groups=3),
    "k3-stride4": Shape(1, 4, 9, 9, 3, stride=4, groups=2),
    "k3-dilation2": Shape(1, 4, 9, 8, 3, dilation=2, groups=2),
    "k3-dilation3-stride2": Shape(1, 2, 9, 9, 3, stride=2, dilation=3, groups=1),
    "k1-g2": Shape(2, 8, 6, 7, 1, groups=2),
    "k5-g1-8ch": Shape(1, 8, 8, 9, 5, groups=1),
    "k3-3ch-per-group": Shape(2, 6, 7, 8, 3, groups=2),
    "k3-6ch-per-group-stride2": Shape(1, 6, 8, 7, 3, stride=2, groups=1),
    "k7-g=c": Shape(1, 2, 9, 8, 7, groups=2),
    "k9-stride2": Shape(1, 2, 9, 9, 9, stride=2, groups=1),
    "k11": Shape(1, 1, 11, 12, 11),
    "k4-even": Shape(1, 4, 8, 7, 4, groups=2),
    "k2-even-stride2": Shape(1, 4, 7, 9, 2, stride=2, groups=4),
    "padding0": Shape(1, 4, 7, 8, 3, groups=2, padding=0),
    "padding0-stride2": Shape(1, 4, 9, 8, 3, stride=2, groups=1, padding=0),
    "padding2-k3": Shape(1, 4, 6, 7, 3, groups=2, padding=2),
}


def _random_inputs(
    shape: Shape, dtype: torch.dtype, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    geom = shape.geometry()
    x = torch.randn(geom.x_shape, generator=gen).to(dtype)
    weight = torch.randn(geom.weight_shape, generator=gen).to(dtype)
    grad_out = torch.randn(geom.out_shape, generator=gen).to(dtype)
    return x, weight, grad_out


def _check(shape: Shape, x: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor) -> None:
    """Forward, grad_x and grad_weight of the triton backend against the float64 reference."""
    geom = shape.geometry()
    x = x.detach().requires_grad_()
    weight = weight.detach().requires_grad_()
    with poisoned_outputs():
        out = invbench.involution(
            x, weight, stride=shape.stride, padding=shape.padding, dilation=shape.dilation,
            backend="triton",
        )  # fmt: skip
        grad_x, grad_w = torch.autograd.grad(out, (x, weight), grad_out)
    assert out.dtype == x.dtype and out.shape == geom.out_shape
    assert grad_x.shape == x.shape and grad_w.shape == weight.shape

    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    ref = involution_reference(x64, w64, geom)
    ref_gx, ref_gw = torch.autograd.grad(ref, (x64, w64), grad_out.double())
    tol = TOL[x.dtype]
    errors = {
        "out": relative_error(out, ref),
        "grad_x": relative_error(grad_x, ref_gx),
        "grad_weight": relative_error(grad_w, ref_gw),
    }
    assert all(e <= tol for e in errors.values()), f"relative errors {errors} > {tol}"


@pytest.fixture(params=[0, 1], ids=["channels-axis0", "channels-axis1"])
def tile_channel_axis(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Both tile orientations (the one a given Triton release compiles well is chosen)."""
    monkeypatch.setenv("INVBENCH_TRITON_CHANNEL_AXIS", str(request.param))
    return int(request.param)


@pytest.mark.parametrize("name", list(SHAPES))
def test_float32_matches_reference(name: str, tile_channel_axis: int) -> None:
    shape = SHAPES[name]
    _check(shape, *_random_inputs(shape, torch.float32))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", ["k3-nonsquare-g2", "k3-stride2-g1-odd", "k5-g1-8ch"])
def test_half_precision_matches_reference(
    name: str, dtype: torch.dtype, tile_channel_axis: int
) -> None:
    shape = SHAPES[name]
    _check(shape, *_random_inputs(shape, dtype, seed=1))


def _random_shapes(count: int, seed: int) -> list[Shape]:
    """Valid small geometries drawn at random (fixed seed): K 1-6, stride 1-4, dilation 1-3."""
    rng = random.Random(seed)
    shapes: list[Shape] = []
    while len(shapes) < count:
        c = rng.choice([1, 2, 3, 4, 6, 8, 12])
        shape = Shape(
            b=rng.randint(1, 2), c=c, h=rng.randint(1, 10), w=rng.randint(1, 10),
            k=rng.randint(1, 6), stride=rng.randint(1, 4), dilation=rng.randint(1, 3),
            groups=rng.choice([d for d in range(1, c + 1) if c % d == 0]),
            padding=rng.choice([None, 0, rng.randint(0, 4)]),
        )  # fmt: skip
        geom = shape.geometry()
        span = shape.dilation * (shape.k - 1) + 1
        if min(shape.h, shape.w) + 2 * geom.pad >= span:
            shapes.append(shape)
    return shapes


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("index", range(12))
def test_random_geometries(index: int, dtype: torch.dtype) -> None:
    shape = _random_shapes(12, seed=11)[index]
    _check(shape, *_random_inputs(shape, dtype, seed=100 + index))


def test_channels_last_input() -> None:
    shape = Shape(2, 4, 7, 8, 3, stride=2, groups=2)
    x, weight, grad_out = _random_inputs(shape, torch.float32, seed=2)
    x = x.to(memory_format=torch.channels_last)
    assert not x.is_contiguous()
    _check(shape, x, weight, grad_out)


def test_non_contiguous_inputs() -> None:
    shape = Shape(1, 4, 7, 9, 3, groups=2)
    geom = shape.geometry()
    gen = torch.Generator().manual_seed(3)
    # x: every other channel of a wider tensor, transposed storage, with an offset
    base = torch.randn(1, 8, 10, 7, generator=gen)
    x = base[:, ::2, 1:, :].transpose(2, 3)
    b, g, k, _, ho, wo = geom.weight_shape
    weight = torch.randn(b, g, k, k, wo, ho, generator=gen).transpose(4, 5)
    grad_out = torch.randn(1, 4, wo, ho, generator=gen).transpose(2, 3)
    assert x.shape == geom.x_shape and weight.shape == geom.weight_shape
    assert not (x.is_contiguous() or weight.is_contiguous() or grad_out.is_contiguous())
    _check(shape, x, weight, grad_out)


def test_gradient_of_x_only() -> None:
    shape = SHAPES["k3-nonsquare-g2"]
    x, weight, grad_out = _random_inputs(shape, torch.float32, seed=4)
    x.requires_grad_()
    with poisoned_outputs():
        out = invbench.involution(x, weight, backend="triton")
        (grad_x,) = torch.autograd.grad(out, (x,), grad_out)
    x64 = x.detach().double().requires_grad_()
    ref = involution_reference(x64, weight.double(), shape.geometry())
    (ref_gx,) = torch.autograd.grad(ref, (x64,), grad_out.double())
    assert relative_error(grad_x, ref_gx) <= TOL[torch.float32]


@pytest.mark.parametrize("stride,size", [(1, 8), (2, 9)])
def test_module_matches_float64(stride: int, size: int) -> None:
    torch.manual_seed(5)
    layer = invbench.Involution(8, kernel_size=3, stride=stride, group_channels=4,
                                reduction_ratio=2, backend="triton")  # fmt: skip
    ref_layer = copy.deepcopy(layer).double()
    ref_layer.backend = "unfold"
    x = torch.randn(2, 8, size, size - 1, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    with poisoned_outputs():
        out = layer(x)
        grad_out = torch.randn_like(out)
        out.backward(grad_out)
    ref = ref_layer(x64)
    ref.backward(grad_out.double())
    assert relative_error(out, ref) <= 1e-5
    assert x.grad is not None and x64.grad is not None
    assert relative_error(x.grad, x64.grad) <= 1e-5
    for (name, p), (_, p64) in zip(
        layer.named_parameters(), ref_layer.named_parameters(), strict=True
    ):
        assert p.grad is not None and p64.grad is not None, name
        assert relative_error(p.grad, p64.grad) <= 1e-4, name


def _bad_inputs() -> dict[str, tuple[torch.Tensor, torch.Tensor, dict[str, int]]]:
    x = torch.randn(1, 4, 6, 6)
    w = torch.randn(1, 2, 3, 3, 6, 6)
    return {
        "weight-grid": (x, torch.randn(1, 2, 3, 3, 5, 6), {}),
        "groups-divide": (x, torch.randn(1, 3, 3, 3, 6, 6), {}),
        "batch": (x, torch.randn(2, 2, 3, 3, 6, 6), {}),
        "dtype-mismatch": (x, w.half(), {}),
        "stride-0": (x, w, {"stride": 0}),
        "negative-padding": (x, w, {"padding": -1}),
        "kernel-too-big": (torch.randn(1, 4, 2, 2), torch.randn(1, 2, 5, 5, 1, 1), {"padding": 0}),
        "x-3d": (x[0], w, {}),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_invalid_inputs_raise_like_other_backends(case: str) -> None:
    x, w, kwargs = _bad_inputs()[case]
    with pytest.raises(ValueError) as expected:
        invbench.involution(x, w, backend="unfold", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError) as got:
        invbench.involution(x, w, backend="triton", **kwargs)  # type: ignore[arg-type]
    assert str(got.value) == str(expected.value)


def test_float64_is_refused_with_a_reason() -> None:
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    w = torch.randn(1, 1, 3, 3, 5, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="float64"):
        invbench.involution(x, w, backend="triton")


def test_availability_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = TritonBackend()
    assert backend.availability(DeviceKind.CPU, Dtype.FLOAT32) is None
    assert backend.availability(DeviceKind.CPU, Dtype.BFLOAT16) is None
    reason = backend.availability(DeviceKind.CPU, Dtype.FLOAT64)
    assert reason is not None and "float64" in reason

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert backend.availability(DeviceKind.CUDA, Dtype.FLOAT32) == NO_CUDA
    assert "TRITON_INTERPRET=1" in NO_CUDA

    monkeypatch.delenv("TRITON_INTERPRET")
    assert backend.availability(DeviceKind.CPU, Dtype.FLOAT32) == CPU_NEEDS_INTERPRETER

    monkeypatch.setitem(sys.modules, "triton", None)  # what a missing package looks like
    assert backend.availability(DeviceKind.CPU, Dtype.FLOAT32) == NOT_INSTALLED
    assert NOT_INSTALLED == "triton is not installed (pip install invbench[triton])"


def test_launch_mode_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from invbench.backends.triton_kernels import LaunchMode, launch_mode

    assert launch_mode() is LaunchMode.INTERPRET
    monkeypatch.setenv("INVBENCH_TRITON_AUTOTUNE", "0")
    assert launch_mode() is LaunchMode.INTERPRET  # the interpreter wins
    monkeypatch.delenv("TRITON_INTERPRET")
    assert launch_mode() is LaunchMode.FIXED
    monkeypatch.delenv("INVBENCH_TRITON_AUTOTUNE")
    assert launch_mode() is LaunchMode.AUTOTUNE


def test_channel_axis_follows_the_triton_release(monkeypatch: pytest.MonkeyPatch) -> None:
    from invbench.backends import triton_kernels as tk

    for version, axis in [("3.3.1", 1), ("3.6.0", 1), ("3.7.0", 0), ("3.9.0+git1a2b", 0)]:
        monkeypatch.setattr(tk.triton, "__version__", version)
        assert tk.channel_axis() == axis, version
    monkeypatch.setenv("INVBENCH_TRITON_CHANNEL_AXIS", "1")
    assert tk.channel_axis() == 1  # the override wins


def test_gpu_configs_give_each_thread_whole_pixels() -> None:
    from invbench.backends import triton_kernels as tk

    configs = tk._aggregate_configs() + tk._grad_w_configs()
    assert configs
    for config in configs:
        assert config.kwargs["BLOCK_P"] >= tk.THREADS_PER_WARP * config.num_warps, config


def test_registered_and_imported_lazily() -> None:
    code = (
        "import sys, invbench\n"
        "from invbench.backends.registry import default_registry\n"
        "from invbench.core.spec import DeviceKind, Dtype\n"
        "backend = default_registry().get('triton')\n"
        "backend.availability(DeviceKind.CPU, Dtype.FLOAT32)\n"
        "print(backend.kind.value, 'triton' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.split() == ["involution", "False"]


def test_rows_timed_in_the_interpreter_say_so(tmp_path: Path) -> None:
    from invbench.backends.registry import Registry
    from invbench.backends.triton_backend import INTERPRETED
    from invbench.backends.unfold import UnfoldBackend
    from invbench.core.spec import Case, Mode, Status
    from invbench.core.stats import StopPolicy
    from invbench.running.engine import Engine
    from invbench.running.plan import RunPlan
    from invbench.storage.results import ResultWriter, load_results

    registry = Registry()
    registry.register(UnfoldBackend())
    registry.register(TritonBackend())
    geom = Geometry(batch=1, channels=4, height=6, width=5, kernel_size=3, groups=2)
    plan = RunPlan(
        cases=(Case("t", "c", geom),),
        backends=("unfold", "triton"),
        dtypes=(Dtype.FLOAT32,),
        modes=(Mode.FWD,),
        device=torch.device("cpu"),
        policy=StopPolicy(samples=2),
        warmup_ms=0.0,
    )
    Engine(plan, registry, ResultWriter(tmp_path)).run()
    rows = load_results(tmp_path).rows.set_index("backend")
    assert (rows.status == Status.OK.value).all()
    assert INTERPRETED in rows.loc["triton", "warnings"]
    assert "interpreted" not in rows.loc["unfold", "warnings"]
    assert TritonBackend().timing_notes(DeviceKind.CPU) == (INTERPRETED,)
