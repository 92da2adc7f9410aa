// CPU kernels of involution.
//
// Layout: one task is a row of output pixels (b, g, i) for the forward pass and the
// weight gradient, so the K*K weight rows of that pixel row stay in L1 while every
// channel of the group reuses them; the input gradient works on one (b, c) plane at
// a time and scatters into a private accumulator (no two tasks touch the same
// element). Inner loops run over contiguous output columns; at stride 1 they are
// plain a[j] += b[j] * c[j] loops that the compiler vectorises.
#include "involution_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace invbench::cpu {
namespace {

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Tasks of at least ~32k multiply-adds per parallel chunk.
int64_t grain_for(int64_t work_per_task) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work_per_task));
}

// Copies n elements into an accumulator-typed buffer, or returns the source itself
// when it already has the accumulator type.
template <typename T, typename A>
const A* as_acc(const T* src, int64_t n, A* buf) {
  if constexpr (std::is_same_v<T, A>) {
    (void)n;
    (void)buf;
    return src;
  } else {
    for (int64_t k = 0; k < n; ++k) buf[k] = static_cast<A>(src[k]);
    return buf;
  }
}

template <typename A>
inline void fma_row(A* __restrict acc, const A* __restrict a, const A* __restrict b,
                    int64_t lo, int64_t hi, int64_t s, int64_t off) {
  if (s == 1) {
    const A* bs = b + (lo + off);
    A* as = acc + lo;
    const A* ws = a + lo;
    const int64_t n = hi - lo;
    for (int64_t k = 0; k < n; ++k) as[k] += ws[k] * bs[k];
  } else {
    for (int64_t j = lo; j < hi; ++j) acc[j] += a[j] * b[j * s + off];
  }
}

template <typename T>
void forward_impl(const T* x, const T* w, T* out, const InvShape& S) {
  using A = acc_t<T>;
  const int64_t Cg = S.group_channels(), K = S.K, KK = K * K;
  const int64_t HW = S.H * S.W, HWo = S.Ho * S.Wo, Wo = S.Wo;
  const int64_t tasks = S.B * S.G * S.Ho;
  at::parallel_for(0, tasks, grain_for(Cg * KK * Wo), [&](int64_t begin, int64_t end) {
    std::vector<A> wbuf(KK * Wo), xbuf(S.W), acc(Wo);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t % S.Ho, bg = t / S.Ho, g = bg % S.G, b = bg / S.G;
      const T* wp = w + bg * KK * HWo + i * Wo;
      for (int64_t uv = 0; uv < KK; ++uv)
        for (int64_t j = 0; j < Wo; ++j) wbuf[uv * Wo + j] = static_cast<A>(wp[uv * HWo + j]);
      for (int64_t cc = 0; cc < Cg; ++cc) {
        const int64_t c = g * Cg + cc;
        const T* xp = x + (b * S.C + c) * HW;
        std::fill(acc.begin(), acc.end(), A(0));
        for (int64_t u = 0; u < K; ++u) {
          const int64_t y = i * S.stride - S.pad + u * S.dilation;
          if (y < 0 || y >= S.H) continue;
          const A* xr = as_acc(xp + y * S.W, S.W, xbuf.data());
          for (int64_t v = 0; v < K; ++v) {
            const int64_t off = v * S.dilation - S.pad;
            int64_t lo, hi;
            valid_range(Wo, S.W, S.stride, off, &lo, &hi);
            fma_row(acc.data(), wbuf.data() + (u * K + v) * Wo, xr, lo, hi, S.stride, off);
          }
        }
        T* op = out + (b * S.C + c) * HWo + i * Wo;
        for (int64_t j = 0; j < Wo; ++j) op[j] = static_cast<T>(acc[j]);
      }
    }
  });
}

// Forward with the channels of a group as the vector dimension: the input rows a
// block of output rows needs are copied, zero-padded, into a (rows, Wp, Cg)
// buffer; each output pixel then accumulates K*K broadcast-weight times
// Cg-channel vectors. Boundaries, stride and dilation cost nothing in the inner
// loop, so small planes (where output rows are too short to vectorise) run fast.
// CG > 0 fixes the group width at compile time so the accumulators stay in registers.
template <typename T, int CG>
void forward_channels_impl(const T* x, const T* w, T* out, const InvShape& S) {
  using A = acc_t<T>;
  const int64_t Cg = CG > 0 ? CG : S.group_channels(), K = S.K, KK = K * K;
  const int64_t HW = S.H * S.W, HWo = S.Ho * S.Wo, Wo = S.Wo;
  const int64_t s = S.stride, d = S.dilation;
  const int64_t R = std::min<int64_t>(S.Ho, 4);  // output rows per task
  const int64_t blocks = (S.Ho + R - 1) / R;
  const int64_t Wp = (Wo - 1) * s + (K - 1) * d + 1;
  const int64_t rows_max = (R - 1) * s + (K - 1) * d + 1;
  const int64_t tasks = S.B * S.G * blocks;
  at::parallel_for(0, tasks, grain_for(R * Cg * KK * Wo), [&](int64_t begin, int64_t end) {
    std::vector<A> xt(rows_max * Wp * Cg);
    std::vector<A> accv(CG > 0 ? 1 : Cg);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t blk = t % blocks, bg = t / blocks, g = bg % S.G, b = bg / S.G;
      const int64_t i0 = blk * R, i1 = std::min(S.Ho, i0 + R);
      const int64_t rows = (i1 - i0 - 1) * s + (K - 1) * d + 1;
      const int64_t y0 = i0 * s - S.pad;
      for (int64_t cc = 0; cc < Cg; ++cc) {
        const T* xp = x + (b * S.C + g * Cg + cc) * HW;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t y = y0 + r;
          A* dst = xt.data() + r * Wp * Cg + cc;
          if (y < 0 || y >= S.H) {
            for (int64_t q = 0; q < Wp; ++q) dst[q * Cg] = A(0);
            continue;
          }
          const T* src = xp + y * S.W;
          for (int64_t q = 0; q < Wp; ++q) {
            const int64_t xx = q - S.pad;
            dst[q * Cg] = (xx >= 0 && xx < S.W) ? static_cast<A>(src[xx]) : A(0);
          }
        }
      }
      const T* wb = w + bg * KK * HWo;
      T* ob = out + (b * S.C + g * Cg) * HWo;
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t j = 0; j < Wo; ++j) {
          A acc_fixed[CG > 0 ? CG : 1];
          A* __restrict acc = CG > 0 ? acc_fixed : accv.data();
          for (int64_t cc = 0; cc < Cg; ++cc) acc[cc] = A(0);
          const T* wp = wb + i * Wo + j;
          for (int64_t u = 0; u < K; ++u) {
            const A* xrow = xt.data() + (((i - i0) * s + u * d) * Wp + j * s) * Cg;
            for (int64_t v = 0; v < K; ++v) {
              const A wv = static_cast<A>(wp[(u * K + v) * HWo]);
              const A* __restrict xv = xrow + v * d * Cg;
              for (int64_t cc = 0; cc < Cg; ++cc) acc[cc] += wv * xv[cc];
            }
          }
          for (int64_t cc = 0; cc < Cg; ++cc) ob[cc * HWo + i * Wo + j] = static_cast<T>(acc[cc]);
        }
      }
    }
  });
}

// Which forward: measured side by side on a 2-core x86 machine over the
// resnet-shapes layers (docs/backends/cuda_ext.md), rows win at stride 1 on wide
// planes (long contiguous rows, no staging); the channel-vector path wins on small
// planes and at stride > 1, as long as the group is wide enough to fill a vector.
template <typename T>
void forward_dispatch(const T* x, const T* w, T* out, const InvShape& S) {
  const int64_t Cg = S.group_channels();
  if (Cg < 8 || (S.stride == 1 && S.Wo >= 48)) return forward_impl<T>(x, w, out, S);
  switch (Cg) {
    case 8: return forward_channels_impl<T, 8>(x, w, out, S);
    case 16: return forward_channels_impl<T, 16>(x, w, out, S);
    case 32: return forward_channels_impl<T, 32>(x, w, out, S);
    default: return forward_channels_impl<T, 0>(x, w, out, S);
  }
}

template <typename T>
void grad_input_impl(const T* go, const T* w, T* gx, const InvShape& S) {
  using A = acc_t<T>;
  const int64_t Cg = S.group_channels(), K = S.K, KK = K * K;
  const int64_t HW = S.H * S.W, HWo = S.Ho * S.Wo, Wo = S.Wo;
  const int64_t tasks = S.B * S.C;
  at::parallel_for(0, tasks, grain_for(KK * HWo), [&](int64_t begin, int64_t end) {
    std::vector<A> acc(HW), gbuf(Wo), prod(Wo);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t c = t % S.C, b = t / S.C, g = c / Cg;
      const T* gp = go + t * HWo;
      const T* wp = w + (b * S.G + g) * KK * HWo;
      std::fill(acc.begin(), acc.end(), A(0));
      for (int64_t i = 0; i < S.Ho; ++i) {
        const A* gr = as_acc(gp + i * Wo, Wo, gbuf.data());
        for (int64_t u = 0; u < K; ++u) {
          const int64_t y = i * S.stride - S.pad + u * S.dilation;
          if (y < 0 || y >= S.H) continue;
          A* ar = acc.data() + y * S.W;
          for (int64_t v = 0; v < K; ++v) {
            const int64_t off = v * S.dilation - S.pad;
            int64_t lo, hi;
            valid_range(Wo, S.W, S.stride, off, &lo, &hi);
            const T* wr = wp + (u * K + v) * HWo + i * Wo;
            for (int64_t j = lo; j < hi; ++j) prod[j] = static_cast<A>(wr[j]) * gr[j];
            if (S.stride == 1) {
              A* __restrict as = ar + (lo + off);
              const A* __restrict ps = prod.data() + lo;
              for (int64_t k = 0; k < hi - lo; ++k) as[k] += ps[k];
            } else {
              for (int64_t j = lo; j < hi; ++j) ar[j * S.stride + off] += prod[j];
            }
          }
        }
      }
      T* op = gx + t * HW;
      for (int64_t k = 0; k < HW; ++k) op[k] = static_cast<T>(acc[k]);
    }
  });
}

template <typename T>
void grad_weight_impl(const T* go, const T* x, T* gw, const InvShape& S) {
  using A = acc_t<T>;
  const int64_t Cg = S.group_channels(), K = S.K, KK = K * K;
  const int64_t HW = S.H * S.W, HWo = S.Ho * S.Wo, Wo = S.Wo;
  const int64_t tasks = S.B * S.G * S.Ho;
  at::parallel_for(0, tasks, grain_for(Cg * KK * Wo), [&](int64_t begin, int64_t end) {
    std::vector<A> acc(KK * Wo), xbuf(S.W), gbuf(Wo);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t % S.Ho, bg = t / S.Ho, g = bg % S.G, b = bg / S.G;
      std::fill(acc.begin(), acc.end(), A(0));
      for (int64_t cc = 0; cc < Cg; ++cc) {
        const int64_t c = g * Cg + cc;
        const T* xp = x + (b * S.C + c) * HW;
        const A* gr = as_acc(go + (b * S.C + c) * HWo + i * Wo, Wo, gbuf.data());
        for (int64_t u = 0; u < K; ++u) {
          const int64_t y = i * S.stride - S.pad + u * S.dilation;
          if (y < 0 || y >= S.H) continue;
          const A* xr = as_acc(xp + y * S.W, S.W, xbuf.data());
          for (int64_t v = 0; v < K; ++v) {
            const int64_t off = v * S.dilation - S.pad;
            int64_t lo, hi;
            valid_range(Wo, S.W, S.stride, off, &lo, &hi);
            fma_row(acc.data() + (u * K + v) * Wo, gr, xr, lo, hi, S.stride, off);
          }
        }
      }
      T* wp = gw + bg * KK * HWo + i * Wo;
      for (int64_t uv = 0; uv < KK; ++uv)
        for (int64_t j = 0; j < Wo; ++j) wp[uv * HWo + j] = static_cast<T>(acc[uv * Wo + j]);
    }
  });
}

// Copies channels [g*Cg, g*Cg + Cg) of rows [y0, y0 + rows) and columns
// [x0, x0 + cols) of one image into dst[(r * cols + q) * Cg + cc], zeros outside.
template <typename T, typename A>
void stage_channels_last(A* dst, const T* src, int64_t Cg, int64_t H, int64_t W, int64_t y0,
                         int64_t rows, int64_t x0, int64_t cols) {
  for (int64_t cc = 0; cc < Cg; ++cc) {
    const T* plane = src + cc * H * W;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t y = y0 + r;
      A* d = dst + r * cols * Cg + cc;
      if (y < 0 || y >= H) {
        for (int64_t q = 0; q < cols; ++q) d[q * Cg] = A(0);
        continue;
      }
      const T* row = plane + y * W;
      for (int64_t q = 0; q < cols; ++q) {
        const int64_t xx = x0 + q;
        d[q * Cg] = (xx >= 0 && xx < W) ? static_cast<A>(row[xx]) : A(0);
      }
    }
  }
}

// Weight gradient with channel vectors: like forward_channels_impl, each (pixel, tap)
// is a dot product over the group's channels of staged grad_out and input vectors.
template <typename T, int CG>
void grad_weight_channels_impl(const T* go, const T* x, T* gw, const InvShape& S) {
  using A = acc_t<T>;
  const int64_t Cg = CG > 0 ? CG : S.group_channels(), K = S.K, KK = K * K;
  const int64_t HWo = S.Ho * S.Wo, Wo = S.Wo, s = S.stride, d = S.dilation;
  const int64_t R = std::min<int64_t>(S.Ho, 4);
  const int64_t blocks = (S.Ho + R - 1) / R;
  const int64_t Wp = (Wo - 1) * s + (K - 1) * d + 1;
  const int64_t rows_max = (R - 1) * s + (K - 1) * d + 1;
  at::parallel_for(0, S.B * S.G * blocks, grain_for(R * Cg * KK * Wo), [&](int64_t begin,
                                                                          int64_t end) {
    std::vector<A> xt(rows_max * Wp * Cg), gt(R * Wo * Cg);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t blk = t % blocks, bg = t / blocks, g = bg % S.G, b = bg / S.G;
      const int64_t i0 = blk * R, i1 = std::min(S.Ho, i0 + R);
      const int64_t rows = (i1 - i0 - 1) * s + (K - 1) * d + 1;
      const int64_t plane0 = b * S.C + g * Cg;
      stage_channels_last(xt.data(), x + plane0 * S.H * S.W, Cg, S.H, S.W, i0 * s - S.pad, rows,
                          -S.pad, Wp);
      stage_channels_last(gt.data(), go + plane0 * HWo, Cg, S.Ho, S.Wo, i0, i1 - i0, 0, Wo);
      T* wb = gw + bg * KK * HWo;
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t j = 0; j < Wo; ++j) {
          const A* __restrict gv = gt.data() + ((i - i0) * Wo + j) * Cg;
          for (int64_t u = 0; u < K; ++u) {
            const A* xrow = xt.data() + (((i - i0) * s + u * d) * Wp + j * s) * Cg;
            for (int64_t v = 0; v < K; ++v) {
              const A* __restrict xv = xrow + v * d * Cg;
              A sum = 0;
              for (int64_t cc = 0; cc < Cg; ++cc) sum += gv[cc] * xv[cc];
              wb[(u * K + v) * HWo + i * Wo + j] = static_cast<T>(sum);
            }
          }
        }
      }
    }
  });
}

// Input gradient with channel vectors: a gather per input pixel over its valid taps,
// each adding a broadcast weight times a staged Cg-channel grad_out vector.
template <typename T, int CG>
void grad_input_channels_impl(const T* go, const T* w, T* gx, const InvShape& S) {
  using A = acc_t<T>;
  const int64_t Cg = CG > 0 ? CG : S.group_channels(), K = S.K, KK = K * K;
  const int64_t HW = S.H * S.W, HWo = S.Ho * S.Wo, Wo = S.Wo, s = S.stride, d = S.dilation;
  const int64_t R = std::min<int64_t>(S.H, 4);  // input rows per task
  const int64_t blocks = (S.H + R - 1) / R;
  const int64_t span = (K - 1) * d;
  const int64_t rows_max = (R - 1 + span) / s + 2;
  at::parallel_for(0, S.B * S.G * blocks, grain_for(R * Cg * KK * S.W / (s * s)),
                   [&](int64_t begin, int64_t end) {
    std::vector<A> gt(rows_max * Wo * Cg);
    std::vector<A> accv(CG > 0 ? 1 : Cg);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t blk = t % blocks, bg = t / blocks, g = bg % S.G, b = bg / S.G;
      const int64_t y0 = blk * R, y1 = std::min(S.H, y0 + R);
      // grad_out rows these input rows gather from: ceil((y0+p-span)/s) .. floor((y1-1+p)/s)
      const int64_t a = y0 + S.pad - span, e = y1 - 1 + S.pad;
      int64_t gi0 = a >= 0 ? (a + s - 1) / s : -((-a) / s);
      int64_t gi1 = e >= 0 ? e / s : -((-e + s - 1) / s);
      gi0 = std::max<int64_t>(gi0, 0);
      gi1 = std::min<int64_t>(gi1, S.Ho - 1);
      const int64_t plane0 = b * S.C + g * Cg;
      if (gi1 >= gi0)
        stage_channels_last(gt.data(), go + plane0 * HWo, Cg, S.Ho, S.Wo, gi0, gi1 - gi0 + 1, 0,
                            Wo);
      const T* wb = w + bg * KK * HWo;
      T* ob = gx + plane0 * HW;
      for (int64_t y = y0; y < y1; ++y) {
        for (int64_t z = 0; z < S.W; ++z) {
          A acc_fixed[CG > 0 ? CG : 1];
          A* __restrict acc = CG > 0 ? acc_fixed : accv.data();
          for (int64_t cc = 0; cc < Cg; ++cc) acc[cc] = A(0);
          for (int64_t u = 0; u < K; ++u) {
            const int64_t iy = y + S.pad - u * d;
            if (iy < 0 || iy % s != 0 || iy / s >= S.Ho) continue;
            const int64_t i = iy / s;
            for (int64_t v = 0; v < K; ++v) {
              const int64_t jx = z + S.pad - v * d;
              if (jx < 0 || jx % s != 0 || jx / s >= Wo) continue;
              const int64_t j = jx / s;
              const A wv = static_cast<A>(wb[(u * K + v) * HWo + i * Wo + j]);
              const A* __restrict gv = gt.data() + ((i - gi0) * Wo + j) * Cg;
              for (int64_t cc = 0; cc < Cg; ++cc) acc[cc] += wv * gv[cc];
            }
          }
          for (int64_t cc = 0; cc < Cg; ++cc) ob[cc * HW + y * S.W + z] = static_cast<T>(acc[cc]);
        }
      }
    }
  });
}

// Same choice as the forward (measured the same way): rows on wide planes at
// stride 1 or narrow groups, channel vectors elsewhere.
template <typename T>
void grad_input_dispatch(const T* go, const T* w, T* gx, const InvShape& S) {
  if (S.group_channels() < 8 || (S.stride == 1 && S.W >= 48))
    return grad_input_impl<T>(go, w, gx, S);
  switch (S.group_channels()) {
    case 8: return grad_input_channels_impl<T, 8>(go, w, gx, S);
    case 16: return grad_input_channels_impl<T, 16>(go, w, gx, S);
    case 32: return grad_input_channels_impl<T, 32>(go, w, gx, S);
    default:
      if (S.group_channels() >= 8) return grad_input_channels_impl<T, 0>(go, w, gx, S);
      return grad_input_impl<T>(go, w, gx, S);
  }
}

template <typename T>
void grad_weight_dispatch(const T* go, const T* x, T* gw, const InvShape& S) {
  if (S.group_channels() < 8 || (S.stride == 1 && S.Wo >= 48))
    return grad_weight_impl<T>(go, x, gw, S);
  switch (S.group_channels()) {
    case 8: return grad_weight_channels_impl<T, 8>(go, x, gw, S);
    case 16: return grad_weight_channels_impl<T, 16>(go, x, gw, S);
    case 32: return grad_weight_channels_impl<T, 32>(go, x, gw, S);
    default:
      if (S.group_channels() >= 8) return grad_weight_channels_impl<T, 0>(go, x, gw, S);
      return grad_weight_impl<T>(go, x, gw, S);
  }
}

}  // namespace

void forward(const at::Tensor& x, const at::Tensor& weight, at::Tensor& out, const InvShape& s) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "involution_fwd_cpu",
                                  [&] {
                                    forward_dispatch<scalar_t>(x.const_data_ptr<scalar_t>(),
                                                           weight.const_data_ptr<scalar_t>(),
                                                           out.mutable_data_ptr<scalar_t>(), s);
                                  });
}

void grad_input(const at::Tensor& grad_out, const at::Tensor& weight, at::Tensor& grad_x,
                const InvShape& s) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_out.scalar_type(), "involution_grad_input_cpu", [&] {
        grad_input_dispatch<scalar_t>(grad_out.const_data_ptr<scalar_t>(),
                                  weight.const_data_ptr<scalar_t>(),
                                  grad_x.mutable_data_ptr<scalar_t>(), s);
      });
}

void grad_weight(const at::Tensor& grad_out, const at::Tensor& x, at::Tensor& grad_w,
                 const InvShape& s) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_out.scalar_type(), "involution_grad_weight_cpu", [&] {
        grad_weight_dispatch<scalar_t>(grad_out.const_data_ptr<scalar_t>(),
                                   x.const_data_ptr<scalar_t>(),
                                   grad_w.mutable_data_ptr<scalar_t>(), s);
      });
}

}  // namespace invbench::cpu
