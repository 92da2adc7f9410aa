// Vectorised CPU kernels of involution: which instruction-set paths exist and the
// entry points of each. The kernels themselves are in involution_cpu_kernels.h,
// compiled once per path (involution_cpu_<path>.cpp); the path is chosen at run time
// from the CPU's features (involution_cpu.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include "involution_shape.h"

namespace invbench::cpu {

// Fastest first. The -zmm paths: 16-lane (512-bit) vectors with AVX-512's 32 registers,
// on rows where 16 lanes leave no more idle than 8 (other rows run the same instruction
// set's 8-lane kernels); the fastest paths only on CPUs that execute 512-bit FMAs at full
// width (zmm_fma_speedup).
// Avx512Bf16: Avx512 whose bfloat16 results are rounded by AVX512_BF16's conversion
// (float32 and float16 run the same code as Avx512). Avx512: 8-lane float vectors with
// AVX-512VL's 32 registers (on CPUs that split 512-bit operations in two halves,
// 256-bit vectors run as fast and waste fewer lanes on short rows). Avx2: the same with
// 16 registers. Generic: 4-lane vectors through the compiler's vector extension (SSE2
// on x86-64, NEON on arm64).
enum class Isa { Avx512Bf16Zmm, Avx512Zmm, Avx512Bf16, Avx512, Avx2, Generic };

const char* isa_name(Isa isa);

// Float32, bfloat16 and float16 tensors, contiguous; float accumulation. Every
// element of the output is written. next_weights: the forward prefetches the next task's
// weights while it computes (see forward_t).
#define INVBENCH_CPU_SIMD_ENTRY_POINTS                                                          \
  void forward(const at::Tensor& x, const at::Tensor& w, at::Tensor& out, const InvShape& s,    \
               bool next_weights);                                                             \
  void grad_input(const at::Tensor& go, const at::Tensor& w, at::Tensor& gx,                   \
                  const InvShape& s);                                                          \
  void grad_weight(const at::Tensor& go, const at::Tensor& x, at::Tensor& gw, const InvShape& s); \
  /* whether forward() and grad_input() run SIMD across a group's channels */                 \
  /* (involution_cpu_chanvec.h, involution_cpu_chanvec_gx.h) */                                \
  bool across_channels(const InvShape& s);                                                     \
  /* whether grad_weight() runs SIMD across (batch, group) pairs (involution_cpu_gw_images.h) */ \
  bool across_images(const InvShape& s);

namespace generic {
INVBENCH_CPU_SIMD_ENTRY_POINTS
}
#if defined(__x86_64__) || defined(_M_X64)
namespace avx2 {
INVBENCH_CPU_SIMD_ENTRY_POINTS
}
namespace avx512 {
INVBENCH_CPU_SIMD_ENTRY_POINTS
}
namespace avx512bf16 {
INVBENCH_CPU_SIMD_ENTRY_POINTS
}
namespace avx512_zmm {
INVBENCH_CPU_SIMD_ENTRY_POINTS
// How many times the 256-bit rate this core runs 512-bit FMAs at: about 2 where it
// executes them at full width, about 1 where it splits each in two halves. Measured on
// first use (under half a millisecond on a Zen 5 core), best of three.
double zmm_fma_speedup();
}
namespace avx512bf16_zmm {
INVBENCH_CPU_SIMD_ENTRY_POINTS
}
#endif

}  // namespace invbench::cpu
