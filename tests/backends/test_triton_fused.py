"""The fused inference kernel against the eval-mode layer, under the Triton interpreter.

TRITON_INTERPRET=1 is set while triton is imported and again while each test of this
module runs, then put back, so other modules (the GPU tests among them) are not
switched to the interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

_PREVIOUS = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"
import pytest  # noqa: E402

pytest.importorskip("triton")
if _PREVIOUS is None:
    del os.environ["TRITON_INTERPRET"]
else:
    os.environ["TRITON_INTERPRET"] = _PREVIOUS

import torch  # noqa: E402

from invbench.backends.base import poisoned_outputs  # noqa: E402
from invbench.backends.registry import default_registry  # noqa: E402
from invbench.backends.triton_fused import TritonFusedBackend  # noqa: E402
from invbench.core.spec import DeviceKind, Dtype, Geometry, Mode  # noqa: E402
from invbench.operator.reference import relative_error  # noqa: E402
from invbench.running.bench import RunRequest, execute, plan_run  # noqa: E402
from invbench.running.levels.layer_workload import make_layer, reference_layer_outputs  # noqa: E402
from invbench.running.levels.model_workload import (  # noqa: E402
    eval_logits,
    make_model,
    prepare_model,
    reference_logits,
)

SHAPES = [
    # stem-like: K=3, 2 groups, hidden channels (8) padded to 16; 9 x 19 spans 2 x 3
    # pixel tiles of 8 x 8, the last ones partly outside
    Geometry(batch=2, channels=32, height=9, width=19, kernel_size=3, groups=2),
    # stride 2 on odd sizes: the ceil-mode pool's partial windows
    Geometry(batch=1, channels=32, height=11, width=9, kernel_size=7, stride=2, groups=2),
    # C not a power of two (two channel tiles, the second masked), 6 groups, 24 hidden;
    # 3 wide: a 16 x 4 pixel tile
    Geometry(batch=1, channels=96, height=6, width=3, kernel_size=7, groups=6),
]
TOL_VS_FLOAT64 = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 3e-2}


@pytest.fixture(autouse=True)
def _interpreter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The interpreter for the CPU tests; the GPU test runs the compiled kernel."""
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    else:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    yield


FUSED = TritonFusedBackend()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("geom", SHAPES, ids=["k3-g2", "k7-s2-odd", "c96-g6"])
def test_fused_matches_eval_module(geom: Geometry, dtype: torch.dtype) -> None:
    layer = make_layer(geom, seed=3).eval()
    x = torch.randn(geom.x_shape, generator=torch.Generator().manual_seed(4))
    expected = reference_layer_outputs(layer, x, torch.zeros(geom.out_shape), Mode.FWD)[0]
    with torch.no_grad():
        unfused32 = layer(x)  # the unfused float32 module
        fused = FUSED.fuse(layer.to(dtype))
        with poisoned_outputs():  # every output element must be written
            out = fused(x.to(dtype))
    assert out.dtype == dtype and out.shape == geom.out_shape
    assert torch.isfinite(out).all()
    assert relative_error(out, expected) < TOL_VS_FLOAT64[dtype]
    assert relative_error(out, unfused32) < TOL_VS_FLOAT64[dtype]
    if dtype == torch.float32:
        # the check has teeth: a layer without its BN fold differs by far more
        layer.bn.running_mean.add_(0.5)
        assert relative_error(FUSED.fuse(layer)(x), expected) > 1e-2


def test_fused_refuses_training_mode_and_says_why_it_cannot_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    geom = SHAPES[0]
    with pytest.raises(ValueError, match="eval mode only"):
        FUSED.fuse(make_layer(geom, seed=0).train())
    assert FUSED.availability(DeviceKind.CPU, Dtype.BFLOAT16) is None
    assert FUSED.availability(DeviceKind.CPU, Dtype.FLOAT64) is not None
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    reason = FUSED.availability(DeviceKind.CPU, Dtype.FLOAT32)
    assert reason is not None and "TRITON_INTERPRET=1" in reason
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert "triton is not installed" in (FUSED.availability(DeviceKind.CUDA) or "")


def test_fused_at_the_layer_level(tmp_path: Path) -> None:
    suite = tmp_path / "fused.toml"
    suite.write_text(
        'schema_version = 1\nlevel = "layer"\n'
        '[run]\nbatch = 1\ndtypes = ["float32"]\nmodes = ["fwd", "fwd+bwd"]\nwarmup_ms = 0\n'
        '[[cases]]\nname = "tiny"\nchannels = 32\nheight = 8\nwidth = 6\nkernel_size = 3\n'
        "groups = 2\n"
    )
    registry = default_registry()
    request = RunRequest(
        suite=str(suite), backends=["triton_fused", "unfold"], device="cpu", samples=2
    )
    rows = execute(*plan_run(request, registry), registry, tmp_path / "out")
    status = {(r.backend, r.mode): r for r in rows}
    fused = status["triton_fused", "fwd"]
    assert fused.status == "ok", fused.reason
    assert fused.max_rel_err is not None and fused.max_rel_err < 1e-5
    assert fused.gen_ms is None and fused.agg_ms is None  # one kernel: no split
    assert fused.bytes < status["unfold", "fwd"].bytes
    assert status["triton_fused", "fwd+bwd"].status == "skipped"
    assert "inference" in status["triton_fused", "fwd+bwd"].reason


def test_fused_rednet_logits() -> None:
    source = make_model("rednet-26", seed=0)
    images = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model = prepare_model(FUSED, source, torch.device("cpu"), torch.float32, Mode.FWD)
    assert relative_error(eval_logits(model, images), reference_logits(source, images)) < 1e-4


@pytest.mark.gpu
def test_fused_bfloat16_on_gpu_resnet_shape() -> None:
    geom = Geometry(batch=4, channels=128, height=28, width=28, kernel_size=7, groups=8)
    layer = make_layer(geom, seed=0).eval()
    x = torch.randn(geom.x_shape)
    expected = reference_layer_outputs(layer, x, torch.zeros(geom.out_shape), Mode.FWD)[0]
    fused = FUSED.fuse(layer.to("cuda", torch.bfloat16))
    out = fused(x.to("cuda", torch.bfloat16))
    assert relative_error(out, expected) < TOL_VS_FLOAT64[torch.bfloat16]


def test_kernel_lowers_to_tensor_core_code_for_sm90() -> None:
    """Ahead-of-time compile for sm_90, no GPU needed: the bf16 kernel's products use mma.

    In a fresh process: the interpreter these tests switch on cannot compile.
    """
    code = (
        "import torch\n"
        "from invbench.backends.triton_fused_kernel import compile_offline\n"
        "ptx = compile_offline(torch.bfloat16, channels=128, kernel_size=7, stride=2, groups=8)"
        "['ptx']\n"
        "print('sm_90' in ptx, 'mma' in ptx)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "True"]
