// Runs the CUDA kernels of invbench/csrc on the CPU, for tests on machines without a GPU.
//
// Every CUDA thread of a block is an OS thread, so __syncthreads() is a real barrier
// and shared memory is really shared; blocks run one after another. Only what the
// kernels use is provided: the launch built-ins, __syncthreads, dynamic shared memory
// and the half/bfloat16 conversions (from CUDA's own headers, host side). Slow, and
// meant for small shapes.
#pragma once

#include <cuda_runtime_api.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <barrier>
#include <stdexcept>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

// CUDA's host headers define these as attributes for a CUDA compiler; plain C++ here.
#undef __global__
#undef __device__
#undef __shared__
#undef __align__
#undef __forceinline__
#define __global__
#define __device__
#define __shared__
#define __align__(n) __attribute__((aligned(n)))
#define __forceinline__ inline

namespace emu {
inline constexpr std::size_t kSmemBytes = 48 * 1024;
}  // namespace emu

// The launch built-ins: per emulated thread (thread_local), per launch.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;
inline thread_local std::barrier<>* emu_block_barrier = nullptr;
// Dynamic shared memory: what `extern __shared__ unsigned char smem_raw[]` in the
// kernels (namespace invbench::cuda) refers to.
namespace invbench::cuda {
alignas(16) inline unsigned char smem_raw[emu::kSmemBytes];
}  // namespace invbench::cuda

inline void __syncthreads() { emu_block_barrier->arrive_and_wait(); }

namespace emu {

inline std::size_t launches = 0;
inline bool last_block_2d = false;  // the tiled kernels use (TW, TH) blocks, the naive 1-D
inline const void* last_kernel = nullptr;

// kernel<<<grid, block, smem, stream>>>(args...): every block in turn, its threads at once.
template <typename Kernel, typename... Args>
void launch(Kernel kernel, dim3 grid, dim3 block, std::size_t smem, cudaStream_t,
            Args... args) {
  if (smem > kSmemBytes) throw std::runtime_error("shared memory request too large");
  ++launches;
  last_block_2d = block.y > 1;
  last_kernel = reinterpret_cast<const void*>(kernel);
  gridDim = grid;
  blockDim = block;
  const unsigned n = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        // Poison shared memory: a read of an element no thread staged shows as NaN.
        std::memset(invbench::cuda::smem_raw, 0xff, smem);
        std::barrier<> sync(static_cast<std::ptrdiff_t>(n));
        std::vector<std::thread> threads;
        threads.reserve(n);
        for (unsigned t = 0; t < n; ++t) {
          threads.emplace_back([&, t] {
            threadIdx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            blockIdx = uint3{bx, by, bz};
            emu_block_barrier = &sync;
            kernel(args...);
          });
        }
        for (auto& th : threads) th.join();
      }
}

}  // namespace emu
