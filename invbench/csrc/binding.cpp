// Operator schemas and the CPU implementations. The CUDA implementations live in
// binding_cuda.cpp, built only against a CUDA build of torch.
#include <torch/library.h>

#include "binding_common.h"
#include "involution_cpu.h"

namespace invbench {
namespace {

at::Tensor forward_cpu(const at::Tensor& x, const at::Tensor& weight, int64_t stride,
                       int64_t padding, int64_t dilation, bool naive, bool poison) {
  (void)naive;  // one CPU algorithm
  const InvShape s = forward_shape(x, weight, stride, padding, dilation);
  at::Tensor out = new_output({s.B, s.C, s.Ho, s.Wo}, x, poison);
  cpu::forward(x.contiguous(), weight.contiguous(), out, s);
  return out;
}

at::Tensor grad_input_cpu(const at::Tensor& grad_out, const at::Tensor& weight, int64_t height,
                          int64_t width, int64_t stride, int64_t padding, int64_t dilation,
                          bool naive, bool poison) {
  (void)naive;
  const InvShape s =
      grad_input_shape(grad_out, weight, height, width, stride, padding, dilation);
  at::Tensor gx = new_output({s.B, s.C, s.H, s.W}, grad_out, poison);
  cpu::grad_input(grad_out.contiguous(), weight.contiguous(), gx, s);
  return gx;
}

at::Tensor grad_weight_cpu(const at::Tensor& grad_out, const at::Tensor& x, int64_t groups,
                           int64_t kernel_size, int64_t stride, int64_t padding,
                           int64_t dilation, bool naive, bool poison) {
  (void)naive;
  const InvShape s =
      grad_weight_shape(grad_out, x, groups, kernel_size, stride, padding, dilation);
  at::Tensor gw = new_output(weight_sizes(s), x, poison);
  cpu::grad_weight(grad_out.contiguous(), x.contiguous(), gw, s);
  return gw;
}

std::string cpu_kernel_path(const std::string& request, at::ScalarType dtype) {
  cpu::use_isa(request);
  return cpu::kernel_path(dtype);
}

}  // namespace
}  // namespace invbench

TORCH_LIBRARY(invbench_ext, m) {
  m.def(
      "involution_fwd(Tensor x, Tensor weight, int stride, int padding, int dilation, "
      "bool naive=False, bool poison=False) -> Tensor");
  m.def(
      "involution_grad_input(Tensor grad_out, Tensor weight, int height, int width, int stride, "
      "int padding, int dilation, bool naive=False, bool poison=False) -> Tensor");
  m.def(
      "involution_grad_weight(Tensor grad_out, Tensor x, int groups, int kernel_size, int stride, "
      "int padding, int dilation, bool naive=False, bool poison=False) -> Tensor");
  // Which vectorised CPU path the kernels of this dtype run; a request forces one.
  m.def("cpu_kernel_path(str request, ScalarType dtype) -> str", &invbench::cpu_kernel_path);
}

TORCH_LIBRARY_IMPL(invbench_ext, CPU, m) {
  m.impl("involution_fwd", &invbench::forward_cpu);
  m.impl("involution_grad_input", &invbench::grad_input_cpu);
  m.impl("involution_grad_weight", &invbench::grad_weight_cpu);
}
