// The 256-bit vector types of the x86-64 paths (AVX2, AVX-512, AVX512_BF16), as macros
// that each path's translation unit expands inside its own namespace and compiler target
// region, and the target-region macros themselves.
#pragma once

#include "involution_cpu_kernels_prelude.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#define INVBENCH_TARGET_BEGIN(t) \
  _Pragma("clang attribute push(__attribute__((target(" t "))), apply_to = function)")
#define INVBENCH_TARGET_END _Pragma("clang attribute pop")
#else
#define INVBENCH_PRAGMA(x) _Pragma(#x)
#define INVBENCH_TARGET_BEGIN(t) _Pragma("GCC push_options") INVBENCH_PRAGMA(GCC target(t))
#define INVBENCH_TARGET_END _Pragma("GCC pop_options")
#endif

// Eight float lanes (256 bits); REGS is how many vector registers the target has;
// COPY_N copies n < 8 floats with masked loads and stores (no access past them).
// The _N functions touch the first n < 8 elements only: masked loads and stores.
// AVX2 has no 16-bit masked load or store: a run of bfloat16 values is read as the 32-bit
// words it fills (a masked load) plus at most one value at each end (broadcast and
// blended in), all in registers; copied element by element into a buffer and loaded
// from there, the load waited for the copies' stores (it spans several of them, so the
// store buffer cannot forward it). Its bfloat16 stores of a tail still go through a
// buffer (each element's load comes from one store).
#define INVBENCH_COPY_N_AVX2                                                      \
  static __m256i first_n(int64_t n) {                                             \
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),             \
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));         \
  }                                                                               \
  static void copy_n(float* dst, const float* src, int64_t n) {                   \
    _mm256_maskstore_ps(dst, first_n(n), _mm256_maskload_ps(src, first_n(n)));    \
  }                                                                               \
  static void store_n(float* p, V v, int64_t n) { _mm256_maskstore_ps(p, first_n(n), v); } \
  static V load_n(const float* p, int64_t n) { return _mm256_maskload_ps(p, first_n(n)); } \
  /* 16-bit lane `at` of v set to p[at] */                                        \
  static __m256i put_u16(__m256i v, const c10::BFloat16* p, int64_t at) {         \
    const __m256i k = _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); \
    const __m256i one = _mm256_cmpeq_epi16(k, _mm256_set1_epi16(static_cast<short>(at))); \
    return _mm256_blendv_epi8(v, _mm256_set1_epi16(static_cast<short>(p[at].x)), one); \
  }                                                                               \
  /* p[lo .. hi) in 16-bit lanes lo .. hi (0 <= lo < hi <= 16), zeros elsewhere */ \
  static __m256i load_u16_range(const c10::BFloat16* p, int64_t lo, int64_t hi) {  \
    __m256i v = _mm256_maskload_epi32(reinterpret_cast<const int*>(p), lanes((lo + 1) / 2, hi / 2, 0)); \
    if (lo % 2) v = put_u16(v, p, lo);                                            \
    if (hi % 2) v = put_u16(v, p, hi - 1);                                        \
    return v;                                                                     \
  }                                                                               \
  static V load_bf16_n(const c10::BFloat16* p, int64_t n) {                       \
    const __m128i h = _mm256_castsi256_si128(load_u16_range(p, 0, n));            \
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));  \
  }                                                                               \
  static void store_bf16_n(c10::BFloat16* p, V v, int64_t n) {                    \
    c10::BFloat16 part[8];                                                        \
    _mm_storeu_si128(reinterpret_cast<__m128i*>(part), to_bf16(v));               \
    for (int64_t k = 0; k < n; ++k) p[k] = part[k];                               \
  }                                                                               \
  static __m256i lanes(int64_t lo, int64_t hi, int base) {                        \
    const __m256i k = _mm256_add_epi32(_mm256_set1_epi32(base),                   \
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); \
    return _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(hi)), k), \
                            _mm256_cmpgt_epi32(k, _mm256_set1_epi32(static_cast<int>(lo) - 1))); \
  }                                                                               \
  static void split2_n(const float* p, int64_t lo, int64_t hi, float* even, float* odd) { \
    split2v(_mm256_maskload_ps(p, lanes(lo, hi, 0)), _mm256_maskload_ps(p + 8, lanes(lo, hi, 8)), \
            even, odd);                                                           \
  }                                                                               \
  static void split2_n(const c10::BFloat16* p, int64_t lo, int64_t hi, float* even, float* odd) { \
    if (lo == 0 && hi == 16)                                                      \
      return split2_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), even, odd); \
    split2_bf16(load_u16_range(p, lo, hi), even, odd);                            \
  }
#define INVBENCH_COPY_N_AVX512                                                    \
  static __mmask8 first_n(int64_t n) { return static_cast<__mmask8>((1u << n) - 1); } \
  static void copy_n(float* dst, const float* src, int64_t n) {                   \
    _mm256_mask_storeu_ps(dst, first_n(n), _mm256_maskz_loadu_ps(first_n(n), src)); \
  }                                                                               \
  static void store_n(float* p, V v, int64_t n) { _mm256_mask_storeu_ps(p, first_n(n), v); } \
  static V load_n(const float* p, int64_t n) { return _mm256_maskz_loadu_ps(first_n(n), p); } \
  static V load_bf16_n(const c10::BFloat16* p, int64_t n) {                       \
    const __m128i h = _mm_maskz_loadu_epi16(first_n(n), p);                       \
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));  \
  }                                                                               \
  static void store_bf16_n(c10::BFloat16* p, V v, int64_t n) {                    \
    _mm_mask_storeu_epi16(p, first_n(n), to_bf16(v));                             \
  }                                                                               \
  static __mmask16 lanes(int64_t lo, int64_t hi) {                                \
    return static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));          \
  }                                                                               \
  static void split2_n(const float* p, int64_t lo, int64_t hi, float* even, float* odd) { \
    const __mmask16 m = lanes(lo, hi);                                            \
    split2v(_mm256_maskz_loadu_ps(static_cast<__mmask8>(m), p),                   \
            _mm256_maskz_loadu_ps(static_cast<__mmask8>(m >> 8), p + 8), even, odd); \
  }                                                                               \
  static void split2_n(const c10::BFloat16* p, int64_t lo, int64_t hi, float* even, float* odd) { \
    split2_bf16(_mm256_maskz_loadu_epi16(lanes(lo, hi), p), even, odd);           \
  }
// Float to bfloat16 as c10::BFloat16 rounds: to nearest even, any NaN to 0x7FC0.
// Gives the 8 results as 32-bit lanes, each holding its bfloat16 in the low half.
#define INVBENCH_BF16_ROUND                                                       \
  static __m256i round_bf16(V v) {                                                \
    const __m256i u = _mm256_castps_si256(v);                                     \
    const __m256i bias = _mm256_add_epi32(                                        \
        _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1)),         \
        _mm256_set1_epi32(0x7FFF));                                               \
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);           \
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));   \
    return _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);                 \
  }                                                                               \
  static V load_bf16(const c10::BFloat16* p) {                                    \
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));       \
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));  \
  }                                                                               \
  static V load_half(const c10::Half* p) {                                        \
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); \
  }
// TO_BF16: the eight results as bfloat16 in 128 bits. AVX2 packs the 32-bit lanes' low
// halves by a saturating pack (the values are below 0x10000) and a lane fix-up,
// AVX-512 by vpmovdw.
#define INVBENCH_TO_BF16_AVX2                                                     \
  static __m128i to_bf16(V v) {                                                   \
    const __m256i r = round_bf16(v);                                              \
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08)); \
  }
#define INVBENCH_TO_BF16_AVX512                                                   \
  static __m128i to_bf16(V v) { return _mm256_cvtepi32_epi16(round_bf16(v)); }
// AVX512_BF16: vcvtneps2bf16 rounds to nearest even as c10 does, in one instruction, but
// it reads denormals as zero and keeps a NaN's payload (c10 gives 0x7FC0): a vector
// holding either (vfpclassps: QNaN 0x01, denormal 0x20, SNaN 0x80) takes the sequence.
#define INVBENCH_TO_BF16_NATIVE                                                   \
  static __m128i to_bf16(V v) {                                                   \
    if (_mm256_fpclass_ps_mask(v, 0xA1) != 0) return _mm256_cvtepi32_epi16(round_bf16(v)); \
    return (__m128i)_mm256_cvtneps_pbh(v);                                        \
  }
#define INVBENCH_VEC256(regs, COPYN, TO_BF16)                                     \
  struct Vec {                                                                    \
    using V = __m256;                                                             \
    static constexpr int L = 8;                                                   \
    static constexpr int REGS = regs;                                             \
    static V zero() { return _mm256_setzero_ps(); }                               \
    static V load(const float* p) { return _mm256_loadu_ps(p); }                  \
    static void store(float* p, V v) { _mm256_storeu_ps(p, v); }                  \
    /* p 32-byte aligned; around the caches, no read for ownership */             \
    static void stream(float* p, V v) { _mm256_stream_ps(p, v); }                 \
    static void fence() { _mm_sfence(); }                                         \
    static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }              \
    static V set1(float a) { return _mm256_set1_ps(a); }                          \
    /* one bfloat16 in every lane, widened (a word broadcast and a shift) */       \
    static V set1_bf16(const c10::BFloat16* p) {                                  \
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_set1_epi16(static_cast<short>(p->x)), 16)); \
    }                                                                             \
    static V set1_half(const c10::Half* p) {                                      \
      return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(p->x)));           \
    }                                                                             \
    /* p[0] and p[1] in every lane, widened: one 32-bit broadcast, a shift, a mask */ \
    static V set1_bf16_pair(const c10::BFloat16* p, V& second) {                  \
      uint32_t u;                                                                 \
      std::memcpy(&u, p, 4);                                                      \
      const __m256i b = _mm256_set1_epi32(static_cast<int>(u));                   \
      second = _mm256_castsi256_ps(_mm256_and_si256(b, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u)))); \
      return _mm256_castsi256_ps(_mm256_slli_epi32(b, 16));                       \
    }                                                                             \
    /* p[0] and p[1] in every lane: one 64-bit broadcast, then each float copied */ \
    /* over its pair's lanes (vmovsldup, vmovshdup) */                            \
    static V set1_f32_pair(const float* p, V& second) {                           \
      double d;                                                                   \
      std::memcpy(&d, p, 8);                                                      \
      const V b = _mm256_castpd_ps(_mm256_set1_pd(d));                            \
      second = _mm256_movehdup_ps(b);                                             \
      return _mm256_moveldup_ps(b);                                               \
    }                                                                             \
    /* v[r][c] becomes v[c][r] (an 8 x 8 block in registers) */                   \
    static void transpose(V* v) {                                                 \
      V t[8];                                                                     \
      for (int k = 0; k < 4; ++k) {                                               \
        t[2 * k] = _mm256_unpacklo_ps(v[2 * k], v[2 * k + 1]);                    \
        t[2 * k + 1] = _mm256_unpackhi_ps(v[2 * k], v[2 * k + 1]);                \
      }                                                                           \
      for (int k = 0; k < 2; ++k)                                                 \
        for (int h = 0; h < 2; ++h) {                                             \
          const __m256d a = _mm256_castps_pd(t[4 * k + h]), b = _mm256_castps_pd(t[4 * k + 2 + h]); \
          v[4 * k + 2 * h] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, b));         \
          v[4 * k + 2 * h + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, b));     \
        }                                                                         \
      for (int h = 0; h < 4; ++h) {                                               \
        t[h] = _mm256_permute2f128_ps(v[h], v[4 + h], 0x20);                      \
        t[4 + h] = _mm256_permute2f128_ps(v[h], v[4 + h], 0x31);                  \
      }                                                                           \
      for (int k = 0; k < 8; ++k) v[k] = t[k];                                    \
    }                                                                             \
    /* v stays in a register: its load is not folded into each instruction using it */ \
    static void keep(V& v) { asm("" : "+x"(v)); }                                  \
    COPYN                                                                         \
    INVBENCH_BF16_ROUND                                                           \
    TO_BF16                                                                       \
    static void store_bf16(c10::BFloat16* p, V v) {                               \
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p), to_bf16(v));                \
    }                                                                             \
    /* even[k] = (a, b)[2k], odd[k] = (a, b)[2k + 1] */                           \
    static void split2v(V a, V b, float* even, float* odd) {                      \
      store(even, _mm256_castpd_ps(_mm256_permute4x64_pd(                         \
                      _mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8)));   \
      store(odd, _mm256_castpd_ps(_mm256_permute4x64_pd(                          \
                     _mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8)));    \
    }                                                                             \
    /* (lo, hi)[2k] = even[k], (lo, hi)[2k + 1] = odd[k], k < 8 */                \
    static void merge2(const float* even, const float* odd, V& lo, V& hi) {       \
      const V e = load(even), o = load(odd);                                      \
      const V a = _mm256_unpacklo_ps(e, o), b = _mm256_unpackhi_ps(e, o);         \
      lo = _mm256_permute2f128_ps(a, b, 0x20);                                    \
      hi = _mm256_permute2f128_ps(a, b, 0x31);                                    \
    }                                                                             \
    /* 16 bfloat16 as 32-bit words: the even ones are the low halves, the odd the high */ \
    static void split2_bf16(__m256i v, float* even, float* odd) {                 \
      store(even, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));                 \
      store(odd, _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(-65536)))); \
    }                                                                             \
    static void split2_n(const c10::Half* p, int64_t lo, int64_t hi, float* even, float* odd) { \
      c10::Half part[16] = {};                                                    \
      for (int64_t k = lo; k < hi; ++k) part[k] = p[k];                           \
      split2v(load_half(part), load_half(part + 8), even, odd);                   \
    }                                                                             \
  };

#endif
