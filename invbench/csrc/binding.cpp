// Operator schemas and the CPU implementations. The CUDA implementations live in
// binding_cuda.cpp, built only against a CUDA build of torch.
#include <torch/library.h>

#include "binding_common.h"
#include "involution_cpu.h"

#include <cstdint>
#include <limits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace invbench {
namespace {

// A large output comes fresh from mmap, and the kernel's first write to each 4 KiB page
// faults (the kernel zeroes it): on the stem layer, 3 136 faults cost more than the
// involution itself. Asking for transparent huge pages on the output's 2 MiB-aligned
// part first makes that a few faults (where the system allows them; otherwise nothing
// changes).
at::Tensor new_cpu_output(at::IntArrayRef sizes, const at::Tensor& like, bool poison) {
  at::Tensor out = new_output(sizes, like, false);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
  const uintptr_t lo = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t hi = (begin + out.nbytes()) & ~(kHuge - 1);
  if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#endif
  if (poison) out.fill_(std::numeric_limits<double>::quiet_NaN());
  return out;
}

at::Tensor forward_cpu(const at::Tensor& x, const at::Tensor& weight, int64_t stride,
                       int64_t padding, int64_t dilation, bool naive, bool poison) {
  (void)naive;  // one CPU algorithm
  const InvShape s = forward_shape(x, weight, stride, padding, dilation);
  at::Tensor out = new_cpu_output({s.B, s.C, s.Ho, s.Wo}, x, poison);
  cpu::forward(x.contiguous(), weight.contiguous(), out, s);
  return out;
}

at::Tensor grad_input_cpu(const at::Tensor& grad_out, const at::Tensor& weight, int64_t height,
                          int64_t width, int64_t stride, int64_t padding, int64_t dilation,
                          bool naive, bool poison) {
  (void)naive;
  const InvShape s =
      grad_input_shape(grad_out, weight, height, width, stride, padding, dilation);
  at::Tensor gx = new_cpu_output({s.B, s.C, s.H, s.W}, grad_out, poison);
  cpu::grad_input(grad_out.contiguous(), weight.contiguous(), gx, s);
  return gx;
}

at::Tensor grad_weight_cpu(const at::Tensor& grad_out, const at::Tensor& x, int64_t groups,
                           int64_t kernel_size, int64_t stride, int64_t padding,
                           int64_t dilation, bool naive, bool poison) {
  (void)naive;
  const InvShape s =
      grad_weight_shape(grad_out, x, groups, kernel_size, stride, padding, dilation);
  at::Tensor gw = new_cpu_output(weight_sizes(s), x, poison);
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
