// The kernels (involution_cpu_kernels.h) for AVX-512 on 512-bit vectors (16 lanes, 32
// registers, masked loads and stores).
#include "involution_cpu_vec512.h"

#include <chrono>

#if defined(__x86_64__) || defined(_M_X64)
namespace invbench::cpu {

INVBENCH_TARGET_BEGIN("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")
namespace avx512_zmm {
INVBENCH_VEC512(INVBENCH_TO_BF16_AVX512_ZMM)
#include "involution_cpu_kernels.h"

namespace {
// n rounds of 12 independent FMA chains (enough to fill two pipelines of 4-cycle FMAs),
// in 8 or 16 lanes; the result keeps the compiler from dropping the work.
template <typename V, V (*FMA)(V, V, V)>
float fma_chains(int64_t n, V b, V c) {
  V a[12];
  for (int i = 0; i < 12; ++i) a[i] = c;
  for (int64_t k = 0; k < n; ++k)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = FMA(a[i], b, c);
  V s = a[0];
  for (int i = 1; i < 12; ++i) s = FMA(s, b, a[i]);
  float out[16];
  std::memcpy(out, &s, sizeof s);
  return out[0];
}
__m256 fma256(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
__m512 fma512(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }

template <typename F>
double seconds_of(const F& f, volatile float& sink) {
  const auto t0 = std::chrono::steady_clock::now();
  sink = sink + f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

double zmm_fma_speedup() {
  // 20 000 rounds: 240 000 FMAs a run. Best of three alternated runs each, so a
  // preemption during one run does not decide; the whole check took 0.41 to 0.44 ms on a
  // Zen 5 core (three processes).
  constexpr int64_t kRounds = 20000;
  volatile float sink = 0.f;
  const auto y = [] {
    return fma_chains<__m256, fma256>(kRounds, _mm256_set1_ps(0.999f), _mm256_set1_ps(1e-4f));
  };
  const auto z = [] {
    return fma_chains<__m512, fma512>(kRounds, _mm512_set1_ps(0.999f), _mm512_set1_ps(1e-4f));
  };
  seconds_of(y, sink);  // the first 512-bit instructions may wait for the unit to power up
  seconds_of(z, sink);
  double ty = 1e9, tz = 1e9;
  for (int r = 0; r < 3; ++r) {
    ty = std::min(ty, seconds_of(y, sink));
    tz = std::min(tz, seconds_of(z, sink));
  }
  return 2.0 * ty / tz;  // a 512-bit FMA does twice the work of a 256-bit one
}
}  // namespace avx512_zmm
INVBENCH_TARGET_END

}  // namespace invbench::cpu
#endif
