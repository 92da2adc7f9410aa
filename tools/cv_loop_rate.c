// How fast one core runs the taps' loop of the forward across channels (cv_taps in
// invbench/csrc/involution_cpu_chanvec.h) on data in L1: K = 7, stride 1, R output pixels
// a call (R accumulators), each kernel row loading R + 6 input vectors once and issuing
// R * 7 FMAs. The weights are broadcast from memory, one per FMA, or taken from a
// register (what the loop would run at without the weight stream), or, as the forward
// does, in pairs: one 64-bit broadcast of pixels r and r + 1's weights, each float then
// copied over the vector (vmovsldup, vmovshdup), pixel r + 1's kept until its column
// comes; "half paired" pairs every other pair of pixels and broadcasts the rest singly,
// which moves half of the copies from the shuffle units to the load units.
//
//   gcc -O3 tools/cv_loop_rate.c -o cv_loop_rate && ./cv_loop_rate
//
// Prints G 16-lane FMAs a second per kind, three rounds; compare kinds within a round.
// The forward itself adds staging, transposes and weights that come from L2 or L3.
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define K 7
#define L 16
#define PLANE 64  // floats between two weight planes
#define XROW (32 * L)  // floats between two staged input rows

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

enum Weights { FROM_MEMORY, FROM_REGISTER, IN_PAIRS, HALF_PAIRED };

// Pixel r's weight of a tap (row: the tap's weights of the call's pixels). IN_PAIRS: every
// pair (r, r + 1) from one broadcast, pixel r + 1's kept in carry; HALF_PAIRED: pairs with
// (r / 2) even so, the others broadcast singly. Pixels run in descending order, so an odd
// pixel takes its carried weight before the even one below it replaces it.
__attribute__((target("avx512f"), always_inline)) static inline __m512 weight(
    enum Weights kind, const float* row, int r, int R, __m512 wreg, __m512* carry) {
  if (kind == FROM_REGISTER) return wreg;
  const int paired = (kind == IN_PAIRS || (kind == HALF_PAIRED && (r / 2) % 2 == 0)) &&
                     (r % 2 == 1 || r + 1 < R);
  if (!paired) return _mm512_set1_ps(row[r]);
  if (r % 2 == 1) return carry[r];
  double d;
  __builtin_memcpy(&d, row + r, 8);
  const __m512 b = _mm512_castpd_ps(_mm512_set1_pd(d));
  carry[r + 1] = _mm512_movehdup_ps(b);
  return _mm512_moveldup_ps(b);
}

// acc[r] += weight(tap, r) * x[r + kw] for every tap of R output pixels.
#define TAPS_LOOP(NAME, R, WEIGHTS)                                                   \
  __attribute__((target("avx512f"), noinline)) static void NAME(                      \
      float* out, const float* w, const float* x, long calls) {                       \
    for (long call = 0; call < calls; ++call) {                                       \
      __m512 acc[R], carry[R];                                                        \
      for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();                       \
      const float* wk[K];                                                             \
      for (int kw = 0; kw < K; ++kw) wk[kw] = w + kw * PLANE;                         \
      const __m512 wreg = _mm512_set1_ps(1e-3f);                                      \
      const float* xr = x;                                                            \
      for (int kh = 0; kh < K; ++kh, xr += XROW) {                                    \
        _Pragma("GCC unroll 32") for (int j = 0; j < R - 1 + K; ++j) {                \
          __m512 xv = _mm512_load_ps(xr + j * L);                                     \
          __asm__("" : "+v"(xv)); /* one load for all its FMAs */                     \
          _Pragma("GCC unroll 16") for (int q = 0; q < R; ++q) {                      \
            const int r = R - 1 - q, kw = j - r;                                      \
            if (kw < 0 || kw >= K) continue;                                          \
            acc[r] = _mm512_fmadd_ps(weight(WEIGHTS, wk[kw], r, R, wreg, carry), xv,  \
                                     acc[r]);                                         \
          }                                                                           \
        }                                                                             \
        for (int kw = 0; kw < K; ++kw) wk[kw] += K * PLANE;                           \
      }                                                                               \
      for (int r = 0; r < R; ++r) _mm512_store_ps(out + r * L, acc[r]);               \
    }                                                                                 \
  }

TAPS_LOOP(r7_memory, 7, FROM_MEMORY)
TAPS_LOOP(r7_register, 7, FROM_REGISTER)
TAPS_LOOP(r14_memory, 14, FROM_MEMORY)
TAPS_LOOP(r14_register, 14, FROM_REGISTER)
TAPS_LOOP(r14_paired, 14, IN_PAIRS)
TAPS_LOOP(r14_half_paired, 14, HALF_PAIRED)

typedef void (*LoopFn)(float*, const float*, const float*, long);

int main(void) {
  float* w = aligned_alloc(64, K * K * PLANE * sizeof(float));
  float* x = aligned_alloc(64, K * XROW * sizeof(float));
  float* out = aligned_alloc(64, 14 * L * sizeof(float));
  for (int i = 0; i < K * K * PLANE; ++i) w[i] = 1e-3f * (float)(i % 7 + 1);
  for (int i = 0; i < K * XROW; ++i) x[i] = 1e-3f * (float)(i % 5 + 1);
  const struct {
    const char* name;
    LoopFn fn;
    int R;
  } kinds[] = {{"R=7 weights from memory", r7_memory, 7},
               {"R=7 weights from a register", r7_register, 7},
               {"R=14 weights from memory", r14_memory, 14},
               {"R=14 weights from a register", r14_register, 14},
               {"R=14 weights in pairs", r14_paired, 14},
               {"R=14 weights half paired", r14_half_paired, 14}};
  const int nkinds = sizeof kinds / sizeof kinds[0];
  const long fmas_per_round = 400000000L;
  for (int round = 0; round < 3; ++round) {
    for (int k = 0; k < nkinds; ++k) {
      const long calls = fmas_per_round / (kinds[k].R * K * K);
      const double t0 = now_s();
      kinds[k].fn(out, w, x, calls);
      const double s = now_s() - t0;
      printf("%-30s %5.2f G FMA/s%s", kinds[k].name, calls * kinds[k].R * K * K / s / 1e9,
             k == nkinds - 1 ? "\n" : (k % 2 ? "\n  " : " | "));
    }
  }
  fprintf(stderr, "%g\n", out[3]);  // keeps the results live
  free(w);
  free(x);
  free(out);
  return 0;
}
