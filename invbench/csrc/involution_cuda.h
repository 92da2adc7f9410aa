// Host entry points of the CUDA kernels. Torch-free: raw pointers, sizes, a stream.
#pragma once

#include <cuda_runtime_api.h>

#include "involution_shape.h"

namespace invbench::cuda {

enum class DType { kFloat32, kFloat16, kBFloat16, kFloat64 };

// All buffers contiguous on the current device, of element type `dtype`. Every
// output element is written. `naive` selects the official-style kernels (one
// thread per output element, no tiling). Returns the launch status.
cudaError_t forward(DType dtype, const void* x, const void* weight, void* out, const InvShape& s,
                    bool naive, cudaStream_t stream);
cudaError_t grad_input(DType dtype, const void* grad_out, const void* weight, void* grad_x,
                       const InvShape& s, bool naive, cudaStream_t stream);
cudaError_t grad_weight(DType dtype, const void* grad_out, const void* x, void* grad_w,
                        const InvShape& s, bool naive, cudaStream_t stream);

}  // namespace invbench::cuda
