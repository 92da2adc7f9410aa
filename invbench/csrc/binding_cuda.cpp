// CUDA implementations of the invbench_ext ops: checks, allocation, stream, launch.
// Compiled by the host compiler against a CUDA build of torch; the kernels are in
// involution_cuda.cu, which does not include torch.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "binding_common.h"
#include "involution_cuda.h"

namespace invbench {
namespace {

cuda::DType cuda_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return cuda::DType::kFloat32;
    case at::kHalf: return cuda::DType::kFloat16;
    case at::kBFloat16: return cuda::DType::kBFloat16;
    case at::kDouble: return cuda::DType::kFloat64;
    default: break;
  }
  TORCH_CHECK(false, "involution: unsupported dtype ", t);
  return cuda::DType::kFloat32;
}

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "involution ", what, " kernel launch failed: ",
              cudaGetErrorString(err));
}

at::Tensor forward_cuda(const at::Tensor& x, const at::Tensor& weight, int64_t stride,
                        int64_t padding, int64_t dilation, bool naive, bool poison) {
  const InvShape s = forward_shape(x, weight, stride, padding, dilation);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), wc = weight.contiguous();
  at::Tensor out = new_output({s.B, s.C, s.Ho, s.Wo}, x, poison);
  check_launch(cuda::forward(cuda_dtype(x.scalar_type()), xc.const_data_ptr(),
                             wc.const_data_ptr(), out.mutable_data_ptr(), s, naive,
                             c10::cuda::getCurrentCUDAStream().stream()),
               "forward");
  return out;
}

at::Tensor grad_input_cuda(const at::Tensor& grad_out, const at::Tensor& weight, int64_t height,
                           int64_t width, int64_t stride, int64_t padding, int64_t dilation,
                           bool naive, bool poison) {
  const InvShape s =
      grad_input_shape(grad_out, weight, height, width, stride, padding, dilation);
  const c10::cuda::CUDAGuard guard(grad_out.device());
  const at::Tensor gc = grad_out.contiguous(), wc = weight.contiguous();
  at::Tensor gx = new_output({s.B, s.C, s.H, s.W}, grad_out, poison);
  check_launch(cuda::grad_input(cuda_dtype(grad_out.scalar_type()), gc.const_data_ptr(),
                                wc.const_data_ptr(), gx.mutable_data_ptr(), s, naive,
                                c10::cuda::getCurrentCUDAStream().stream()),
               "grad_input");
  return gx;
}

at::Tensor grad_weight_cuda(const at::Tensor& grad_out, const at::Tensor& x, int64_t groups,
                            int64_t kernel_size, int64_t stride, int64_t padding,
                            int64_t dilation, bool naive, bool poison) {
  const InvShape s =
      grad_weight_shape(grad_out, x, groups, kernel_size, stride, padding, dilation);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor gc = grad_out.contiguous(), xc = x.contiguous();
  at::Tensor gw = new_output(weight_sizes(s), x, poison);
  check_launch(cuda::grad_weight(cuda_dtype(x.scalar_type()), gc.const_data_ptr(),
                                 xc.const_data_ptr(), gw.mutable_data_ptr(), s, naive,
                                 c10::cuda::getCurrentCUDAStream().stream()),
               "grad_weight");
  return gw;
}

}  // namespace
}  // namespace invbench

TORCH_LIBRARY_IMPL(invbench_ext, CUDA, m) {
  m.impl("involution_fwd", &invbench::forward_cuda);
  m.impl("involution_grad_input", &invbench::grad_input_cuda);
  m.impl("involution_grad_weight", &invbench::grad_weight_cuda);
}
