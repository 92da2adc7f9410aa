// The kernels (involution_cpu_kernels.h) on 4-lane vectors through the compiler's vector
// extension, for any CPU: the fallback path, and the only one off x86-64.
#include "involution_cpu_kernels_prelude.h"

namespace invbench::cpu {

namespace generic {
// Four lanes through the compiler's vector extension: SSE2 on x86-64, NEON on arm64.
struct Vec {
  typedef float V __attribute__((vector_size(16)));
  static constexpr int L = 4;
  static constexpr int REGS = 16;
  static V zero() { return V{0.f, 0.f, 0.f, 0.f}; }
  static V load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
  static void stream(float* p, V v) { store(p, v); }  // no portable non-temporal store
  static void fence() {}
  static V fma(V a, V b, V c) { return a * b + c; }
  static void keep(V&) {}
  static void copy_n(float* dst, const float* src, int64_t n) {  // n < L
    for (int64_t k = 0; k < n; ++k) dst[k] = src[k];
  }
  // (lo, hi)[2k] = even[k], (lo, hi)[2k + 1] = odd[k], k < L
  static void merge2(const float* even, const float* odd, V& lo, V& hi) {
    for (int k = 0; k < L; ++k) {
      (k < L / 2 ? lo : hi)[(2 * k) % L] = even[k];
      (k < L / 2 ? lo : hi)[(2 * k + 1) % L] = odd[k];
    }
  }
  // even[k] = p[2k], odd[k] = p[2k + 1] (k < L), widened to float, reading only p[lo, hi)
  // (0 <= lo < hi <= 2L) and giving 0 for the other lanes.
  template <typename T>
  static void split2_n(const T* p, int64_t lo, int64_t hi, float* even, float* odd) {
    for (int64_t k = 0; k < 2 * L; ++k) {
      const float v = k >= lo && k < hi ? static_cast<float>(p[k]) : 0.f;
      (k % 2 == 0 ? even : odd)[k / 2] = v;
    }
  }
  // L bfloat16 / float16 values widened to float (exact), and L floats rounded to
  // bfloat16 as c10::BFloat16 rounds (to nearest even, NaN to 0x7FC0).
  static V load_bf16(const c10::BFloat16* p) {
    V v;
    for (int k = 0; k < L; ++k) v[k] = static_cast<float>(p[k]);
    return v;
  }
  static V load_half(const c10::Half* p) {
    V v;
    for (int k = 0; k < L; ++k) v[k] = static_cast<float>(p[k]);
    return v;
  }
  static void store_bf16(c10::BFloat16* p, V v) {
    for (int k = 0; k < L; ++k) p[k] = c10::BFloat16(v[k]);
  }
  // The first n < L lanes only: nothing past them is read or written.
  static void store_n(float* p, V v, int64_t n) {
    for (int64_t k = 0; k < n; ++k) p[k] = v[k];
  }
  static V load_bf16_n(const c10::BFloat16* p, int64_t n) {
    V v = zero();
    for (int64_t k = 0; k < n; ++k) v[k] = static_cast<float>(p[k]);
    return v;
  }
  static void store_bf16_n(c10::BFloat16* p, V v, int64_t n) {
    for (int64_t k = 0; k < n; ++k) p[k] = c10::BFloat16(v[k]);
  }
  static V set1(float a) { return V{a, a, a, a}; }
  static V set1_bf16(const c10::BFloat16* p) { return set1(static_cast<float>(*p)); }
  static V set1_half(const c10::Half* p) { return set1(static_cast<float>(*p)); }
  static V set1_bf16_pair(const c10::BFloat16* p, V& second) {
    second = set1(static_cast<float>(p[1]));
    return set1(static_cast<float>(p[0]));
  }
  static V load_n(const float* p, int64_t n) {
    V v = zero();
    for (int64_t k = 0; k < n; ++k) v[k] = p[k];
    return v;
  }
  // v[r][c] becomes v[c][r] (a 4 x 4 block)
  static void transpose(V* v) {
    V t[L];
    for (int r = 0; r < L; ++r)
      for (int c = 0; c < L; ++c) t[c][r] = v[r][c];
    for (int r = 0; r < L; ++r) v[r] = t[r];
  }
};
#include "involution_cpu_kernels.h"
}  // namespace generic

}  // namespace invbench::cpu
