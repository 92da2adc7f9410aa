// How fast one core runs 512-bit FMAs, by where the multiplier comes from: a register, a
// whole aligned vector in memory, one float broadcast to every lane (folded into the FMA,
// or a separate vbroadcastss), a vector load that crosses a cache line, or broadcasts of
// weights that are each read once, in order, from an array larger than L2.
//
// The forward across a group's channels broadcasts a pixel's weight to the group's
// channels for every FMA; oneDNN's depthwise convolution multiplies by weight vectors it
// keeps in registers. This measures what that difference costs on the CPU at hand.
//
//   gcc -O2 -mavx512f -mfma tools/fma_operands.c -o fma_operands && ./fma_operands
//
// Twelve independent accumulator chains (enough to cover the FMA latency on two pipes),
// 2e7 rounds each, every kind timed three times, alternated; the best of the three is
// printed, in nanoseconds per FMA. Whatever the machine's state, compare kinds within
// one run, not across runs.
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define ROUNDS 20000000L
#define CHAINS 12

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static float sink[16];

static void keep_sum(const __m512* acc) {
  __m512 s = acc[0];
  for (int i = 1; i < CHAINS; ++i) s = _mm512_add_ps(s, acc[i]);
  _mm512_storeu_ps(sink, s);
}

// One kind: the multiplier of chain i is OPERAND(p, i); p is hidden from the compiler in
// every round, so the loads stay in the loop.
#define KIND(name, OPERAND)                                                  \
  __attribute__((noinline)) static double name(const float* base) {          \
    __m512 acc[CHAINS], pre[CHAINS];                                         \
    const __m512 x = _mm512_set1_ps(1e-9f);                                  \
    for (int i = 0; i < CHAINS; ++i) {                                       \
      acc[i] = _mm512_setzero_ps();                                          \
      pre[i] = _mm512_set1_ps(base[i]);                                      \
    }                                                                        \
    const double t0 = now_s();                                               \
    for (long k = 0; k < ROUNDS; ++k) {                                      \
      const float* p = base;                                                 \
      __asm__ volatile("" : "+r"(p));                                        \
      _Pragma("GCC unroll 12") for (int i = 0; i < CHAINS; ++i) {            \
        __m512 m = OPERAND(p, pre, i);                                       \
        acc[i] = _mm512_fmadd_ps(m, x, acc[i]);                              \
      }                                                                      \
    }                                                                        \
    const double t = now_s() - t0;                                           \
    keep_sum(acc);                                                           \
    return t * 1e9 / (ROUNDS * (double)CHAINS);                              \
  }

static __m512 in_register(const float* p, const __m512* pre, int i) {
  (void)p;
  return pre[i];  // set before the loop
}
static __m512 aligned_vector(const float* p, const __m512* pre, int i) {
  (void)pre;
  return _mm512_load_ps(p + 16 * (i % 4));
}
static __m512 folded_broadcast(const float* p, const __m512* pre, int i) {
  (void)pre;
  return _mm512_set1_ps(p[i]);
}
static __m512 separate_broadcast(const float* p, const __m512* pre, int i) {
  (void)pre;
  __m512 m = _mm512_set1_ps(p[i]);
  __asm__("" : "+v"(m));  // not folded: vbroadcastss, then the FMA
  return m;
}
static __m512 line_crossing(const float* p, const __m512* pre, int i) {
  (void)pre;
  return _mm512_loadu_ps(p + 4 + 16 * (i % 4));
}

KIND(run_register, in_register)
KIND(run_aligned, aligned_vector)
KIND(run_folded, folded_broadcast)
KIND(run_separate, separate_broadcast)
KIND(run_crossing, line_crossing)

// The forward's pattern: each weight read once, in order (a 16 MiB array, past the
// caches' reach of one call), one broadcast a FMA, times input vectors loaded one per
// four FMAs from a small block that stays in L1.
__attribute__((noinline)) static double run_streamed(const float* base) {
  enum { WEIGHTS = 4 << 20 };  // floats: 16 MiB
  static float w[WEIGHTS] __attribute__((aligned(64)));
  for (long i = 0; i < WEIGHTS; ++i) w[i] = 1e-9f * (float)(i % 97);
  __m512 acc[CHAINS];
  for (int i = 0; i < CHAINS; ++i) acc[i] = _mm512_setzero_ps();
  const long rounds = ROUNDS / 4;
  const double t0 = now_s();
  const float* q = w;
  for (long k = 0; k < rounds; ++k) {
    const float* p = base;
    __asm__ volatile("" : "+r"(p));
    _Pragma("GCC unroll 3") for (int j = 0; j < 3; ++j) {
      const __m512 xv = _mm512_load_ps(p + 16 * j);
      _Pragma("GCC unroll 4") for (int i = 0; i < 4; ++i)
        acc[4 * j + i] = _mm512_fmadd_ps(_mm512_set1_ps(q[4 * j + i]), xv, acc[4 * j + i]);
    }
    q += CHAINS;
    if (q + CHAINS > w + WEIGHTS) q = w;
  }
  const double t = now_s() - t0;
  keep_sum(acc);
  return t * 1e9 / (rounds * (double)CHAINS);
}

int main(void) {
  static float data[128] __attribute__((aligned(64)));
  for (int i = 0; i < 128; ++i) data[i] = 1e-9f * (float)i;
  double (*const kinds[])(const float*) = {run_register, run_aligned, run_folded,
                                            run_separate, run_crossing, run_streamed};
  const char* names[] = {"register",
                         "aligned vector",
                         "broadcast (folded)",
                         "broadcast (vbroadcastss)",
                         "vector across a line",
                         "streamed broadcasts"};
  enum { NK = sizeof kinds / sizeof kinds[0] };
  double best[NK];
  for (int k = 0; k < NK; ++k) best[k] = 1e9;
  for (int rep = 0; rep < 3; ++rep)
    for (int k = 0; k < NK; ++k) {
      const double ns = kinds[k](data);
      if (ns < best[k]) best[k] = ns;
    }
  for (int k = 0; k < NK; ++k)
    printf("%-26s %.3f ns per FMA (%.2fx the register operand)\n", names[k], best[k],
           best[k] / best[0]);
  return sink[0] == 12345.f;  // keeps the results alive
}
