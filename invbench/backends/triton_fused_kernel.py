"""The fused involution layer for inference: one Triton kernel, generation on chip.

Imported only when the ``triton_fused`` backend builds a layer (it imports triton).

One program takes a BLOCK_H x BLOCK_W tile of output pixels of one image (a 2-D
tile, so neighbouring programs' K x K windows overlap little and the halo re-reads
stay in cache) and does the whole layer:

1. generation input: each pixel's C-vector (at stride s, the s x s average as in
   the layer's ceil-mode pool: partial windows average the pixels they cover),
   read from x in (BLOCK_P, BLOCK_C) tiles;
2. reduce: hidden = relu(t @ Wr' + br), a tl.dot chain over C, with BN folded into
   Wr' and br (eval mode);
3. for each group g, in chunks of KK_BLOCK kernel taps: the span 1x1 conv for
   those taps, kern = hidden @ Ws[g] + bs[g] (tl.dot), then the aggregation of
   the group's channels: out[p, c] += sum over taps of kern[p, t] * x[c, tap(p, t)];
4. write out once.

The generated weight never leaves the chip. x is read once from memory for
generation plus the K x K halo of the aggregation (neighbouring pixels' taps hit
in cache). tl.dot needs every dimension >= 16: hidden channels, taps and channel
tiles are padded to powers of two >= 16 with zero weights and masked loads.
Float16/bfloat16 feed tl.dot directly (fp32 accumulation); float32 asks for F32_DOT
products (no TF32) so it matches the float32 module.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
import triton
import triton.language as tl

from invbench.ops import Involution


def _fused_involution_source(  # type: ignore[no-untyped-def]
    x_ptr,
    wr_ptr,  # (C, HID_P): reduce weight with BN scale folded in, transposed
    br_ptr,  # (HID_P,) float32: folded BN shift
    ws_ptr,  # (G, HID_P, KK_P): span weight per group, transposed
    bs_ptr,  # (G, KK_P) float32: span bias
    out_ptr,
    C,
    H,
    W,
    HO,
    WO,
    G,
    GC,  # channels per group
    K: tl.constexpr,
    STRIDE: tl.constexpr,
    PAD: tl.constexpr,
    HID_P: tl.constexpr,
    KK_P: tl.constexpr,
    GC_P: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
    BLOCK_C: tl.constexpr,
    KK_BLOCK: tl.constexpr,
    F32_DOT: tl.constexpr,
):
    BLOCK_P: tl.constexpr = BLOCK_H * BLOCK_W
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

    # -- 3: per group, per chunk of taps: span conv (tl.dot) and aggregation
    ci = tl.arange(0, GC_P)
    ci_ok = ci < GC
    for g in range(0, G):
        chan = g * GC + ci
        out_acc = tl.zeros((BLOCK_P, GC_P), dtype=tl.float32)
        for t0 in tl.static_range(0, KK_P, KK_BLOCK):
            taps = t0 + tl.arange(0, KK_BLOCK)
            ws = tl.load(ws_ptr + (g * HID_P + hid[:, None]) * KK_P + taps[None, :])
            bs = tl.load(bs_ptr + g * KK_P + taps)
            if F32_DOT:
                kern = tl.dot(hidden_in, ws.to(tl.float32), input_precision="ieee")
            else:
                kern = tl.dot(hidden_in, ws)
            kern += bs[None, :]
            u = taps // K
            v = taps % K
            r = oi[:, None] * STRIDE - PAD + u[None, :]  # (BLOCK_P, KK_BLOCK)
            q = oj[:, None] * STRIDE - PAD + v[None, :]
            ok = p_ok[:, None] & (taps[None, :] < K * K) & (r >= 0) & (r < H) & (q >= 0) & (q < W)
            ptrs = x_img + chan[None, None, :] * H * W + (r * W + q)[:, :, None]
            patch = tl.load(ptrs, mask=ok[:, :, None] & ci_ok[None, None, :], other=0.0)
            out_acc += tl.sum(kern[:, :, None] * patch.to(tl.float32), axis=1)
        optrs = out_img + chan[None, :] * HO * WO + opix[:, None]
        tl.store(optrs, out_acc.to(out_ptr.dtype.element_ty), mask=p_ok[:, None] & ci_ok[None, :])


@functools.cache
def _jitted(interpret: bool) -> Any:
    """The kernel, decorated while TRITON_INTERPRET has the value the launch sees.

    Decorating per mode (not at import) lets one process run the interpreter in some
    tests and the GPU compiler in others.
    """
    return triton.jit(_fused_involution_source)


def _kernel() -> Any:
    return _jitted(os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"))


def _loop_bound(n: int) -> Any:
    """The kernel's C or G argument: the bound of one of its runtime-length loops.

    Triton's interpreter up to 3.6 turns an int argument into a 1-element array and
    takes a loop bound from it with int(array), which numpy 2.4 and later refuse
    ("only 0-dimensional arrays can be converted to Python scalars"; Triton 3.9
    squeezes the array first). Under the interpreter the bound is passed as a
    tl.constexpr, which it hands to the kernel unconverted; a compiled kernel gets a
    plain int, a runtime argument as before.
    """
    from invbench.backends.triton_fused import interpreter_on

    return tl.constexpr(n) if interpreter_on() else n


def _pow2_at_least_16(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def tile_shape(block_p: int, out_width: int) -> tuple[int, int]:
    """A BLOCK_H x BLOCK_W pixel tile of block_p pixels (powers of two), at most 8 wide
    unless the rows are shorter: 8 x 8 for block_p = 64 on wide images, 16 x 4 on 4-wide."""
    block_w = min(8, triton.next_power_of_2(out_width), block_p)
    return block_p // block_w, block_w


class FusedInvolution:
    """The eval-mode layer folded into kernel arguments; call it on x (B, C, H, W)."""

    def __init__(self, layer: Involution, block_p: int = 64, num_warps: int = 4) -> None:
        reduce, bn, span = layer.reduce, layer.bn, layer.span
        self.channels: int = layer.channels
        self.kernel_size: int = layer.kernel_size
        self.stride: int = layer.stride
        self.groups: int = layer.groups
        self.block_p = block_p
        self.num_warps = num_warps
        k, g, c = self.kernel_size, self.groups, self.channels
        dtype, device = reduce.weight.dtype, reduce.weight.device
        hidden = reduce.out_channels
        self.hid_p = _pow2_at_least_16(hidden)
        self.kk_p = _pow2_at_least_16(k * k)
        self.gc = c // g
        self.gc_p = triton.next_power_of_2(self.gc)
        self.block_c = min(64, _pow2_at_least_16(c))
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
        block_h, block_w = tile_shape(self.block_p, wo)
        grid = (b, triton.cdiv(ho, block_h) * triton.cdiv(wo, block_w))
        _kernel()[grid](
            x,
            self.wr,
            self.br,
            self.ws,
            self.bs,
            out,
            _loop_bound(c),
            h,
            w,
            ho,
            wo,
            _loop_bound(self.groups),
            self.gc,
            K=k,
            STRIDE=s,
            PAD=pad,
            HID_P=self.hid_p,
            KK_P=self.kk_p,
            GC_P=self.gc_p,
            BLOCK_H=block_h,
            BLOCK_W=block_w,
            BLOCK_C=self.block_c,
            KK_BLOCK=16,
            F32_DOT=self.f32_dot(x.dtype),
            num_warps=self.num_warps,
        )
        return out


def compile_offline(
    dtype: torch.dtype, channels: int, kernel_size: int, stride: int, groups: int, arch: int = 90
) -> dict[str, str]:
    """Compile the kernel for a CUDA architecture without a GPU; returns its ptx and ttgir.

    Checks on a CPU-only machine that the kernel lowers (tl.dot shapes, dtypes) and
    lets one read the PTX (e.g. for mma instructions). Uses triton's ASTSource and
    GPUTarget (triton >= 3.3 signatures).
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
    ty = names[dtype]
    hidden = channels // 4
    gc = channels // groups
    signature = {
        "x_ptr": f"*{ty}",
        "wr_ptr": f"*{ty}",
        "br_ptr": "*fp32",
        "ws_ptr": f"*{ty}",
        "bs_ptr": "*fp32",
        "out_ptr": f"*{ty}",
        **dict.fromkeys(("C", "H", "W", "HO", "WO", "G", "GC"), "i32"),
    }
    constants = dict(
        K=kernel_size,
        STRIDE=stride,
        PAD=(kernel_size - 1) // 2,
        HID_P=_pow2_at_least_16(hidden),
        KK_P=_pow2_at_least_16(kernel_size**2),
        GC_P=triton.next_power_of_2(gc),
        BLOCK_H=8,
        BLOCK_W=8,
        BLOCK_C=min(64, _pow2_at_least_16(channels)),
        KK_BLOCK=16,
        F32_DOT=dtype == torch.float32,
    )
    signature.update(dict.fromkeys(constants, "constexpr"))
    kernel: Any = _kernel()
    if not hasattr(kernel, "cache_key"):
        raise RuntimeError("compile_offline needs TRITON_INTERPRET unset (in a fresh process)")
    src = ASTSource(
        fn=kernel,
        signature=signature,
        constexprs={(kernel.arg_names.index(k),): v for k, v in constants.items()},
    )
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": 4})
    return {"ptx": compiled.asm["ptx"], "ttgir": compiled.asm["ttgir"]}
