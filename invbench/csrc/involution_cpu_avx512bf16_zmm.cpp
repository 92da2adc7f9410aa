// The kernels (involution_cpu_kernels.h) for AVX-512 on 512-bit vectors with bfloat16
// results rounded by AVX512_BF16's conversion.
#include "involution_cpu_vec512.h"

#if defined(__x86_64__) || defined(_M_X64)
namespace invbench::cpu {

INVBENCH_TARGET_BEGIN("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,avx2,fma,f16c")
namespace avx512bf16_zmm {
INVBENCH_VEC512(INVBENCH_TO_BF16_NATIVE_ZMM)
#include "involution_cpu_kernels.h"
}  // namespace avx512bf16_zmm
INVBENCH_TARGET_END

}  // namespace invbench::cpu
#endif
