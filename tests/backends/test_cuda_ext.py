"""The cuda_ext / cuda_naive backends: forward and gradients against the float64 reference.

CPU tests run everywhere (the first one builds the extension: 1 to 4 min on 2 cores); the same
checks on CUDA are marked gpu and skipped without a CUDA device.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import invbench
from invbench.backends import extension_build
from invbench.backends.base import poisoned_outputs
from invbench.backends.registry import default_registry
from invbench.core.spec import DeviceKind, Dtype, Geometry
from invbench.operator.reference import involution_reference, relative_error

ROOT = Path(__file__).resolve().parents[2]

HAS_CUDA = torch.cuda.is_available() and torch.version.cuda is not None

# (B, C, H, W, K, stride, dilation, G, padding)
SMALL_CASES = [
    (2, 4, 5, 7, 1, 1, 1, 1, None),
    (1, 4, 6, 5, 3, 1, 1, 2, None),
    (2, 6, 7, 9, 3, 2, 1, 3, None),
    (1, 4, 9, 6, 5, 1, 2, 4, None),  # G = C, dilation 2
    (1, 2, 11, 8, 7, 3, 1, 1, None),
    (1, 2, 12, 13, 3, 4, 3, 2, None),  # stride 4, dilation 3, G = C
    (1, 3, 6, 7, 3, 1, 1, 1, 0),  # explicit padding 0
    (1, 2, 7, 7, 3, 2, 1, 1, None),  # odd size, stride 2
    (1, 2, 13, 12, 11, 1, 1, 2, None),  # K = 11
    (1, 16, 6, 5, 3, 1, 1, 1, None),  # group width 16: the channel-vector CPU path
    (1, 24, 5, 6, 3, 2, 2, 2, 1),  # group width 12: its generic variant
]


def _case_id(case: tuple[object, ...]) -> str:
    b, c, h, w, k, s, d, g, p = case
    return f"B{b}C{c}_{h}x{w}_K{k}s{s}d{d}G{g}p{p}"


def _geometry(case: tuple[int | None, ...]) -> Geometry:
    b, c, h, w, k, s, d, g, p = case
    assert b and c and h and w and k and s and d and g
    return Geometry(b, c, h, w, k, stride=s, dilation=d, groups=g, padding=p)


def _inputs(
    geom: Geometry, dtype: torch.dtype, device: str, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(geom.x_shape, generator=gen, dtype=torch.float64).to(device, dtype)
    w = torch.randn(geom.weight_shape, generator=gen, dtype=torch.float64).to(device, dtype)
    return x, w


def _run(x: torch.Tensor, w: torch.Tensor, geom: Geometry, backend: str) -> torch.Tensor:
    return invbench.involution(
        x, w, stride=geom.stride, padding=geom.padding, dilation=geom.dilation, backend=backend
    )


def _devices() -> list[object]:
    gpu = pytest.param(
        "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA")]
    )
    return ["cpu", gpu]


def _backends(device: str) -> list[str]:
    return ["cuda_ext"] + (["cuda_naive"] if device == "cuda" else [])


@pytest.fixture(scope="session", autouse=True)
def _built() -> None:
    problem = extension_build.toolchain_problem(extension_build.cuda_build_wanted())
    if problem is not None:
        pytest.skip(f"extension cannot be built here: {problem}")


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("case", SMALL_CASES, ids=_case_id)
def test_forward_and_gradcheck_float64(case: tuple[int | None, ...], device: str) -> None:
    geom = _geometry(case)
    for backend in _backends(device):
        x, w = _inputs(geom, torch.float64, device)
        expected = involution_reference(x, w, geom)
        assert relative_error(_run(x, w, geom, backend), expected) < 1e-12
        x.requires_grad_(True)
        w.requires_grad_(True)
        # Full Jacobians on small cases; a random projection (fast mode) on the large-K ones.
        fast = x.numel() + w.numel() > 3000
        assert torch.autograd.gradcheck(
            lambda a, b, backend=backend: _run(a, b, geom, backend),
            (x, w),
            eps=1e-6,
            atol=1e-7,
            fast_mode=fast,
        )


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize(
    ("geom", "dtype", "tol"),
    [
        (Geometry(2, 64, 23, 17, 7, stride=1, groups=4), torch.float32, 1e-5),
        (Geometry(2, 32, 30, 31, 7, stride=2, groups=2), torch.float32, 1e-5),
        (Geometry(3, 48, 15, 14, 5, stride=1, dilation=2, groups=3), torch.float32, 1e-5),
        (Geometry(1, 32, 7, 53, 5, stride=1, groups=2), torch.float32, 1e-5),  # wide rows
        (Geometry(2, 64, 21, 19, 7, stride=2, groups=4), torch.bfloat16, 2e-2),
        (Geometry(2, 64, 16, 20, 3, stride=1, groups=8), torch.float16, 3e-3),
    ],
    ids=["f32-K7s1", "f32-K7s2-odd", "f32-K5d2", "f32-wide", "bf16-K7s2", "f16-K3"],
)
def test_low_precision_against_float64(
    geom: Geometry, dtype: torch.dtype, tol: float, device: str
) -> None:
    for backend in _backends(device):
        x, w = _inputs(geom, dtype, device, seed=1)
        x.requires_grad_(True)
        w.requires_grad_(True)
        out = _run(x, w, geom, backend)
        assert out.dtype == dtype
        grad_out = torch.randn_like(out)
        gx, gw = torch.autograd.grad(out, (x, w), grad_out)
        x64 = x.detach().double().requires_grad_(True)
        w64 = w.detach().double().requires_grad_(True)
        ref = involution_reference(x64, w64, geom)
        rgx, rgw = torch.autograd.grad(ref, (x64, w64), grad_out.double())
        assert relative_error(out, ref) < tol
        assert relative_error(gx, rgx) < tol
        assert relative_error(gw, rgw) < tol


# (B, C, H, W, K, stride, dilation, G, padding): odd sizes, every stride 1-4 and
# dilation 1-3, K 1-11, padding 0, rows shorter and longer than a vector, group widths
# that fill the channel blocks and ones that leave a remainder.
SIMD_CASES = [
    (2, 32, 13, 11, 7, 1, 1, 2, None),
    (1, 32, 15, 37, 7, 2, 1, 2, None),
    (1, 24, 9, 19, 3, 3, 2, 2, 0),
    (1, 20, 12, 13, 5, 4, 3, 4, None),
    (1, 18, 17, 9, 11, 1, 1, 1, None),
    (1, 16, 7, 7, 1, 1, 1, 2, 2),
    (1, 36, 10, 23, 9, 1, 2, 2, None),
    (1, 16, 8, 9, 3, 2, 3, 1, 0),
    (1, 16, 9, 41, 5, 2, 1, 2, None),  # stride 2, even padding: whole vectors inside the row
    (1, 18, 10, 11, 9, 1, 1, 2, None),  # K = 9: grad_weight's two-row kernel with 9 taps
    (1, 18, 9, 10, 7, 1, 1, 2, None),  # K = 7, stride 1: unit-step pairs of 6, 1, 1, 1 channels
    # rows the -zmm paths run on 16 lanes: 16 + 16 + 13 columns; at stride 2, 16 + 15 (and
    # an odd row left to the one-row kernel, two vectors a call)
    (1, 16, 6, 45, 7, 1, 1, 1, None),
    (1, 18, 9, 62, 7, 2, 1, 2, None),
    # the forward across a group's channels (groups of 16 or 32, dilation 1, K 3-7, stride
    # 1-2), its rows in blocks of 7 or 8 pixels with the last block past the row (10 of
    # 14, 9 of 14, 18 of 21, 15 of 16), so the last row's weights are staged
    (2, 64, 11, 10, 7, 1, 1, 2, None),
    (1, 32, 13, 17, 5, 2, 1, 2, None),
    (2, 32, 9, 35, 3, 2, 1, 1, None),
    (1, 16, 7, 15, 7, 1, 1, 1, None),
    # K = 7 rows that are whole blocks of 14 pixels on the 32-register paths: 28 columns
    # at stride 1, 14 at stride 2 (odd width and height)
    (1, 32, 9, 28, 7, 1, 1, 2, None),
    (1, 16, 7, 27, 7, 2, 1, 1, None),
    # rows shorter than 16 pixels, staged and written as one run of a task's pixels:
    # 7 columns in and out, and 13 in, 7 out at stride 2 (K 7 and 5, 16 and 32 a group)
    (2, 64, 9, 7, 7, 1, 1, 2, None),
    (1, 16, 11, 13, 7, 2, 1, 1, None),
    (1, 32, 8, 7, 5, 1, 1, 2, None),
    # 7-pixel rows at K = 7 go two a call on the 32-register paths: 7 rows at stride 2
    # (three pairs and one left over; 64 planes, so up to 8 threads get whole planes),
    # two channel blocks of a 32-channel group
    (4, 512, 13, 14, 7, 2, 1, 16, None),
    # grad_weight across (batch, group) pairs (K = 7, rows of at most 8 pixels, B x G a
    # multiple of the lanes): rows of 5 pixels (3 + 2 a call), 24 channels a group at
    # stride 2 (4 pixels: 3 + 1), padding 0 (3 pixels); the case above has 7 (3 + 3 + 1)
    (16, 16, 9, 5, 7, 1, 1, 1, None),
    (8, 48, 8, 7, 7, 2, 1, 2, None),
    (16, 16, 10, 9, 7, 1, 1, 1, 0),
]

# Every CPU kernel path, fastest first (the tests run those this CPU has).
CPU_PATHS = ("avx512bf16-zmm", "avx512-zmm", "avx512bf16", "avx512", "avx2", "generic")


def _cpu_paths() -> list[str]:
    from invbench.backends import cuda_ext

    ops = cuda_ext.load_ops()
    paths = []
    for path in CPU_PATHS:
        try:
            paths.append(ops.cpu_kernel_path(path, torch.float32))
        except RuntimeError:
            continue  # this CPU lacks it
    ops.cpu_kernel_path("auto", torch.float32)
    return paths


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("case", SIMD_CASES, ids=_case_id)
def test_every_cpu_kernel_path_against_float64(
    case: tuple[int | None, ...], dtype: torch.dtype
) -> None:
    from invbench.backends import cuda_ext

    ops = cuda_ext.load_ops()
    geom = _geometry(case)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    x, w = _inputs(geom, torch.float64, "cpu", seed=6)
    grad_out = torch.randn(geom.out_shape, generator=torch.Generator().manual_seed(7)).double()
    x64, w64 = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ref = involution_reference(x64, w64, geom)
    rgx, rgw = torch.autograd.grad(ref, (x64, w64), grad_out)
    paths = _cpu_paths()
    assert "generic" in paths
    try:
        for path in paths:
            assert ops.cpu_kernel_path(path, dtype) == path
            for layout in (torch.contiguous_format, torch.channels_last):
                xl = x.to(dtype).contiguous(memory_format=layout).requires_grad_(True)
                wl = w.to(dtype).requires_grad_(True)
                with poisoned_outputs():
                    out = _run(xl, wl, geom, "cuda_ext")
                    gx, gw = torch.autograd.grad(out, (xl, wl), grad_out.to(dtype))
                for got, want in ((out, ref), (gx, rgx), (gw, rgw)):
                    assert got.dtype == dtype
                    assert relative_error(got, want) < tol, (path, layout)
    finally:
        ops.cpu_kernel_path("auto", torch.float32)


@pytest.mark.parametrize(
    "geom",
    [
        # the forward across a group's channels (16 a group), which streams a task's rows
        # as one run once the call moves 12 MiB or more: 8-pixel blocks at K = 7 (a call
        # of 22 MB) and at K = 3 (14 MB)
        Geometry(1, 32, 184, 184, 7, groups=2),
        Geometry(1, 48, 168, 168, 3, groups=3),
        # the pixel-vector forward (12 channels a group, a 4.5 MB output): on the -zmm
        # paths the two-row kernel at K = 7 and the one-row kernel, two vectors a call, at K = 3
        Geometry(1, 36, 176, 176, 7, groups=3),
        Geometry(1, 36, 176, 176, 3, groups=3),
    ],
    ids=["cv-W184K7", "cv-W168K3", "pv-W176K7", "pv-W176K3"],
)
def test_cpu_forward_streams_a_large_output_exactly(geom: Geometry) -> None:
    """A large float32 forward output, whose rows are whole 32-byte multiples, is written
    with non-temporal stores: by the forward across channels when the call moves 12 MiB
    or more, by the pixel-vector forward when the output is 4 MiB or more; grad_x across
    channels likewise streams its output (the size of x) where the forward across channels
    would. Every path matches the extension's own float64 loops there."""
    from invbench.backends import cuda_ext

    ops = cuda_ext.load_ops()
    assert geom.width % 8 == 0
    out_bytes = 4 * geom.channels * geom.height * geom.width
    w_bytes = 4 * geom.groups * geom.kernel_size**2 * geom.height * geom.width
    across = geom.channels // geom.groups % 16 == 0
    if across:
        assert 2 * out_bytes + w_bytes >= 12 << 20
    else:
        assert out_bytes >= 4 << 20
    x, w = _inputs(geom, torch.float64, "cpu", seed=13)
    go = torch.randn(geom.out_shape, generator=torch.Generator().manual_seed(16)).double()
    args = (geom.stride, geom.pad, geom.dilation)
    want = ops.involution_fwd(x, w, *args, poison=True)  # float64: plain exact loops
    want_gx = ops.involution_grad_input(go, w, geom.height, geom.width, *args, poison=True)
    try:
        for path in _cpu_paths():
            assert ops.cpu_kernel_path(path, torch.float32) == path
            got = ops.involution_fwd(x.float(), w.float(), *args, poison=True)
            assert relative_error(got.double(), want) < 1e-5, path
            if across:
                got_gx = ops.involution_grad_input(
                    go.float(), w.float(), geom.height, geom.width, *args, poison=True
                )
                assert relative_error(got_gx.double(), want_gx) < 1e-5, path
    finally:
        ops.cpu_kernel_path("auto", torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("case", SIMD_CASES[:4], ids=_case_id)
def test_cpu_low_precision_rounds_like_torch(
    case: tuple[int | None, ...], dtype: torch.dtype
) -> None:
    """Half types are widened and rounded a vector at a time: every path gives, bit for bit,
    its own float32 result on the same values rounded by torch (to nearest even), forward
    and both gradients; a NaN input reaches the outputs as NaN in the same places."""
    from invbench.backends import cuda_ext

    ops = cuda_ext.load_ops()
    geom = _geometry(case)
    x, w = (t.to(dtype) for t in _inputs(geom, torch.float64, "cpu", seed=8))
    x[0, 0, geom.height // 2, geom.width // 2] = float("nan")
    go = torch.randn(geom.out_shape, generator=torch.Generator().manual_seed(9)).to(dtype)
    args = (geom.stride, geom.pad, geom.dilation)
    k, groups = geom.kernel_size, geom.groups

    def run(xx: torch.Tensor, ww: torch.Tensor, gg: torch.Tensor) -> list[torch.Tensor]:
        return [
            ops.involution_fwd(xx, ww, *args, poison=True),
            ops.involution_grad_input(gg, ww, geom.height, geom.width, *args, poison=True),
            ops.involution_grad_weight(gg, xx, groups, k, *args, poison=True),
        ]

    try:
        for path in _cpu_paths():
            assert ops.cpu_kernel_path(path, dtype) == path
            got = run(x, w, go)
            want = run(x.float(), w.float(), go.float())
            assert torch.isnan(got[0]).any()
            for g, f in zip(got, want, strict=True):
                assert g.dtype == dtype
                rounded = f.to(dtype)
                nan = torch.isnan(rounded)  # torch's own NaN bits differ between its paths
                assert torch.equal(torch.isnan(g), nan), path
                assert torch.equal(g[~nan].view(torch.int16), rounded[~nan].view(torch.int16)), path
    finally:
        ops.cpu_kernel_path("auto", torch.float32)


@pytest.mark.parametrize(
    "case",
    # rows of whole register blocks (weights read in place), and rows that end inside a
    # block, so the last block's weights are staged: 7 + 3 pixels, 7 + 2 at stride 2, 8 + 7
    [
        (2, 64, 9, 7, 7, 1, 1, 2, None),
        (2, 64, 11, 10, 7, 1, 1, 2, None),
        (1, 32, 13, 17, 5, 2, 1, 2, None),
        (1, 16, 6, 15, 3, 1, 1, 1, None),
    ],
    ids=_case_id,
)
def test_cpu_grad_x_takes_a_weight_only_where_it_applies(case: tuple[int | None, ...]) -> None:
    """A weight that is not finite reaches grad_x only at the input pixels its tap reads:
    the first column of every weight row set to +inf, and some last ones to -inf, the
    non-finite pixels (and the NaNs among them) are the float64 reference's, on every
    path. A kernel that read a row's neighbours in place (past its end, or before its
    start) and multiplied them by zero would spread them further."""
    from invbench.backends import cuda_ext

    ops = cuda_ext.load_ops()
    geom = _geometry(case)
    x, w = _inputs(geom, torch.float64, "cpu", seed=14)
    w[..., 0] = float("inf")
    w[:, :, 1::3, 2::3, :, -1] = float("-inf")
    grad_out = torch.randn(geom.out_shape, generator=torch.Generator().manual_seed(15)).double()
    w64 = w.clone().requires_grad_(True)
    x64 = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(involution_reference(x64, w64, geom), (x64,), grad_out)
    assert torch.isfinite(want).float().mean() > 0.2
    args = (geom.stride, geom.pad, geom.dilation)
    try:
        for path in _cpu_paths():
            for dtype in (torch.float32, torch.bfloat16):
                assert ops.cpu_kernel_path(path, dtype) == path
                got = ops.involution_grad_input(
                    grad_out.to(dtype), w.to(dtype), geom.height, geom.width, *args, poison=True
                )
                assert torch.equal(torch.isfinite(got), torch.isfinite(want)), (path, dtype)
                assert torch.equal(torch.isnan(got), torch.isnan(want)), (path, dtype)
    finally:
        ops.cpu_kernel_path("auto", torch.float32)


def test_cpu_bfloat16_rounds_denormal_results_like_torch() -> None:
    """Results below float32's smallest normal number keep their bits on every path:
    AVX512_BF16's conversion would flush them to zero, so its path must not use it there."""
    from invbench.backends import cuda_ext

    ops = cuda_ext.load_ops()
    geom = Geometry(1, 8, 9, 11, 3, groups=2)
    # products near 2^-130: float32 denormals that bfloat16 still holds (not zero)
    x, w = (t * 2.0**-65 for t in _inputs(geom, torch.float64, "cpu", seed=12))
    x, w = x.to(torch.bfloat16), w.to(torch.bfloat16)
    args = (geom.stride, geom.pad, geom.dilation)
    try:
        for path in _cpu_paths():
            assert ops.cpu_kernel_path(path, torch.bfloat16) == path
            got = ops.involution_fwd(x, w, *args, poison=True)
            want = ops.involution_fwd(x.float(), w.float(), *args, poison=True)
            tiny = (want != 0) & (want.abs() < torch.finfo(torch.float32).tiny)
            assert tiny.float().mean() > 0.9  # the results are float32 denormals...
            assert (want.to(torch.bfloat16)[tiny] != 0).float().mean() > 0.9  # ...kept in bf16
            assert torch.equal(got.view(torch.int16), want.to(torch.bfloat16).view(torch.int16)), (
                path
            )
    finally:
        ops.cpu_kernel_path("auto", torch.float32)


def test_cpu_kernel_path_is_reported_and_checked() -> None:
    from invbench.backends import cuda_ext

    ops = cuda_ext.load_ops()
    best = ops.cpu_kernel_path("", torch.float32)
    backend = default_registry().get("cuda_ext")
    assert backend.variant(DeviceKind.CPU, Dtype.FLOAT32) == best  # what result rows record
    assert backend.variant(DeviceKind.CPU, Dtype.FLOAT64) == "scalar"
    assert best in CPU_PATHS
    assert ops.cpu_kernel_path("", torch.float64) == "scalar"
    with pytest.raises(RuntimeError, match="unknown CPU kernel path"):
        ops.cpu_kernel_path("sse9", torch.float32)
    assert ops.cpu_kernel_path("generic", torch.float32) == "generic"
    assert ops.cpu_kernel_path("auto", torch.bfloat16) == best


def test_cpu_path_request_forces_a_path_or_names_the_mistake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from invbench.backends import cuda_ext

    ops = cuda_ext.load_ops()
    try:
        monkeypatch.delenv(cuda_ext.CPU_PATH_ENV, raising=False)
        best = ops.cpu_kernel_path("auto", torch.float32)
        cuda_ext.apply_cpu_path_request(ops)  # unset: nothing changes
        assert ops.cpu_kernel_path("", torch.float32) == best
        monkeypatch.setenv(cuda_ext.CPU_PATH_ENV, " generic ")
        cuda_ext.apply_cpu_path_request(ops)
        assert ops.cpu_kernel_path("", torch.bfloat16) == "generic"
        monkeypatch.setenv(cuda_ext.CPU_PATH_ENV, "sse9")
        with pytest.raises(
            extension_build.ExtensionBuildError,
            match=r"^INVBENCH_CPU_PATH=sse9: involution: unknown CPU kernel path 'sse9' \(",
        ):
            cuda_ext.apply_cpu_path_request(ops)
    finally:
        ops.cpu_kernel_path("auto", torch.float32)


def _smoke_rows(tmp_path: Path, path: str) -> pd.DataFrame:
    """The smoke suite's cuda_ext rows from `invbench run` in a new process, the path
    forced through INVBENCH_CPU_PATH."""
    out = tmp_path / path
    env = {**os.environ, "INVBENCH_CPU_PATH": path, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "invbench", "run", "--suite", "smoke", "--device", "cpu"]
    cmd += ["--backend", "cuda_ext", "--mode", "fwd", "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return pd.read_parquet(out / "results.parquet")


def test_run_records_the_forced_cpu_path_and_a_bad_one_as_the_rows_reason(
    tmp_path: Path,
) -> None:
    rows = _smoke_rows(tmp_path, "generic")
    assert len(rows) > 0 and set(rows["status"]) == {"ok"}
    assert set(rows["variant"]) == {"generic"}
    rows = _smoke_rows(tmp_path, "sse9")
    assert len(rows) > 0 and set(rows["status"]) == {"error"}
    assert rows["reason"].str.contains("INVBENCH_CPU_PATH=sse9: involution: unknown CPU").all()


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_non_contiguous_inputs(layout: str, device: str) -> None:
    geom = Geometry(2, 8, 9, 11, 3, stride=2, groups=2)
    x, w = _inputs(geom, torch.float64, device, seed=2)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
        w = w.transpose(4, 5).contiguous().transpose(4, 5)
    else:
        wide = torch.randn(2, 16, 9, 11, dtype=torch.float64, device=device)
        x = wide[:, ::2]
    assert not x.is_contiguous()
    expected = involution_reference(x, w, geom)
    for backend in _backends(device):
        xr = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        assert not xr.is_contiguous() or layout == "sliced"
        out = _run(xr, w, geom, backend)
        assert relative_error(out, expected) < 1e-12
        out.sum().backward()
        xe = x.detach().clone().requires_grad_(True)
        involution_reference(xe, w, geom).sum().backward()
        assert xr.grad is not None and xe.grad is not None
        assert relative_error(xr.grad, xe.grad) < 1e-12


@pytest.mark.parametrize("device", _devices())
def test_every_output_element_is_written(device: str) -> None:
    # K=1 with padding leaves a zero border: those outputs must be written, not skipped.
    for geom in (
        Geometry(2, 32, 13, 10, 5, stride=2, groups=2),
        Geometry(1, 4, 5, 6, 1, stride=1, groups=2, padding=2),
    ):
        for backend in _backends(device):
            x, w = _inputs(geom, torch.float32, device, seed=3)
            x.requires_grad_(True)
            w.requires_grad_(True)
            with poisoned_outputs():
                out = _run(x, w, geom, backend)
                gx, gw = torch.autograd.grad(out, (x, w), torch.ones_like(out))
            for t in (out, gx, gw):
                assert torch.isfinite(t).all()
            ref = involution_reference(x.detach(), w.detach(), geom)
            assert relative_error(out, ref) < 1e-5


def test_backend_passes_the_poison_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    # The ops allocate their outputs, so poisoning reaches them as a flag.
    from invbench.backends import cuda_ext

    real = cuda_ext.load_ops()
    seen: list[bool] = []

    class Spy:
        def involution_fwd(self, *args: object) -> torch.Tensor:
            seen.append(bool(args[-1]))
            out: torch.Tensor = real.involution_fwd(*args)
            return out

    monkeypatch.setitem(cuda_ext._OPS, "ops", Spy())
    geom = Geometry(1, 2, 4, 4, 3, groups=1)
    x, w = _inputs(geom, torch.float32, "cpu")
    _run(x, w, geom, "cuda_ext")
    with poisoned_outputs():
        _run(x, w, geom, "cuda_ext")
    assert seen == [False, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stride": 0}, "stride"),
        ({"dilation": -1}, "dilation"),
        ({"padding": -2}, "padding"),
        ({"x_shape": (1, 5, 8, 8)}, "divisible"),
        ({"w_shape": (1, 2, 3, 3, 7, 8)}, "does not match"),
        ({"w_dtype": torch.float64}, "dtype"),
        ({"x_shape": (1, 4, 8)}, "4-D"),
    ],
)
def test_invalid_inputs_raise_value_error(kwargs: dict[str, object], message: str) -> None:
    x_shape = kwargs.pop("x_shape", (1, 4, 8, 8))
    w_shape = kwargs.pop("w_shape", (1, 2, 3, 3, 8, 8))
    w_dtype = kwargs.pop("w_dtype", torch.float32)
    x = torch.randn(*x_shape)  # type: ignore[misc]
    w = torch.randn(*w_shape, dtype=w_dtype)  # type: ignore[misc]
    with pytest.raises(ValueError, match=message):
        invbench.involution(x, w, backend="cuda_ext", **kwargs)  # type: ignore[arg-type]


def test_odd_size_stride_2_never_reads_out_of_bounds() -> None:
    # The official layer's pitfall: odd H at stride 2. A weight on the pooled grid
    # (H // 2) is rejected; the conv grid ((H - 1) // 2 + 1) is computed exactly.
    x = torch.randn(1, 4, 7, 9, dtype=torch.float64)
    with pytest.raises(ValueError, match="does not match"):
        invbench.involution(
            x, torch.randn(1, 2, 3, 3, 3, 4, dtype=torch.float64), stride=2, backend="cuda_ext"
        )
    geom = Geometry(1, 4, 7, 9, 3, stride=2, groups=2)
    w = torch.randn(geom.weight_shape, dtype=torch.float64)
    out = invbench.involution(x, w, stride=2, backend="cuda_ext")
    assert out.shape == (1, 4, 4, 5)
    assert relative_error(out, involution_reference(x, w, geom)) < 1e-12


def test_direct_op_checks_are_errors_not_crashes() -> None:
    from invbench.backends import cuda_ext

    ops = cuda_ext.load_ops()  # its own load: under xdist no earlier test need have run here
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(RuntimeError, match="does not match"):
        ops.involution_fwd(x, torch.randn(1, 2, 3, 3, 9, 8), 1, 1, 1, False, False)
    with pytest.raises(RuntimeError, match="stride"):
        ops.involution_fwd(x, torch.randn(1, 2, 3, 3, 8, 8), 0, 1, 1, False, False)


def test_torch_compile_matches_eager() -> None:
    geom = Geometry(2, 8, 10, 9, 3, stride=1, groups=2)
    x, w = _inputs(geom, torch.float32, "cpu", seed=4)

    def layer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.relu(invbench.involution(a, b, backend="cuda_ext")) * 2.0

    compiled = torch.compile(layer, backend="inductor", fullgraph=False)
    xa, wa = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    xb, wb = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    eager_out = layer(xa, wa)
    compiled_out = compiled(xb, wb)
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-6, atol=1e-6)
    eager_out.sum().backward()
    compiled_out.sum().backward()
    assert xa.grad is not None and xb.grad is not None and wa.grad is not None
    torch.testing.assert_close(xb.grad, xa.grad)
    torch.testing.assert_close(wb.grad, wa.grad)


def test_fake_tensor_shapes() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    from invbench.backends import cuda_ext

    ops = cuda_ext.load_ops()  # its own load: under xdist no earlier test need have run here
    with FakeTensorMode():
        x = torch.empty(2, 8, 9, 7)
        w = torch.empty(2, 2, 3, 3, 5, 4)
        out = ops.involution_fwd(x, w, 2, 1, 1, False, False)
        assert out.shape == (2, 8, 5, 4)
        gx = ops.involution_grad_input(out, w, 9, 7, 2, 1, 1, False, False)
        assert gx.shape == (2, 8, 9, 7)
        gw = ops.involution_grad_weight(out, x, 2, 3, 2, 1, 1, False, False)
        assert gw.shape == (2, 2, 3, 3, 5, 4)


@pytest.mark.parametrize("device", _devices())
def test_module_with_backward(device: str) -> None:
    torch.manual_seed(5)
    ref = invbench.Involution(32, kernel_size=7, stride=2, group_channels=16, backend="unfold")
    ext = invbench.Involution(32, kernel_size=7, stride=2, group_channels=16, backend="cuda_ext")
    ext.load_state_dict(ref.state_dict())
    ref, ext = ref.to(device).double(), ext.to(device).double()
    x = torch.randn(2, 32, 13, 12, dtype=torch.float64, device=device)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_a, out_b = ref(xa), ext(xb)
    assert relative_error(out_b, out_a) < 1e-12
    out_a.square().sum().backward()
    out_b.square().sum().backward()
    assert xa.grad is not None and xb.grad is not None
    assert relative_error(xb.grad, xa.grad) < 1e-12
    for pa, pb in zip(ref.parameters(), ext.parameters(), strict=True):
        assert pa.grad is not None and pb.grad is not None
        assert relative_error(pb.grad, pa.grad) < 1e-10


def test_availability() -> None:
    reg = default_registry()
    ext, naive = reg.get("cuda_ext"), reg.get("cuda_naive")
    assert ext.availability(DeviceKind.CPU, Dtype.FLOAT32) is None
    assert ext.availability(DeviceKind.CPU, Dtype.FLOAT64) is None
    reason = naive.availability(DeviceKind.CPU, Dtype.FLOAT32)
    assert reason is not None and "cpu" in reason
    if not HAS_CUDA:
        assert naive.availability(DeviceKind.CUDA, Dtype.FLOAT32) is not None
        assert ext.availability(DeviceKind.CUDA, Dtype.FLOAT32) is not None


def test_build_failure_reason_is_short() -> None:
    log = (
        "[1/2] c++ -c binding.cpp\nFAILED: binding.o\n"
        "/some/dir/involution_cpu.cpp:12:3: error: 'foo' was not declared in this scope\n"
        "   12 |   foo();\n      |   ^~~\nninja: build stopped: subcommand failed.\n"
    )
    reason = extension_build.key_error_lines(log)
    assert reason == "involution_cpu.cpp:12:3: error: 'foo' was not declared in this scope"


def test_cache_key_depends_on_sources(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from pathlib import Path

    src = Path(str(tmp_path)) / "csrc"
    shutil.copytree(extension_build.CSRC, src)
    monkeypatch.setattr(extension_build, "CSRC", src)
    before = extension_build.plan(False).name
    (src / "involution_cpu.cpp").write_text((src / "involution_cpu.cpp").read_text() + "\n// x\n")
    assert extension_build.plan(False).name != before


def test_debug_build_has_its_own_flags_and_cache_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(extension_build.DEBUG_ENV, raising=False)
    optimised = extension_build.plan(False)
    for off in ("", "0"):
        monkeypatch.setenv(extension_build.DEBUG_ENV, off)
        assert extension_build.plan(False) == optimised
    monkeypatch.setenv(extension_build.DEBUG_ENV, "1")
    debug = extension_build.plan(False)
    assert "-O3" in optimised.cflags and "-O3" not in debug.cflags
    assert {"-O0", "-g"} <= set(debug.cflags)
    assert debug.name != optimised.name and debug.directory != optimised.directory


def test_failed_build_is_an_unavailability_reason(tmp_path: object) -> None:
    # A fresh process builds a deliberately broken copy of the sources.
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    src = Path(str(tmp_path)) / "csrc"
    shutil.copytree(extension_build.CSRC, src)
    for name in extension_build.CPU_SOURCES:  # a missing include stops the compiler at once
        path = src / name
        path.write_text('#include "invbench_missing_header.h"\n' + path.read_text())
    code = (
        "import invbench.backends.extension_build as eb\n"
        "from pathlib import Path\n"
        f"eb.CSRC = Path({str(src)!r})\n"
        "from invbench.backends.registry import builtin_registry\n"
        "from invbench.core.spec import DeviceKind, Dtype\n"
        "b = builtin_registry().get('cuda_ext')\n"
        "try:\n"
        "    eb.load(False)\n"
        "except eb.ExtensionBuildError as e:\n"
        "    print('RAISED', e)\n"
        "print('REASON', b.availability(DeviceKind.CPU, Dtype.FLOAT32))\n"
    )
    env = dict(os.environ, INVBENCH_CACHE_DIR=str(Path(str(tmp_path)) / "cache"), MAX_JOBS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), *sys.path])
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    lines = {ln.split(" ", 1)[0]: ln for ln in proc.stdout.splitlines() if " " in ln}
    for key in ("RAISED", "REASON"):
        assert "extension build failed" in lines[key]
        assert ".cpp:1:10: fatal error: invbench_missing_header.h" in lines[key]
        assert " -c " not in lines[key]  # the compiler's message, not the command line
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_two_processes_building_at_once_build_once(tmp_path: object) -> None:
    # Both start on an empty cache; the file lock makes one build and the other load it.
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import torch\n"
        "from invbench.backends.cuda_ext import load_ops\n"
        "ops = load_ops()\n"
        "x = torch.randn(1, 2, 5, 5); w = torch.randn(1, 1, 3, 3, 5, 5)\n"
        "print('OK', float(ops.involution_fwd(x, w, 1, 1, 1).abs().sum()) > 0)\n"
    )
    env = dict(os.environ, INVBENCH_CACHE_DIR=str(Path(str(tmp_path)) / "cache"), MAX_JOBS="2")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), *sys.path])
    # The debug build: the lock does not depend on the flags, and it builds several times
    # faster than the optimised one (which every other test here builds and loads).
    env[extension_build.DEBUG_ENV] = "1"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert all(out.strip() == "OK True" for out, _ in results), results
    builds = sum(err.count("building the involution extension") for _, err in results)
    assert builds == 1, results
    # both processes, the builder and the loader, say the library is a debug build
    assert all("unoptimised debug build" in err for _, err in results), results


def test_stale_cache_entries_are_pruned_unless_in_use(tmp_path: object) -> None:
    import fcntl
    import os
    import time
    from pathlib import Path

    root = Path(str(tmp_path)) / "ext"
    now = time.time()
    old = now - (extension_build.STALE_AFTER_DAYS + 1) * 86400

    def entry(name: str, used: float | None) -> Path:
        path = root / f"{extension_build.NAMESPACE}_cpu_{name}"
        path.mkdir(parents=True)
        (path / "lib.so").write_bytes(b"x")
        if used is not None:
            stamp = path / extension_build.LAST_USED
            stamp.touch()
            os.utime(stamp, (used, used))
        return path

    keep = entry("current", old)  # the entry just built is never removed
    stale = entry("stale", old)
    recent = entry("recent", now - 86400)
    busy = entry("busy", old)
    other = root / "not-ours"
    other.mkdir()
    with open(busy.with_suffix(".lock"), "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # another process loading it
        removed = extension_build.prune_stale(keep, now=now)
    assert removed == [stale]
    assert not stale.exists() and not stale.with_suffix(".lock").exists()
    assert keep.exists() and recent.exists() and busy.exists() and other.exists()


def test_cuda_home_sees_through_an_nvcc_wrapper(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from pathlib import Path

    from torch.utils import cpp_extension

    root = Path(str(tmp_path))

    def toolkit(path: Path) -> Path:
        (path / "bin").mkdir(parents=True)
        (path / "include").mkdir()
        (path / "bin" / "nvcc").write_text("")
        (path / "include" / "cuda_runtime.h").write_text("")
        return path

    wrapper_dir = root / "wrappers" / "bin"  # what torch would take: no toolkit above it
    wrapper_dir.mkdir(parents=True)
    (wrapper_dir / "nvcc").write_text('#!/bin/sh\nexec /opt/real/bin/nvcc "$@"\n')
    old = toolkit(root / "local" / "cuda-12.8")
    new = toolkit(root / "local" / "cuda-13.0")
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(wrapper_dir.parent))
    monkeypatch.setattr(shutil, "which", lambda name: str(wrapper_dir / name))
    monkeypatch.setattr(extension_build, "CUDA_SEARCH_ROOTS", (root / "local",))
    assert extension_build.cuda_home() == new  # the newest toolkit, not the wrapper's folder
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(old))
    assert extension_build.cuda_home() == old  # torch's own choice when it holds a toolkit
    monkeypatch.setenv("CUDA_HOME", str(wrapper_dir.parent))
    assert extension_build.cuda_home() is None  # an explicit CUDA_HOME is not second-guessed
