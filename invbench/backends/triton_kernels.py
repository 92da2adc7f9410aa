# mypy: disable-error-code="no-untyped-def"
"""Triton kernels of involution: forward, input gradient and weight gradient.

This module imports triton at the top; only :mod:`invbench.backends.triton_backend`
imports it, and only on first use, so ``import invbench`` never needs triton.

Layouts (all NCHW-contiguous; the backend makes contiguous copies of anything
else, channels_last included):

    x        (B, C, H, W)           out, grad_out  (B, C, Ho, Wo)
    weight   (B, G, K, K, Ho, Wo)   group of channel c: g(c) = c // (C // G)

    out[b, c, i, j] = sum_{u, v} weight[b, g(c), u, v, i, j]
                                 * x[b, c, i*s - p + u*d, j*s - p + v*d]

with zeros outside the image. Any K >= 1 works: the kernels only evaluate this
formula, so an even K is simply a window of K taps that starts p pixels before
i*s (with the default padding p = d*(K-1)//2 the window reaches one tap further
after the centre than before it, and at stride 1 the output grid is one pixel
smaller than the input). K is a compile-time constant and nothing in the code
limits it; invbench tests K = 1 to 11.

Floor and what each design choice buys
--------------------------------------
Fewest bytes per kernel (each tensor read or written once):

* forward:     read x + read weight + write out
* grad_x:      read grad_out + read weight + write grad_x
* grad_weight: read grad_out + read x + write grad_weight

At stride 1 with the official 16 channels per group, weight is K^2/16 = 3 times
the size of x at K=7, i.e. about 60% of the forward traffic. The floor of a
kernel is its bytes divided by the copy bandwidth measured on the same GPU.

* forward: one program owns BLOCK_P flattened output pixels of BLOCK_C channels
  of ONE group; each thread holds all BLOCK_C channels of its pixels. Each
  weight tap is loaded once per pixel and reused across the channels in
  registers, so with BLOCK_C >= C/G (16 in every resnet layer) the weight is
  read exactly once. The K^2-fold reuse of an x element by neighbouring pixels
  and taps is served by L1/L2; pixel blocks are the fastest-varying program
  index so neighbouring blocks (which share halo rows) run close in time. Out
  is written once, coalesced along pixels.
* grad_x: gather formulation, so no atomics, no zero-fill and no extra pass:
  every grad_x element is written once by one program. Output pixel i reads
  input row y through tap u when i*s = y + p - u*d, so the programs are split
  by stride phase (y mod s, z mod s): within a phase a tap lands on the output
  grid for every pixel or for none, and the taps that never land are skipped
  with a scalar branch (at stride 2 about a quarter of the K^2 taps are
  visited). Weight taps are shared across the channels of the group. grad_x is
  written with stride s inside a phase; the other phases fill the gaps while
  the lines are still in L2.
* grad_weight: one program owns BLOCK_P output pixels of one (b, g) and reduces
  over the group's channels for every tap. When the group fits in one channel
  block (BLOCK_C >= C/G) the grad_out tile is loaded once and kept in registers
  for all K^2 taps; x is gathered as in the forward pass; each grad_weight tap
  is written once, coalesced. No atomics.

Forward plus backward therefore reads grad_out twice (once in each backward
kernel) where the analytic floor counts it once: an extra B*C*Ho*Wo elements,
7% of the fwd+bwd floor at stride 1, K=7, 16 channels per group (4% at stride
2, 15% for the K=3 stem).

Instruction issue, not only bytes, can set the time. Each multiply-add costs at
least a load, the FMA and, for 16-bit types, a conversion, plus per-pixel work
shared by the BLOCK_C channels. At K=7 in bf16 (9.7 FLOP/byte) the kernels stay
memory-bound on an H100 only if the inner loop issues about two instructions
per multiply-add or fewer, so everything else is taken out of it:

* x (grad_out in grad_x) is loaded WITHOUT masks at clamped, always-valid
  addresses; a tap that falls in the zero padding (or, in grad_x, outside the
  output grid) gets a zero weight instead, one select per pixel shared by all
  the channels of the tile (grad_weight zeroes its per-pixel sum instead).
  Lanes past the last pixel or channel also read clamped addresses and are
  dropped at the store.
* Shapes (C, H, W, Ho, Wo, G, C/G), K, stride, dilation and padding are
  compile-time constants (one compiled kernel per layer shape; the batch stays
  a run-time value), so a thread's per-channel addresses are one base register
  plus immediate offsets and the index arithmetic folds.
* The inner (column) tap loop is unrolled with tl.static_range: no loop counter
  or branch per tap. The row loop is not, to keep the code small at K=11.

Indices: program ids and every index base that can exceed 2^31 (batch*channel
plane bases, (b, g, tap) bases of the weight) are computed in int64; offsets
inside one H*W or Ho*Wo plane stay int32, so a single plane must hold fewer than
2^31 elements.

Launch configuration, chosen from the environment at each launch:
on a GPU the pixel block and warp count are autotuned (triton.autotune, keyed by
the shape, stride, dilation and K; every configuration keeps at least one pixel
per thread); the channel block is the whole group up to 32 channels.
INVBENCH_TRITON_AUTOTUNE=0 replaces autotuning by one fixed configuration (fewer
compilations, e.g. for tests). Before the autotuner first benchmarks a shape,
all its configurations are compiled side by side on several threads
(:mod:`invbench.backends.triton_precompile`). Under the Triton interpreter
(TRITON_INTERPRET=1) one fixed small configuration is used so tests stay fast.
Kernels are decorated at first use in each mode, so the setting at launch time is
what counts.
"""

import functools
import os
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
import triton
import triton.language as tl

from invbench.backends.base import new_output
from invbench.backends.triton_precompile import precompile
from invbench.core.spec import Geometry

# ---------------------------------------------------------------------------
# kernels (plain functions, decorated by _kernels() for the current mode)
# ---------------------------------------------------------------------------


def _fwd_kernel(
    x_ptr, w_ptr, out_ptr,
    B, C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, HO: tl.constexpr, WO: tl.constexpr,
    G: tl.constexpr, CG: tl.constexpr,
    K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, CH_AXIS: tl.constexpr,
):  # fmt: skip
    PIX_AXIS: tl.constexpr = 1 - CH_AXIS  # tiles are [BLOCK_C, BLOCK_P] or [BLOCK_P, BLOCK_C]
    pid = tl.program_id(0)
    n_p = tl.cdiv(HO * WO, BLOCK_P)
    n_c = tl.cdiv(CG, BLOCK_C)
    pb = pid % n_p
    rest = pid // n_p
    cb = rest % n_c
    bg = (rest // n_c).to(tl.int64)  # b * G + g
    b = bg // G
    g = bg % G

    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < HO * WO
    offs_p_in = tl.minimum(offs_p, HO * WO - 1)  # lanes past the end read a valid pixel
    oi = offs_p_in // WO
    oj = offs_p_in % WO
    offs_c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < CG
    chan = b * C + g * CG + offs_c  # int64 (B*C) plane index
    x_planes = x_ptr + (b * C + g * CG + tl.minimum(offs_c, CG - 1)) * (H * W)
    w_bg = bg * (K * K)

    # x is read without masks at clamped addresses; a tap that falls in the zero
    # padding gets a zero weight instead: one select per pixel, shared by the channels.
    acc = tl.zeros([BLOCK_P, BLOCK_C] if CH_AXIS == 1 else [BLOCK_C, BLOCK_P], dtype=tl.float32)
    for u in range(K):
        ih = oi * STRIDE - PAD + u * DIL
        ok_h = (ih >= 0) & (ih < H)
        row = tl.minimum(tl.maximum(ih, 0), H - 1) * W
        for v in tl.static_range(K):
            iw = oj * STRIDE - PAD + v * DIL
            ok = ok_h & (iw >= 0) & (iw < W)
            col = tl.minimum(tl.maximum(iw, 0), W - 1)
            wv = tl.load(w_ptr + (w_bg + (u * K + v)) * (HO * WO) + offs_p_in)
            wv = tl.where(ok, wv.to(tl.float32), 0.0)
            xv = tl.load(tl.expand_dims(x_planes, PIX_AXIS) + tl.expand_dims(row + col, CH_AXIS))
            acc += xv.to(tl.float32) * tl.expand_dims(wv, CH_AXIS)
    out_ptrs = (
        out_ptr + tl.expand_dims(chan, PIX_AXIS) * (HO * WO) + tl.expand_dims(offs_p, CH_AXIS)
    )
    mask = tl.expand_dims(mask_c, PIX_AXIS) & tl.expand_dims(mask_p, CH_AXIS)
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)


def _grad_x_kernel(
    go_ptr, w_ptr, gx_ptr,
    B, C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, HO: tl.constexpr, WO: tl.constexpr,
    G: tl.constexpr, CG: tl.constexpr,
    K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, CH_AXIS: tl.constexpr,
):  # fmt: skip
    PIX_AXIS: tl.constexpr = 1 - CH_AXIS
    # Input pixels are split by phase (y % STRIDE, z % STRIDE). Output row i reads
    # input row y through tap u when i * STRIDE = y + PAD - u * DIL, so within one
    # phase a tap row u lands on the output grid for every pixel or for none:
    # taps that never land are skipped with a scalar branch.
    pid = tl.program_id(0)
    hs = (H + STRIDE - 1) // STRIDE  # pixels per phase, rounded up
    ws = (W + STRIDE - 1) // STRIDE
    n_p = tl.cdiv(hs * ws, BLOCK_P)
    n_c = tl.cdiv(CG, BLOCK_C)
    pb = pid % n_p
    rest = pid // n_p
    phase = rest % (STRIDE * STRIDE)
    rest = rest // (STRIDE * STRIDE)
    cb = rest % n_c
    bg = (rest // n_c).to(tl.int64)
    b = bg // G
    g = bg % G
    py = phase // STRIDE
    pz = phase % STRIDE

    offs = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    ty = offs // ws
    tz = offs % ws
    y = py + STRIDE * ty  # input pixel (y, z)
    z = pz + STRIDE * tz
    mask_p = (offs < hs * ws) & (y < H) & (z < W)
    offs_c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < CG
    chan = b * C + g * CG + offs_c
    go_planes = go_ptr + (b * C + g * CG + tl.minimum(offs_c, CG - 1)) * (HO * WO)
    w_bg = bg * (K * K)

    acc = tl.zeros([BLOCK_P, BLOCK_C] if CH_AXIS == 1 else [BLOCK_C, BLOCK_P], dtype=tl.float32)
    for u in range(K):
        eh = py + PAD - u * DIL
        if eh % STRIDE == 0:
            i = ty + eh // STRIDE
            ok_h = (i >= 0) & (i < HO)
            row = tl.minimum(tl.maximum(i, 0), HO - 1) * WO
            for v in tl.static_range(K):
                ew = pz + PAD - v * DIL
                if ew % STRIDE == 0:
                    j = tz + ew // STRIDE
                    ok = ok_h & (j >= 0) & (j < WO)
                    q = row + tl.minimum(tl.maximum(j, 0), WO - 1)
                    wv = tl.load(w_ptr + (w_bg + (u * K + v)) * (HO * WO) + q)
                    wv = tl.where(ok, wv.to(tl.float32), 0.0)
                    gv = tl.load(tl.expand_dims(go_planes, PIX_AXIS) + tl.expand_dims(q, CH_AXIS))
                    acc += gv.to(tl.float32) * tl.expand_dims(wv, CH_AXIS)
    gx_ptrs = gx_ptr + tl.expand_dims(chan, PIX_AXIS) * (H * W) + tl.expand_dims(y * W + z, CH_AXIS)
    mask = tl.expand_dims(mask_c, PIX_AXIS) & tl.expand_dims(mask_p, CH_AXIS)
    tl.store(gx_ptrs, acc.to(gx_ptr.dtype.element_ty), mask=mask)


def _grad_w_kernel(
    go_ptr, x_ptr, gw_ptr,
    B, C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, HO: tl.constexpr, WO: tl.constexpr,
    G: tl.constexpr, CG: tl.constexpr,
    K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, PAD: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, CH_AXIS: tl.constexpr, ONE_CHUNK: tl.constexpr,
):  # fmt: skip
    PIX_AXIS: tl.constexpr = 1 - CH_AXIS
    pid = tl.program_id(0)
    n_p = tl.cdiv(HO * WO, BLOCK_P)
    pb = pid % n_p
    bg = (pid // n_p).to(tl.int64)
    b = bg // G
    g = bg % G

    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)  # output pixels
    mask_p = offs_p < HO * WO
    offs_p_in = tl.minimum(offs_p, HO * WO - 1)
    oi = offs_p_in // WO
    oj = offs_p_in % WO
    c_base = b * C + g * CG
    offs_c0 = tl.arange(0, BLOCK_C)
    w_bg = bg * (K * K)

    if ONE_CHUNK:
        # The whole group fits one channel block: grad_out stays in registers for
        # all taps. Its lanes past the group or the grid are zero, so x can be
        # read unmasked at clamped addresses.
        mask_c1 = offs_c0 < CG
        go1 = tl.load(
            go_ptr
            + tl.expand_dims(c_base + offs_c0, PIX_AXIS) * (HO * WO)
            + tl.expand_dims(offs_p, CH_AXIS),
            mask=tl.expand_dims(mask_c1, PIX_AXIS) & tl.expand_dims(mask_p, CH_AXIS),
            other=0.0,
        ).to(tl.float32)
        x_planes1 = x_ptr + (c_base + tl.minimum(offs_c0, CG - 1)) * (H * W)

    for u in range(K):
        ih = oi * STRIDE - PAD + u * DIL
        ok_h = (ih >= 0) & (ih < H)
        row = tl.minimum(tl.maximum(ih, 0), H - 1) * W
        for v in tl.static_range(K):
            iw = oj * STRIDE - PAD + v * DIL
            ok = ok_h & (iw >= 0) & (iw < W)
            sp = row + tl.minimum(tl.maximum(iw, 0), W - 1)
            if ONE_CHUNK:
                xv = tl.load(tl.expand_dims(x_planes1, PIX_AXIS) + tl.expand_dims(sp, CH_AXIS))
                acc = tl.sum(go1 * xv.to(tl.float32), axis=CH_AXIS)
            else:
                acc = tl.zeros([BLOCK_P], dtype=tl.float32)
                for c0 in range(0, CG, BLOCK_C):
                    offs_c = c0 + offs_c0
                    mask_c = offs_c < CG
                    gov = tl.load(
                        go_ptr
                        + tl.expand_dims(c_base + offs_c, PIX_AXIS) * (HO * WO)
                        + tl.expand_dims(offs_p, CH_AXIS),
                        mask=tl.expand_dims(mask_c, PIX_AXIS) & tl.expand_dims(mask_p, CH_AXIS),
                        other=0.0,
                    )
                    x_planes = x_ptr + (c_base + tl.minimum(offs_c, CG - 1)) * (H * W)
                    xv = tl.load(tl.expand_dims(x_planes, PIX_AXIS) + tl.expand_dims(sp, CH_AXIS))
                    acc += tl.sum(gov.to(tl.float32) * xv.to(tl.float32), axis=CH_AXIS)
            acc = tl.where(ok, acc, 0.0)
            gw_ptrs = gw_ptr + (w_bg + (u * K + v)) * (HO * WO) + offs_p
            tl.store(gw_ptrs, acc.to(gw_ptr.dtype.element_ty), mask=mask_p)


# ---------------------------------------------------------------------------
# configurations and decoration
# ---------------------------------------------------------------------------

# Under the interpreter: one small configuration. Small blocks on purpose, so the
# tiny test shapes still span several pixel blocks and channel blocks.
INTERPRET_BLOCK_P = 32
INTERPRET_BLOCK_C_MAX = 4
# On a GPU: channels per program (the whole group when it has <= 32 channels).
GPU_BLOCK_C_MAX = 32
# On a GPU with autotuning switched off (INVBENCH_TRITON_AUTOTUNE=0).
FIXED_BLOCK_P = 128
FIXED_NUM_WARPS = 4

_TUNE_KEY = ["B", "C", "H", "W", "HO", "WO", "G", "K", "STRIDE", "DIL"]


# Every configuration keeps BLOCK_P >= 32 * num_warps: then each thread holds all
# the channels of its pixels and one weight load serves them all. With fewer
# pixels than threads, Triton splits a pixel's channels across threads, and the
# per-pixel work (weight load, clamps, selects) is repeated by each of them: up
# to twice the instructions per multiply-add in the compiled inner loop.
THREADS_PER_WARP = 32


def _aggregate_configs() -> list[Any]:
    """Forward and grad_x: BLOCK_P output (input) pixels x BLOCK_C channels per program."""
    shapes = [(32, 1), (64, 1), (64, 2), (128, 2), (128, 4), (256, 4), (256, 8), (512, 8)]
    return [triton.Config({"BLOCK_P": p}, num_warps=w) for p, w in shapes]


def _grad_w_configs() -> list[Any]:
    shapes = [(32, 1), (64, 2), (128, 4), (256, 4), (256, 8)]
    return [triton.Config({"BLOCK_P": p}, num_warps=w) for p, w in shapes]


# Tile orientation. The x (grad_out) gather of every kernel has addresses that are
# contiguous along neither tile axis, so Triton's coalescing pass breaks a tie to
# pick its layout, and releases break it differently: up to 3.6 the threads of a
# warp go along axis 0 of such a tile, from 3.7 on along axis 1 (checked by
# compiling for sm_90 with 3.3.1, 3.4.0, 3.5.1 and 3.6.0 against 3.7.1, 3.8.0
# and 3.9.0). The pixels must be the axis the threads go along, so that each
# thread keeps all the channels of its pixels; the other way round the compiled
# forward issues 3 to 4 times the instructions (e.g. bf16 layer1 under 3.6: 13.8
# per multiply-add with channels on axis 0 against 3.6 with them on axis 1).
# INVBENCH_TRITON_CHANNEL_AXIS=0 or 1 overrides the choice.
_VERSION = re.compile(r"(\d+)\.(\d+)")


def channel_axis() -> int:
    """The tile axis that holds channels (the other holds pixels) for the installed Triton."""
    forced = os.environ.get("INVBENCH_TRITON_CHANNEL_AXIS")
    if forced in ("0", "1"):
        return int(forced)
    return _release_channel_axis(triton.__version__)


@functools.cache
def _release_channel_axis(version: str) -> int:
    m = _VERSION.match(version)
    if m is None:
        return 0
    return 1 if (int(m.group(1)), int(m.group(2))) < (3, 7) else 0


# Multiply-adds compile to FFMA only with floating-point fusion on. Triton's default
# for it is an environment setting whose default is announced to change (off from
# 3.10), so every launch asks for it explicitly. Results stay within the float32
# tolerances either way; the instruction budget assumes fused multiply-adds.
FP_FUSION = True


@dataclass(frozen=True)
class _Kernels:
    fwd: Any
    grad_x: Any
    grad_w: Any


class LaunchMode(Enum):
    INTERPRET = "interpret"  # TRITON_INTERPRET=1: one small configuration
    FIXED = "fixed"  # INVBENCH_TRITON_AUTOTUNE=0: one GPU configuration, no tuning
    AUTOTUNE = "autotune"  # the default on a GPU


def launch_mode() -> LaunchMode:
    """How kernels launched now run, from the environment at the time of the call."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return LaunchMode.INTERPRET
    if os.environ.get("INVBENCH_TRITON_AUTOTUNE") == "0":
        return LaunchMode.FIXED
    return LaunchMode.AUTOTUNE


@functools.cache
def _kernels(mode: LaunchMode) -> _Kernels:
    """The kernels, decorated while TRITON_INTERPRET has the value the launch saw."""
    fwd = triton.jit(_fwd_kernel)
    grad_x = triton.jit(_grad_x_kernel)
    grad_w = triton.jit(_grad_w_kernel)
    if mode is not LaunchMode.AUTOTUNE:
        return _Kernels(fwd, grad_x, grad_w)
    return _Kernels(
        triton.autotune(configs=_aggregate_configs(), key=_TUNE_KEY)(fwd),
        triton.autotune(configs=_aggregate_configs(), key=_TUNE_KEY)(grad_x),
        triton.autotune(configs=_grad_w_configs(), key=_TUNE_KEY)(grad_w),
    )


# ---------------------------------------------------------------------------
# launchers
# ---------------------------------------------------------------------------


def _shape_args(geom: Geometry) -> dict[str, int]:
    return {
        "B": geom.batch,
        "C": geom.channels,
        "H": geom.height,
        "W": geom.width,
        "HO": geom.out_height,
        "WO": geom.out_width,
        "G": geom.groups,
        "CG": geom.group_channels,
        "K": geom.kernel_size,
        "STRIDE": geom.stride,
        "DIL": geom.dilation,
        "PAD": geom.pad,
    }


def _block_c(geom: Geometry, mode: LaunchMode) -> int:
    cap = INTERPRET_BLOCK_C_MAX if mode is LaunchMode.INTERPRET else GPU_BLOCK_C_MAX
    return min(int(triton.next_power_of_2(geom.group_channels)), cap)


def _check_contiguous(**tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous (the backend copies it first)")


def _launch(kernel: Any, grid: Any, mode: LaunchMode, device: torch.device, *args: Any,
            **meta: Any) -> None:  # fmt: skip
    meta["CH_AXIS"] = channel_axis()
    meta["enable_fp_fusion"] = FP_FUSION
    if mode is LaunchMode.INTERPRET:
        meta["BLOCK_P"] = INTERPRET_BLOCK_P
    elif mode is LaunchMode.FIXED:
        meta["BLOCK_P"] = FIXED_BLOCK_P
        meta["num_warps"] = FIXED_NUM_WARPS
    if device.type == "cuda":
        with torch.cuda.device(device):
            if mode is LaunchMode.AUTOTUNE:
                # all configurations compiled side by side before the autotuner's first look;
                # the key is cheap (this runs on every launch): meta is built in one order
                key = (id(kernel), device.index, args[0].dtype, *meta.values())
                precompile(kernel, key, grid, args, meta)
            kernel[grid](*args, **meta)
    else:
        kernel[grid](*args, **meta)


def involution_forward(x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """out (B, C, Ho, Wo) from contiguous x (B, C, H, W) and weight (B, G, K, K, Ho, Wo)."""
    _check_contiguous(x=x, weight=weight)
    mode = launch_mode()
    out = new_output(geom.out_shape, x)
    block_c = _block_c(geom, mode)
    n_pix = geom.out_height * geom.out_width
    n_bgc = geom.batch * geom.groups * triton.cdiv(geom.group_channels, block_c)

    def grid(meta: dict[str, Any]) -> tuple[int]:
        return (n_bgc * triton.cdiv(n_pix, meta["BLOCK_P"]),)

    _launch(_kernels(mode).fwd, grid, mode, x.device, x, weight, out,
            **_shape_args(geom), BLOCK_C=block_c)  # fmt: skip
    return out


def involution_grad_x(grad_out: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """grad_x (B, C, H, W) from contiguous grad_out (B, C, Ho, Wo) and weight."""
    _check_contiguous(grad_out=grad_out, weight=weight)
    mode = launch_mode()
    gx = new_output(geom.x_shape, grad_out)
    block_c = _block_c(geom, mode)
    s = geom.stride
    n_pix = triton.cdiv(geom.height, s) * triton.cdiv(geom.width, s)  # per phase
    n_bgc = geom.batch * geom.groups * triton.cdiv(geom.group_channels, block_c) * s * s

    def grid(meta: dict[str, Any]) -> tuple[int]:
        return (n_bgc * triton.cdiv(n_pix, meta["BLOCK_P"]),)

    _launch(_kernels(mode).grad_x, grid, mode, grad_out.device, grad_out, weight, gx,
            **_shape_args(geom), BLOCK_C=block_c)  # fmt: skip
    return gx


def involution_grad_weight(grad_out: torch.Tensor, x: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """grad_weight (B, G, K, K, Ho, Wo) from contiguous grad_out (B, C, Ho, Wo) and x."""
    _check_contiguous(grad_out=grad_out, x=x)
    mode = launch_mode()
    gw = new_output(geom.weight_shape, x)
    block_c = _block_c(geom, mode)
    n_pix = geom.out_height * geom.out_width
    n_bg = geom.batch * geom.groups

    def grid(meta: dict[str, Any]) -> tuple[int]:
        return (n_bg * triton.cdiv(n_pix, meta["BLOCK_P"]),)

    _launch(_kernels(mode).grad_w, grid, mode, x.device, grad_out, x, gw,
            **_shape_args(geom), BLOCK_C=block_c,
            ONE_CHUNK=block_c >= geom.group_channels)  # fmt: skip
    return gw
