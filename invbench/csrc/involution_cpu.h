// CPU kernels of involution: forward, input gradient, weight gradient.
#pragma once

#include <ATen/core/Tensor.h>

#include "involution_shape.h"

namespace invbench::cpu {

// All tensors contiguous, same dtype (float64, float32, float16 or bfloat16).
// Every element of the output is written.
void forward(const at::Tensor& x, const at::Tensor& weight, at::Tensor& out, const InvShape& s);
void grad_input(const at::Tensor& grad_out, const at::Tensor& weight, at::Tensor& grad_x,
                const InvShape& s);
void grad_weight(const at::Tensor& grad_out, const at::Tensor& x, at::Tensor& grad_w,
                 const InvShape& s);

}  // namespace invbench::cpu
