// The kernels (involution_cpu_kernels.h) for the AVX-512 path with bfloat16 results
// rounded by AVX512_BF16's conversion.
#include "involution_cpu_vec256.h"

#if defined(__x86_64__) || defined(_M_X64)
namespace invbench::cpu {

INVBENCH_TARGET_BEGIN("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,avx2,fma,f16c")
namespace avx512bf16 {
INVBENCH_VEC256(32, INVBENCH_COPY_N_AVX512, INVBENCH_TO_BF16_NATIVE)
#include "involution_cpu_kernels.h"
}  // namespace avx512bf16
INVBENCH_TARGET_END

}  // namespace invbench::cpu
#endif
