"""The fused involution layer for inference: one Triton kernel, generation on chip.

Imported only when the ``triton_fused`` backend builds a layer (it imports triton).

One program (4 warps) takes a BLOCK_H x BLOCK_W tile of 128 output pixels of one
image (a 2-D tile, so neighbouring programs' K x K windows overlap little and the
halo re-reads stay in cache) and does the whole layer:

1. generation input: each pixel's C-vector (at stride s, the s x s average as in
   the layer's ceil-mode pool: partial windows average the pixels they cover),
   read from x in (BLOCK_P, BLOCK_C) tiles;
2. reduce: hidden = relu(t @ Wr' + br), a tl.dot chain over C, with BN folded into
   Wr' and br (eval mode);
3. for each group g: the span 1x1 conv for all K*K taps in one tl.dot, computed
   transposed (Ws[g]^T @ hidden^T) and transposed back, plus bias; taps in the zero
   padding get weight 0 (x is then read at clamped addresses, without masks);
4. aggregation, per channel c of the group (a static loop: the channel offsets are
   immediates of the loads): a (pixels, taps) gather of x times the generated
   kernel, summed over taps, out[c, p] = sum_t kern[p, t] * x[c, tap(p, t)], and
   stored at once (a channel plane's pixels: a coalesced store).

Each thread owns one pixel and holds all its taps in registers: the generated
kernel, converted once per group from the tensor-core layout to the gather's, and
the tap addresses, computed once. The taps' sum is then in-thread (no shuffles)
and no 3-D tile is built. Taps padded to a power of two (49 -> 64) are dropped
by the compiler: their loads are masked with a compile-time-known mask and their
products replaced by -0.0. The gather tile's tap axis follows the installed
Triton (``channel_axis()`` of :mod:`invbench.backends.triton_kernels`): Triton
3.3-3.6 spread a warp's threads along axis 0 of such a tile, 3.7+ along axis 1.
The span conv is written transposed because Triton 3.6 otherwise keeps the
products in the tensor-core layout and converts every gathered tile to it.

The earlier design (a 3-D (pixels, 16 taps, channels) tile of x patches reduced
over taps with tl.sum) spilled: 255 registers and up to 10 KB of stack per thread
compiled for sm_90. ``tools/triton_fused_count.py`` prints the static counts
(registers, stack, spill loads/stores, tensor-core instructions) per dtype and
layer; ``tests/backends/test_triton_fused_codegen.py`` checks them without a GPU;
docs/levels.md has the table.

The generated weight never leaves the chip. x is read once from memory for
generation plus the K x K halo of the aggregation (neighbouring pixels' taps hit
in cache). tl.dot needs every dimension >= 16: hidden channels and taps are padded
to powers of two >= 16 with zero weights and masked loads. Float16/bfloat16 feed
tl.dot directly (fp32 accumulation); float32 asks for F32_DOT products (no TF32)
so it matches the float32 module. C, H and W are compile-time constants: one
compiled kernel per layer shape and input size.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
import triton
import triton.language as tl

from invbench.backends.triton_kernels import FP_FUSION
from invbench.operator.ops import Involution


def _fused_involution_source(  # type: ignore[no-untyped-def]
    x_ptr,
    wr_ptr,  # (C, HID_P): reduce weight with BN scale folded in, transposed
    br_ptr,  # (HID_P,) float32: folded BN shift
    ws_ptr,  # (G, HID_P, KK_P): span weight per group, transposed
    bs_ptr,  # (G, KK_P) float32: span bias
    out_ptr,
    C: tl.constexpr,
    H: tl.constexpr,
    W: tl.constexpr,
    G: tl.constexpr,
    GC: tl.constexpr,  # channels per group
    K: tl.constexpr,
    STRIDE: tl.constexpr,
    PAD: tl.constexpr,
    HID_P: tl.constexpr,
    KK_P: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
    BLOCK_C: tl.constexpr,
    CH_AXIS: tl.constexpr,  # the aggregation tiles' tap axis: channel_axis() of triton_kernels
    F32_DOT: tl.constexpr,
):
    HO: tl.constexpr = (H + 2 * PAD - K) // STRIDE + 1
    WO: tl.constexpr = (W + 2 * PAD - K) // STRIDE + 1
    BLOCK_P: tl.constexpr = BLOCK_H * BLOCK_W
    PIX_AXIS: tl.constexpr = 1 - CH_AXIS  # aggregation tiles: [BLOCK_P, KK_P] or [KK_P, BLOCK_P]
    b = tl.program_id(0).to(tl.int64)
    tile = tl.program_id(1)
    tiles_w = tl.cdiv(WO, BLOCK_W)
    p = tl.arange(0, BLOCK_P)
    oi = (tile // tiles_w) * BLOCK_H + p // BLOCK_W
    oj = (tile % tiles_w) * BLOCK_W + p % BLOCK_W
    p_ok = (oi < HO) & (oj < WO)
    opix = oi * WO + oj
    x_img = x_ptr + b * C * H * W
    out_img = out_ptr + b * C * HO * WO
    hid = tl.arange(0, HID_P)

    # -- 1 + 2: generation input and the reduce conv (BN folded), over C in tiles
    acc = tl.zeros((BLOCK_P, HID_P), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        cc = c0 + tl.arange(0, BLOCK_C)
        c_ok = cc < C
        t = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
        count = tl.zeros((BLOCK_P,), dtype=tl.float32)
        for d in tl.static_range(STRIDE * STRIDE):
            r = oi * STRIDE + d // STRIDE
            q = oj * STRIDE + d % STRIDE
            in_img = p_ok & (r < H) & (q < W)
            ptrs = x_img + cc[None, :] * H * W + (r * W + q)[:, None]
            v = tl.load(ptrs, mask=in_img[:, None] & c_ok[None, :], other=0.0)
            t += v.to(tl.float32)
            count += in_img.to(tl.float32)
        t = t / tl.maximum(count, 1.0)[:, None]
        wr = tl.load(wr_ptr + cc[:, None] * HID_P + hid[None, :], mask=c_ok[:, None], other=0.0)
        if F32_DOT:
            acc = tl.dot(t, wr.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(t.to(wr.dtype), wr, acc)
    br = tl.load(br_ptr + hid)
    hidden = tl.maximum(acc + br[None, :], 0.0)
    if F32_DOT:  # noqa: SIM108 - a static if on a constexpr, not a ternary, in Triton
        hidden_in = hidden
    else:
        hidden_in = hidden.to(x_ptr.dtype.element_ty)

    # -- 3: per group: the span conv (one tl.dot for all taps, transposed: its result
    # is converted once to the gather's layout), then per channel the aggregation, a
    # (pixels, taps) gather times the generated kernel summed over taps in each thread
    taps = tl.arange(0, KK_P)
    r_all = oi[:, None] * STRIDE - PAD + (taps // K)[None, :]  # (BLOCK_P, KK_P)
    q_all = oj[:, None] * STRIDE - PAD + (taps % K)[None, :]
    tap_ok = p_ok[:, None] & (taps[None, :] < K * K)
    tap_ok = tap_ok & (r_all >= 0) & (r_all < H) & (q_all >= 0) & (q_all < W)
    # x is read at clamped addresses; a tap in the zero padding gets weight 0
    off = tl.minimum(tl.maximum(r_all, 0), H - 1) * W + tl.minimum(tl.maximum(q_all, 0), W - 1)
    if CH_AXIS == 0:
        off = tl.trans(off)
    real_tap = tl.expand_dims(taps < K * K, PIX_AXIS)
    hidden_t = tl.trans(hidden_in)  # (HID_P, BLOCK_P)
    for g in range(0, G):
        # the span conv transposed, kern_t = Ws[g]^T @ hidden^T: (KK_P, BLOCK_P)
        ws_t = tl.load(ws_ptr + (g * HID_P + hid[None, :]) * KK_P + taps[:, None])
        if F32_DOT:
            kern_t = tl.dot(ws_t.to(tl.float32), hidden_t, input_precision="ieee")
        else:
            kern_t = tl.dot(ws_t, hidden_t)
        bs = tl.load(bs_ptr + g * KK_P + taps)
        kern = tl.where(tap_ok, tl.trans(kern_t) + bs[None, :], 0.0)
        if CH_AXIS == 0:
            kern = tl.trans(kern)  # (KK_P, BLOCK_P)
        x_g = x_img + (g * GC) * (H * W) + off
        out_g = out_img + (g * GC) * (HO * WO) + opix
        for c in tl.static_range(GC):  # static: channel offsets become immediates
            patch = tl.load(x_g + c * (H * W), mask=real_tap, other=0.0)
            # padded taps (t >= K*K) add -0.0, which the compiler drops (x + -0.0 == x):
            # their loads, products and kernel values disappear from the machine code
            prod = tl.where(real_tap, kern * patch.to(tl.float32), -0.0)
            o = tl.sum(prod, axis=CH_AXIS)
            tl.store(out_g + c * (HO * WO), o.to(out_ptr.dtype.element_ty), mask=p_ok)


@functools.cache
def _jitted(interpret: bool) -> Any:
    """The kernel, decorated while TRITON_INTERPRET has the value the launch sees.

    Decorating per mode (not at import) lets one process run the interpreter in some
    tests and the GPU compiler in others.
    """
    return triton.jit(_fused_involution_source)


def _kernel() -> Any:
    return _jitted(os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"))


def _pow2_at_least_16(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def tile_shape(block_p: int, out_width: int) -> tuple[int, int]:
    """A BLOCK_H x BLOCK_W pixel tile of block_p pixels (powers of two), at most 8 wide
    unless the rows are shorter: 8 x 8 for block_p = 64 on wide images, 16 x 4 on 4-wide."""
    block_w = min(8, triton.next_power_of_2(out_width), block_p)
    return block_p // block_w, block_w


BLOCK_P = 128  # output pixels per program
NUM_WARPS = 4


class FusedInvolution:
    """The eval-mode layer folded into kernel arguments; call it on x (B, C, H, W)."""

    def __init__(
        self, layer: Involution, block_p: int = BLOCK_P, num_warps: int = NUM_WARPS
    ) -> None:
        reduce, bn, span = layer.reduce, layer.bn, layer.span
        self.channels: int = layer.channels
        self.kernel_size: int = layer.kernel_size
        self.stride: int = layer.stride
        self.groups: int = layer.groups
        self.block_p = block_p
        self.num_warps = num_warps
        k, g, c = self.kernel_size, self.groups, self.channels
        dtype, device = reduce.weight.dtype, reduce.weight.device
        hidden = self.hidden = reduce.out_channels
        self.hid_p = _pow2_at_least_16(hidden)
        self.kk_p = _pow2_at_least_16(k * k)
        with torch.no_grad():
            f32 = torch.float32
            mean, var = bn.running_mean, bn.running_var
            if mean is None or var is None:
                raise ValueError("the layer's BN keeps no running statistics to fold")
            scale = bn.weight.to(f32) / torch.sqrt(var.to(f32) + bn.eps)
            shift = bn.bias.to(f32) - mean.to(f32) * scale
            wr = reduce.weight.reshape(hidden, c).to(f32) * scale[:, None]
            self.wr = torch.zeros(c, self.hid_p, dtype=dtype, device=device)
            self.wr[:, :hidden] = wr.t().to(dtype)
            self.br = torch.zeros(self.hid_p, dtype=f32, device=device)
            self.br[:hidden] = shift
            ws = span.weight.reshape(g, k * k, hidden)
            self.ws = torch.zeros(g, self.hid_p, self.kk_p, dtype=dtype, device=device)
            self.ws[:, :hidden, : k * k] = ws.transpose(1, 2)
            self.bs = torch.zeros(g, self.kk_p, dtype=f32, device=device)
            if span.bias is not None:
                self.bs[:, : k * k] = span.bias.reshape(g, k * k).to(f32)

    @staticmethod
    def f32_dot(dtype: torch.dtype) -> bool:
        """Whether tl.dot runs on float32 operands (IEEE, no TF32).

        float32 always. bfloat16 only under the Triton interpreter, whose tl.dot
        gives wrong results for bfloat16 operands (numpy has no bfloat16): there the
        bfloat16 inputs are widened before the products; on a GPU they feed tl.dot.
        """
        from invbench.backends.triton_fused import interpreter_on

        return dtype == torch.float32 or (dtype == torch.bfloat16 and interpreter_on())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from invbench.backends.base import new_output

        b, c, h, w = x.shape
        if c != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {c}")
        if x.dtype != self.wr.dtype or x.device != self.wr.device:
            raise ValueError(f"x is {x.dtype} on {x.device}; the layer is {self.wr.dtype}")
        k, s = self.kernel_size, self.stride
        pad = (k - 1) // 2
        ho = (h + 2 * pad - k) // s + 1
        wo = (w + 2 * pad - k) // s + 1
        x = x.contiguous()
        out = new_output((b, c, ho, wo), x)
        consts = constants(
            c, h, w, k, s, self.groups, self.hidden, self.block_p, self.f32_dot(x.dtype)
        )
        grid = (b, triton.cdiv(ho, consts["BLOCK_H"]) * triton.cdiv(wo, consts["BLOCK_W"]))
        _kernel()[grid](
            x,
            self.wr,
            self.br,
            self.ws,
            self.bs,
            out,
            **consts,
            num_warps=self.num_warps,
            enable_fp_fusion=FP_FUSION,
        )
        return out


def constants(
    channels: int,
    height: int,
    width: int,
    kernel_size: int,
    stride: int,
    groups: int,
    hidden: int,
    block_p: int,
    f32_dot: bool,
) -> dict[str, int | bool]:
    """The kernel's compile-time arguments for one layer and input size."""
    from invbench.backends.triton_kernels import channel_axis

    pad = (kernel_size - 1) // 2
    wo = (width + 2 * pad - kernel_size) // stride + 1
    block_h, block_w = tile_shape(block_p, wo)
    gc = channels // groups
    return dict(
        C=channels,
        H=height,
        W=width,
        G=groups,
        GC=gc,
        K=kernel_size,
        STRIDE=stride,
        PAD=pad,
        HID_P=_pow2_at_least_16(hidden),
        KK_P=_pow2_at_least_16(kernel_size**2),
        BLOCK_H=block_h,
        BLOCK_W=block_w,
        BLOCK_C=min(64 // stride, _pow2_at_least_16(channels)),
        CH_AXIS=channel_axis(),
        F32_DOT=f32_dot,
    )


def compile_offline(
    dtype: torch.dtype,
    channels: int,
    kernel_size: int,
    stride: int,
    groups: int,
    arch: int = 90,
    height: int = 56,
    block_p: int = BLOCK_P,
    num_warps: int = NUM_WARPS,
) -> dict[str, Any]:
    """Compile the kernel for a CUDA architecture without a GPU.

    Returns the compiled kernel's ``asm`` (``ptx`` and ``ttgir`` as text, ``cubin`` as
    bytes). Checks on a CPU-only machine that the kernel lowers (tl.dot shapes,
    dtypes) and lets one read the PTX and the machine code (tensor-core instructions,
    registers, spills: tools/triton_fused_count.py). Uses triton's ASTSource and
    GPUTarget (triton >= 3.3 signatures).
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
    ty = names[dtype]
    signature = {
        "x_ptr": f"*{ty}",
        "wr_ptr": f"*{ty}",
        "br_ptr": "*fp32",
        "ws_ptr": f"*{ty}",
        "bs_ptr": "*fp32",
        "out_ptr": f"*{ty}",
    }
    f32 = dtype == torch.float32
    hidden = channels // 4  # the layers' reduction ratio
    consts = constants(channels, height, height, kernel_size, stride, groups, hidden, block_p, f32)
    signature.update(dict.fromkeys(consts, "constexpr"))
    kernel: Any = _kernel()
    if not hasattr(kernel, "cache_key"):
        raise RuntimeError("compile_offline needs TRITON_INTERPRET unset (in a fresh process)")
    src = ASTSource(
        fn=kernel,
        signature=signature,
        constexprs={(kernel.arg_names.index(k),): v for k, v in consts.items()},
    )
    options = {"num_warps": num_warps, "enable_fp_fusion": FP_FUSION}
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    return dict(compiled.asm)
