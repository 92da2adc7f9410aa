// CPU kernels of involution: the entry points, the choice of vectorised path, and the
// exact float64 kernels.
//
// Float32, bfloat16 and float16 run the vectorised kernels (involution_cpu_kernels.h)
// of the fastest path this CPU supports, found at run time; use_isa() can force a
// slower one (tests run every path the CPU has). Float64, used for gradient checks,
// runs the plain kernels below: a task is a row of output pixels (b, g, i) for the
// forward pass and the weight gradient, so the K*K weight rows of that pixel row stay
// in L1 while every channel of the group reuses them; the input gradient works on one
// (b, c) plane at a time and scatters into a private accumulator.
#include "involution_cpu.h"

#include "involution_cpu_simd.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <string>
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

std::atomic<int> g_forced{-1};  // an Isa forced through use_isa(), or -1

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512Bf16Zmm: return "avx512bf16-zmm";
    case Isa::Avx512Zmm: return "avx512-zmm";
    case Isa::Avx512Bf16: return "avx512bf16";
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "generic";
  }
}

bool isa_supported(Isa isa) {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::Avx2) return avx2;
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq");
  if (isa == Isa::Avx512 || isa == Isa::Avx512Zmm) return avx512;
  if (isa == Isa::Avx512Bf16 || isa == Isa::Avx512Bf16Zmm)
    return avx512 && __builtin_cpu_supports("avx512bf16");
#endif
  return isa == Isa::Generic;
}

// Whether this core runs 512-bit FMAs at (about) twice the 256-bit rate: then the -zmm
// paths come first. Measured once.
static bool zmm_full_width() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool full =
      isa_supported(Isa::Avx512Zmm) && avx512_zmm::zmm_fma_speedup() > 1.5;
  return full;
#else
  return false;
#endif
}

// The paths with 16-lane (512-bit) kernels.
static bool is_zmm(Isa isa) { return isa == Isa::Avx512Bf16Zmm || isa == Isa::Avx512Zmm; }

Isa active_isa() {
  const int forced = g_forced.load(std::memory_order_relaxed);
  if (forced >= 0) return static_cast<Isa>(forced);
  static const Isa best = [] {
    for (Isa isa : {Isa::Avx512Bf16Zmm, Isa::Avx512Zmm, Isa::Avx512Bf16, Isa::Avx512, Isa::Avx2}) {
      if (isa_supported(isa) && (!is_zmm(isa) || zmm_full_width())) return isa;
    }
    return Isa::Generic;
  }();
  return best;
}

std::string use_isa(const std::string& request) {
  if (request == "auto") {
    g_forced.store(-1);
  } else if (!request.empty()) {
    bool known = false;
    for (Isa isa : {Isa::Avx512Bf16Zmm, Isa::Avx512Zmm, Isa::Avx512Bf16, Isa::Avx512, Isa::Avx2,
                    Isa::Generic}) {
      if (request != isa_name(isa)) continue;
      known = true;
      TORCH_CHECK(isa_supported(isa), "involution: this CPU cannot run the ", request, " kernels");
      g_forced.store(static_cast<int>(isa));
    }
    TORCH_CHECK(known, "involution: unknown CPU kernel path '", request,
                "' (avx512bf16-zmm, avx512-zmm, avx512bf16, avx512, avx2, generic or auto)");
  }
  return isa_name(active_isa());
}

std::string kernel_path(at::ScalarType dtype) {
  if (dtype == at::kDouble) return "scalar";
  return isa_name(active_isa());
}

// Whether the forward prefetches the next task's weights (forward_t): not on the -zmm
// paths, that is on cores that run 512-bit FMAs at full width. On a Zen 5 core, with
// the prefetch left out, the forward took 0.88 to 0.95 of the time on every
// resnet-shapes layer (8- and 16-lane kernels alike; batch 8, two threads, 12 pairs in
// one process). The other paths keep it as they were tuned on Zen 3 and Zen 4 cores,
// which this choice was not measured on.
static bool prefetch_next_weights() {
  const Isa isa = active_isa();
  return isa != Isa::Avx512Bf16Zmm && isa != Isa::Avx512Zmm;
}

// `wide`: the -zmm paths run the op on their 16-lane kernels (wide_rows), else on the
// 8-lane ones of the same instruction set.
#if defined(__x86_64__) || defined(_M_X64)
#define INVBENCH_SIMD_CALL(fn, wide, ...)                                                \
  switch (active_isa()) {                                                                \
    case Isa::Avx512Bf16Zmm:                                                             \
      return (wide) ? avx512bf16_zmm::fn(__VA_ARGS__) : avx512bf16::fn(__VA_ARGS__);     \
    case Isa::Avx512Zmm: return (wide) ? avx512_zmm::fn(__VA_ARGS__) : avx512::fn(__VA_ARGS__); \
    case Isa::Avx512Bf16: return avx512bf16::fn(__VA_ARGS__);                            \
    case Isa::Avx512: return avx512::fn(__VA_ARGS__);                                    \
    case Isa::Avx2: return avx2::fn(__VA_ARGS__);                                        \
    default: return generic::fn(__VA_ARGS__);                                            \
  }
#else
#define INVBENCH_SIMD_CALL(fn, wide, ...) return generic::fn(__VA_ARGS__);
#endif

// Whether the active path is a -zmm one. The 16-lane kernels' own predicates
// (wide_kernels::...) are asked only then: they are compiled for AVX-512.
static bool zmm_path() { return is_zmm(active_isa()); }
#if defined(__x86_64__) || defined(_M_X64)
namespace wide_kernels = avx512_zmm;
#else
namespace wide_kernels = generic;  // never asked: no -zmm path is active there
#endif

// Whether rows of `cols` columns go to the 16-lane kernels: where 16 lanes leave no more
// of them idle than 8 do (14, 16, 28, 32 or 112 columns, not 7, 24 or 56). Measured on a
// Zen 5 core (in one process, paths alternated): 16 lanes took 0.82 to 0.93 of the time
// on the resnet-shapes forwards of 14 and 28 columns, and 1.14 on layer1's 56 columns
// (four 16-lane vectors a row against seven full 8-lane ones).
static bool wide_rows(int64_t cols) {
  return cols > 8 && (cols + 15) / 16 * 16 <= (cols + 7) / 8 * 8;
}

void forward(const at::Tensor& x, const at::Tensor& weight, at::Tensor& out, const InvShape& s) {
  if (x.scalar_type() == at::kDouble)
    return forward_impl<double>(x.const_data_ptr<double>(), weight.const_data_ptr<double>(),
                                out.mutable_data_ptr<double>(), s);
  // Channel vectors fill all 16 lanes whatever the row's length.
  const bool wide = zmm_path() && (wide_kernels::across_channels(s) || wide_rows(s.Wo));
  INVBENCH_SIMD_CALL(forward, wide, x, weight, out, s, prefetch_next_weights())
}

void grad_input(const at::Tensor& grad_out, const at::Tensor& weight, at::Tensor& grad_x,
                const InvShape& s) {
  if (grad_out.scalar_type() == at::kDouble)
    return grad_input_impl<double>(grad_out.const_data_ptr<double>(),
                                   weight.const_data_ptr<double>(),
                                   grad_x.mutable_data_ptr<double>(), s);
  // 16 lanes: for channel vectors (as in the forward) always; for the gather's pixel
  // vectors where one column phase of a row fills them.
  const bool wide = zmm_path() && (wide_kernels::across_channels(s) ||
                                   wide_rows((s.W + s.stride - 1) / s.stride));
  INVBENCH_SIMD_CALL(grad_input, wide, grad_out, weight, grad_x, s)
}

void grad_weight(const at::Tensor& grad_out, const at::Tensor& x, at::Tensor& grad_w,
                 const InvShape& s) {
  if (grad_out.scalar_type() == at::kDouble)
    return grad_weight_impl<double>(grad_out.const_data_ptr<double>(), x.const_data_ptr<double>(),
                                    grad_w.mutable_data_ptr<double>(), s);
  // 16 lanes: for (batch, group) pairs always; for pixel vectors where a row fills them.
  const bool wide = zmm_path() && (wide_kernels::across_images(s) || wide_rows(s.Wo));
  INVBENCH_SIMD_CALL(grad_weight, wide, grad_out, x, grad_w, s)
}

}  // namespace invbench::cpu
