// Argument checks and output allocation shared by the CPU and CUDA bindings.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <limits>

#include "involution_shape.h"

namespace invbench {

inline int64_t out_size(int64_t n, int64_t k, int64_t s, int64_t p, int64_t d) {
  return (n + 2 * p - d * (k - 1) - 1) / s + 1;
}

inline void check_params(int64_t stride, int64_t padding, int64_t dilation) {
  TORCH_CHECK(stride >= 1, "involution: stride must be >= 1, got ", stride);
  TORCH_CHECK(dilation >= 1, "involution: dilation must be >= 1, got ", dilation);
  TORCH_CHECK(padding >= 0, "involution: padding must be >= 0, got ", padding);
}

// Geometry from x (B, C, H, W) and the kernel size; checks the output grid is non-empty.
inline InvShape make_shape(int64_t B, int64_t C, int64_t H, int64_t W, int64_t G, int64_t K,
                           int64_t stride, int64_t padding, int64_t dilation) {
  check_params(stride, padding, dilation);
  TORCH_CHECK(B >= 1 && C >= 1 && H >= 1 && W >= 1, "involution: empty input");
  TORCH_CHECK(K >= 1, "involution: kernel size must be >= 1, got ", K);
  TORCH_CHECK(G >= 1 && C % G == 0, "involution: channels ", C, " not divisible by groups ", G);
  const int64_t span = dilation * (K - 1) + 1;
  TORCH_CHECK(H + 2 * padding >= span && W + 2 * padding >= span, "involution: kernel span ",
              span, " exceeds the padded input");
  InvShape s{B, C, H, W, G, K,
             out_size(H, K, stride, padding, dilation), out_size(W, K, stride, padding, dilation),
             stride, padding, dilation};
  return s;
}

inline void check_same(const at::Tensor& a, const at::Tensor& b, const char* what) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "involution: ", what, " dtypes differ: ",
              a.scalar_type(), " vs ", b.scalar_type());
  TORCH_CHECK(a.device() == b.device(), "involution: ", what, " devices differ");
}

inline at::Tensor new_output(at::IntArrayRef sizes, const at::Tensor& like, bool poison) {
  auto opts = like.options().memory_format(at::MemoryFormat::Contiguous);
  if (poison) return at::full(sizes, std::numeric_limits<double>::quiet_NaN(), opts);
  return at::empty(sizes, opts);
}

// Shapes for forward(x, weight).
inline InvShape forward_shape(const at::Tensor& x, const at::Tensor& weight, int64_t stride,
                              int64_t padding, int64_t dilation) {
  TORCH_CHECK(x.dim() == 4, "involution: x must be 4-D (B, C, H, W)");
  TORCH_CHECK(weight.dim() == 6, "involution: weight must be 6-D (B, G, K, K, Ho, Wo)");
  check_same(x, weight, "x and weight");
  TORCH_CHECK(weight.size(2) == weight.size(3), "involution: kernel dims differ");
  InvShape s = make_shape(x.size(0), x.size(1), x.size(2), x.size(3), weight.size(1),
                          weight.size(2), stride, padding, dilation);
  TORCH_CHECK(weight.size(0) == s.B && weight.size(4) == s.Ho && weight.size(5) == s.Wo,
              "involution: weight shape ", weight.sizes(), " does not match the output grid ",
              s.Ho, "x", s.Wo);
  return s;
}

// Shapes for grad_input(grad_out, weight, H, W).
inline InvShape grad_input_shape(const at::Tensor& grad_out, const at::Tensor& weight,
                                 int64_t height, int64_t width, int64_t stride, int64_t padding,
                                 int64_t dilation) {
  TORCH_CHECK(grad_out.dim() == 4 && weight.dim() == 6, "involution: bad grad_out/weight rank");
  check_same(grad_out, weight, "grad_out and weight");
  InvShape s = make_shape(grad_out.size(0), grad_out.size(1), height, width, weight.size(1),
                          weight.size(2), stride, padding, dilation);
  TORCH_CHECK(weight.size(0) == s.B && weight.size(3) == s.K && weight.size(4) == s.Ho &&
                  weight.size(5) == s.Wo && grad_out.size(2) == s.Ho && grad_out.size(3) == s.Wo,
              "involution: grad_out/weight shapes do not match the input size");
  return s;
}

// Shapes for grad_weight(grad_out, x, K).
inline InvShape grad_weight_shape(const at::Tensor& grad_out, const at::Tensor& x, int64_t groups,
                                  int64_t kernel_size, int64_t stride, int64_t padding,
                                  int64_t dilation) {
  TORCH_CHECK(grad_out.dim() == 4 && x.dim() == 4, "involution: bad grad_out/x rank");
  check_same(grad_out, x, "grad_out and x");
  InvShape s = make_shape(x.size(0), x.size(1), x.size(2), x.size(3), groups, kernel_size,
                          stride, padding, dilation);
  TORCH_CHECK(grad_out.size(0) == s.B && grad_out.size(1) == s.C && grad_out.size(2) == s.Ho &&
                  grad_out.size(3) == s.Wo,
              "involution: grad_out shape ", grad_out.sizes(), " does not match x");
  return s;
}

inline std::vector<int64_t> weight_sizes(const InvShape& s) {
  return {s.B, s.G, s.K, s.K, s.Ho, s.Wo};
}

}  // namespace invbench
