// The 512-bit vector type of the AVX-512 `-zmm` paths, as a macro that each path's
// translation unit expands inside its own namespace and compiler target region.
//
// Sixteen float lanes with AVX-512's 32 registers. On a CPU that executes 512-bit FMAs
// at full width (two a cycle on a Zen 5 server core, 230 GFLOP/s a core against 115 for
// 256-bit ones) a row of 16 or 32 pixels takes half the instructions it takes in 8-lane
// vectors; the dispatcher (involution_cpu.cpp, wide_rows) keeps rows that 16 lanes would
// cover with more idle lanes than 8 (7 or 56 pixels) on the 8-lane kernels.
#pragma once

#include "involution_cpu_vec256.h"

#if defined(__x86_64__) || defined(_M_X64)

// TO_BF16 (to_bf16(V) -> __m256i, the sixteen results as bfloat16): vpmovdw of the
// portable rounding, or AVX512_BF16's conversion where it gives the same bits (as in
// INVBENCH_TO_BF16_NATIVE: not for a denormal or a NaN).
#define INVBENCH_TO_BF16_AVX512_ZMM                                               \
  static __m256i to_bf16(V v) { return _mm512_cvtepi32_epi16(round_bf16(v)); }
#define INVBENCH_TO_BF16_NATIVE_ZMM                                               \
  static __m256i to_bf16(V v) {                                                   \
    if (_mm512_fpclass_ps_mask(v, 0xA1) != 0) return _mm512_cvtepi32_epi16(round_bf16(v)); \
    return (__m256i)_mm512_cvtneps_pbh(v);                                        \
  }

#define INVBENCH_VEC512(TO_BF16)                                                  \
  struct Vec {                                                                    \
    using V = __m512;                                                             \
    static constexpr int L = 16;                                                  \
    static constexpr int REGS = 32;                                               \
    static V zero() { return _mm512_setzero_ps(); }                               \
    static V load(const float* p) { return _mm512_loadu_ps(p); }                  \
    static void store(float* p, V v) { _mm512_storeu_ps(p, v); }                  \
    /* p 32-byte aligned (as on the 8-lane paths: two 256-bit halves); around the */ \
    /* caches, no read for ownership */                                           \
    static void stream(float* p, V v) {                                           \
      _mm256_stream_ps(p, _mm512_castps512_ps256(v));                             \
      _mm256_stream_ps(p + 8, _mm512_extractf32x8_ps(v, 1));                      \
    }                                                                             \
    static void fence() { _mm_sfence(); }                                         \
    static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }              \
    static V set1(float a) { return _mm512_set1_ps(a); }                          \
    /* one bfloat16 in every lane, widened (a word broadcast and a shift) */       \
    static V set1_bf16(const c10::BFloat16* p) {                                  \
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_set1_epi16(static_cast<short>(p->x)), 16)); \
    }                                                                             \
    static V set1_half(const c10::Half* p) {                                      \
      return _mm512_cvtph_ps(_mm256_set1_epi16(static_cast<short>(p->x)));        \
    }                                                                             \
    /* p[0] and p[1] in every lane, widened: one 32-bit broadcast, a shift, a mask */ \
    static V set1_bf16_pair(const c10::BFloat16* p, V& second) {                  \
      uint32_t u;                                                                 \
      std::memcpy(&u, p, 4);                                                      \
      const __m512i b = _mm512_set1_epi32(static_cast<int>(u));                   \
      second = _mm512_castsi512_ps(_mm512_and_si512(b, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)))); \
      return _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));                       \
    }                                                                             \
    /* p[0] and p[1] in every lane: one 64-bit broadcast, then each float copied */ \
    /* over its pair's lanes (vmovsldup, vmovshdup) */                            \
    static V set1_f32_pair(const float* p, V& second) {                           \
      double d;                                                                   \
      std::memcpy(&d, p, 8);                                                      \
      const V b = _mm512_castpd_ps(_mm512_set1_pd(d));                            \
      second = _mm512_movehdup_ps(b);                                             \
      return _mm512_moveldup_ps(b);                                               \
    }                                                                             \
    static V load_n(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(first_n(n), p); } \
    /* v[r][c] becomes v[c][r] (a 16 x 16 block in registers) */                  \
    static void transpose(V* v) {                                                 \
      V t[16];                                                                    \
      for (int k = 0; k < 8; ++k) {                                               \
        t[2 * k] = _mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]);                    \
        t[2 * k + 1] = _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]);                \
      }                                                                           \
      for (int k = 0; k < 4; ++k)                                                 \
        for (int h = 0; h < 2; ++h) {                                             \
          const __m512d a = _mm512_castps_pd(t[4 * k + h]), b = _mm512_castps_pd(t[4 * k + 2 + h]); \
          v[4 * k + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));         \
          v[4 * k + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));     \
        }                                                                         \
      for (int k = 0; k < 2; ++k)                                                 \
        for (int h = 0; h < 4; ++h) {                                             \
          t[8 * k + h] = _mm512_shuffle_f32x4(v[8 * k + h], v[8 * k + 4 + h], 0x88); \
          t[8 * k + 4 + h] = _mm512_shuffle_f32x4(v[8 * k + h], v[8 * k + 4 + h], 0xDD); \
        }                                                                         \
      for (int h = 0; h < 8; ++h) {                                               \
        v[h] = _mm512_shuffle_f32x4(t[h], t[8 + h], 0x88);                        \
        v[8 + h] = _mm512_shuffle_f32x4(t[h], t[8 + h], 0xDD);                    \
      }                                                                           \
    }                                                                             \
    /* v stays in a register (any of the 32): its load is not folded into each use */ \
    static void keep(V& v) { asm("" : "+v"(v)); }                                  \
    /* the first n < 16 lanes: masked loads and stores, nothing past them touched */ \
    static __mmask16 first_n(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); } \
    static void copy_n(float* dst, const float* src, int64_t n) {                 \
      _mm512_mask_storeu_ps(dst, first_n(n), _mm512_maskz_loadu_ps(first_n(n), src)); \
    }                                                                             \
    static void store_n(float* p, V v, int64_t n) { _mm512_mask_storeu_ps(p, first_n(n), v); } \
    static V widen_bf16(__m256i h) {                                              \
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); \
    }                                                                             \
    static V load_bf16(const c10::BFloat16* p) {                                  \
      return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); \
    }                                                                             \
    static V load_bf16_n(const c10::BFloat16* p, int64_t n) {                     \
      return widen_bf16(_mm256_maskz_loadu_epi16(first_n(n), p));                 \
    }                                                                             \
    static V load_half(const c10::Half* p) {                                      \
      return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); \
    }                                                                             \
    /* float to bfloat16 as c10 rounds (nearest even, any NaN to 0x7FC0), each result */ \
    /* in the low half of its 32-bit lane */                                      \
    static __m512i round_bf16(V v) {                                              \
      const __m512i u = _mm512_castps_si512(v);                                   \
      const __m512i bias = _mm512_add_epi32(                                      \
          _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)),       \
          _mm512_set1_epi32(0x7FFF));                                             \
      const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);         \
      return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q),     \
                                   _mm512_set1_epi32(0x7FC0));                    \
    }                                                                             \
    TO_BF16                                                                       \
    static void store_bf16(c10::BFloat16* p, V v) {                               \
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_bf16(v));             \
    }                                                                             \
    static void store_bf16_n(c10::BFloat16* p, V v, int64_t n) {                  \
      _mm256_mask_storeu_epi16(p, first_n(n), to_bf16(v));                        \
    }                                                                             \
    /* lanes lo .. hi of 32 (0 <= lo < hi <= 32) */                               \
    static __mmask32 lanes(int64_t lo, int64_t hi) {                              \
      return static_cast<__mmask32>(((uint64_t(1) << hi) - 1) & ~((uint64_t(1) << lo) - 1)); \
    }                                                                             \
    /* even[k] = (a, b)[2k], odd[k] = (a, b)[2k + 1] */                           \
    static void split2v(V a, V b, float* even, float* odd) {                      \
      const __m512i e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, \
                                          28, 30);                                \
      store(even, _mm512_permutex2var_ps(a, e, b));                               \
      store(odd, _mm512_permutex2var_ps(a, _mm512_add_epi32(e, _mm512_set1_epi32(1)), b)); \
    }                                                                             \
    /* (lo, hi)[2k] = even[k], (lo, hi)[2k + 1] = odd[k], k < 16 */               \
    static void merge2(const float* even, const float* odd, V& lo, V& hi) {       \
      const V e = load(even), o = load(odd);                                      \
      const __m512i k = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, \
                                          7, 23);                                 \
      lo = _mm512_permutex2var_ps(e, k, o);                                       \
      hi = _mm512_permutex2var_ps(e, _mm512_add_epi32(k, _mm512_set1_epi32(8)), o); \
    }                                                                             \
    /* 32 bfloat16 as 32-bit words: the even ones are the low halves, the odd the high */ \
    static void split2_bf16(__m512i v, float* even, float* odd) {                 \
      store(even, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));                 \
      store(odd, _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(-65536)))); \
    }                                                                             \
    /* even[k] = p[2k], odd[k] = p[2k + 1] (k < 16) as floats, reading p[lo, hi) only */ \
    static void split2_n(const float* p, int64_t lo, int64_t hi, float* even, float* odd) { \
      const __mmask32 m = lanes(lo, hi);                                          \
      split2v(_mm512_maskz_loadu_ps(static_cast<__mmask16>(m), p),                \
              _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> 16), p + 16), even, odd); \
    }                                                                             \
    static void split2_n(const c10::BFloat16* p, int64_t lo, int64_t hi, float* even, float* odd) { \
      split2_bf16(_mm512_maskz_loadu_epi16(lanes(lo, hi), p), even, odd);         \
    }                                                                             \
    static void split2_n(const c10::Half* p, int64_t lo, int64_t hi, float* even, float* odd) { \
      c10::Half part[32] = {};                                                    \
      for (int64_t k = lo; k < hi; ++k) part[k] = p[k];                           \
      split2v(load_half(part), load_half(part + 16), even, odd);                  \
    }                                                                             \
  };

#endif
