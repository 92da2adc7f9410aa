// Shape arithmetic shared by the CPU and CUDA kernels. Torch-free, host and device.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define INVBENCH_HD __host__ __device__ __forceinline__
#else
#define INVBENCH_HD inline
#endif

namespace invbench {

// One involution: x (B, C, H, W), weight (B, G, K, K, Ho, Wo), out (B, C, Ho, Wo),
// all contiguous. Channel c belongs to group c / (C / G).
struct InvShape {
  int64_t B, C, H, W;
  int64_t G, K;
  int64_t Ho, Wo;
  int64_t stride, pad, dilation;

  INVBENCH_HD int64_t group_channels() const { return C / G; }
  INVBENCH_HD int64_t x_numel() const { return B * C * H * W; }
  INVBENCH_HD int64_t w_numel() const { return B * G * K * K * Ho * Wo; }
  INVBENCH_HD int64_t out_numel() const { return B * C * Ho * Wo; }
};

// Output indices j in [lo, hi) whose input index j * s + off lies in [0, n_in),
// clipped to [0, n_out). off = tap * dilation - pad.
INVBENCH_HD void valid_range(int64_t n_out, int64_t n_in, int64_t s, int64_t off,
                             int64_t* lo, int64_t* hi) {
  int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t h = (n_in - 1 - off) < 0 ? 0 : (n_in - 1 - off) / s + 1;
  if (h > n_out) h = n_out;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

}  // namespace invbench
