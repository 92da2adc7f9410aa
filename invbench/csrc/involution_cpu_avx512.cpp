// The kernels (involution_cpu_kernels.h) for AVX-512VL on 256-bit vectors (32 registers,
// masked loads and stores).
#include "involution_cpu_vec256.h"

#if defined(__x86_64__) || defined(_M_X64)
namespace invbench::cpu {

INVBENCH_TARGET_BEGIN("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")
namespace avx512 {
INVBENCH_VEC256(32, INVBENCH_COPY_N_AVX512, INVBENCH_TO_BF16_AVX512)
#include "involution_cpu_kernels.h"
}  // namespace avx512
INVBENCH_TARGET_END

}  // namespace invbench::cpu
#endif
