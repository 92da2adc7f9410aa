// The kernels (involution_cpu_kernels.h) for AVX2 and FMA (16 vector registers; bfloat16
// widened and rounded in integer lanes).
#include "involution_cpu_vec256.h"

#if defined(__x86_64__) || defined(_M_X64)
namespace invbench::cpu {

INVBENCH_TARGET_BEGIN("avx2,fma,f16c")
namespace avx2 {
INVBENCH_VEC256(16, INVBENCH_COPY_N_AVX2, INVBENCH_TO_BF16_AVX2)
#include "involution_cpu_kernels.h"
}  // namespace avx2
INVBENCH_TARGET_END

}  // namespace invbench::cpu
#endif
