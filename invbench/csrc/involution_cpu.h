// CPU kernels of involution: forward, input gradient, weight gradient.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "involution_shape.h"

namespace invbench::cpu {

// All tensors contiguous, same dtype (float64, float32, float16 or bfloat16).
// Every element of the output is written.
void forward(const at::Tensor& x, const at::Tensor& weight, at::Tensor& out, const InvShape& s);
void grad_input(const at::Tensor& grad_out, const at::Tensor& weight, at::Tensor& grad_x,
                const InvShape& s);
void grad_weight(const at::Tensor& grad_out, const at::Tensor& x, at::Tensor& grad_w,
                 const InvShape& s);

// The vectorised path the float32/bfloat16/float16 kernels use: "avx512bf16", "avx512",
// "avx2" or "generic" ("scalar" for float64).
std::string kernel_path(at::ScalarType dtype);

// Forces a path ("avx512bf16", "avx512", "avx2", "generic"; an error if this CPU lacks
// it), or "auto" for the fastest one; "" changes nothing. Returns the path now in use.
std::string use_isa(const std::string& request);

}  // namespace invbench::cpu
