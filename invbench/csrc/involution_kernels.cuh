// CUDA kernels of involution. Torch-free: raw pointers, 64-bit sizes and offsets.
//
// Element types: float, __half, __nv_bfloat16 (accumulated in float) and double
// (accumulated in double, for gradient checks).
//
// Tiled kernels (cuda_ext), for K in {3, 5, 7}: a block owns a TH x TW tile of one
// (b, g) plane and loops over the group's channels. At stride 1 and dilation 1 the
// three kernels are inv_fwd_pairs, inv_bwdx_pairs and inv_bwdw_pairs (two pixels per
// thread).
//  - forward: each thread keeps its pixel's K*K weights in registers (read once per
//    group, not once per channel); the input halo of the tile is staged through
//    shared memory per channel with coalesced row loads.
//  - grad_weight: the mirror image: K*K accumulators per thread, one coalesced
//    grad_out load and the staged input halo per channel; the reduction over the
//    group's channels stays inside the thread, so there are no atomics.
//  - grad_x: a gather over the input tile: each input pixel's K*K (weight, tap)
//    pairs are resolved once, then per channel the grad_out tile the input tile
//    touches is staged in shared memory. No atomics.
// Naive kernels (cuda_naive): the official algorithm, one thread per output element
// (forward), input element (grad_x) or weight element (grad_weight), everything
// read straight from global memory.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "involution_shape.h"

namespace invbench::cuda {

template <typename T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccOf<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_acc(acc_t<T> v);
template <>
__device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <>
__device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Grid-stride index over n elements.
#define INVBENCH_GRID_LOOP(idx, n)                                                  \
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; \
       idx < (n); idx += static_cast<int64_t>(gridDim.x) * blockDim.x)

// ---------------------------------------------------------------------------------
// Naive kernels (the official algorithm).
// ---------------------------------------------------------------------------------

template <typename T>
__global__ void inv_fwd_naive(const T* __restrict__ x, const T* __restrict__ w,
                              T* __restrict__ out, InvShape S) {
  using A = acc_t<T>;
  const int64_t Cg = S.C / S.G, KK = S.K * S.K, HWo = S.Ho * S.Wo;
  INVBENCH_GRID_LOOP(idx, S.out_numel()) {
    const int64_t j = idx % S.Wo, i = (idx / S.Wo) % S.Ho;
    const int64_t c = (idx / HWo) % S.C, b = idx / (HWo * S.C);
    const T* wp = w + (b * S.G + c / Cg) * KK * HWo + i * S.Wo + j;
    const T* xp = x + (b * S.C + c) * S.H * S.W;
    A acc = 0;
    for (int64_t u = 0; u < S.K; ++u) {
      const int64_t y = i * S.stride - S.pad + u * S.dilation;
      if (y < 0 || y >= S.H) continue;
      for (int64_t v = 0; v < S.K; ++v) {
        const int64_t xx = j * S.stride - S.pad + v * S.dilation;
        if (xx < 0 || xx >= S.W) continue;
        acc += to_acc(wp[(u * S.K + v) * HWo]) * to_acc(xp[y * S.W + xx]);
      }
    }
    out[idx] = from_acc<T>(acc);
  }
}

template <typename T>
__global__ void inv_bwdx_naive(const T* __restrict__ go, const T* __restrict__ w,
                               T* __restrict__ gx, InvShape S) {
  using A = acc_t<T>;
  const int64_t Cg = S.C / S.G, KK = S.K * S.K, HWo = S.Ho * S.Wo, HW = S.H * S.W;
  INVBENCH_GRID_LOOP(idx, S.x_numel()) {
    const int64_t z = idx % S.W, y = (idx / S.W) % S.H;
    const int64_t c = (idx / HW) % S.C, b = idx / (HW * S.C);
    const T* wp = w + (b * S.G + c / Cg) * KK * HWo;
    const T* gp = go + (b * S.C + c) * HWo;
    A acc = 0;
    for (int64_t u = 0; u < S.K; ++u) {
      const int64_t iy = y + S.pad - u * S.dilation;
      if (iy < 0 || iy % S.stride != 0 || iy / S.stride >= S.Ho) continue;
      const int64_t i = iy / S.stride;
      for (int64_t v = 0; v < S.K; ++v) {
        const int64_t jx = z + S.pad - v * S.dilation;
        if (jx < 0 || jx % S.stride != 0 || jx / S.stride >= S.Wo) continue;
        const int64_t j = jx / S.stride;
        acc += to_acc(wp[(u * S.K + v) * HWo + i * S.Wo + j]) * to_acc(gp[i * S.Wo + j]);
      }
    }
    gx[idx] = from_acc<T>(acc);
  }
}

template <typename T>
__global__ void inv_bwdw_naive(const T* __restrict__ go, const T* __restrict__ x,
                               T* __restrict__ gw, InvShape S) {
  using A = acc_t<T>;
  const int64_t Cg = S.C / S.G, HWo = S.Ho * S.Wo, HW = S.H * S.W;
  INVBENCH_GRID_LOOP(idx, S.w_numel()) {
    const int64_t j = idx % S.Wo, i = (idx / S.Wo) % S.Ho;
    const int64_t uv = (idx / HWo) % (S.K * S.K), bg = idx / (HWo * S.K * S.K);
    const int64_t u = uv / S.K, v = uv % S.K, g = bg % S.G, b = bg / S.G;
    const int64_t y = i * S.stride - S.pad + u * S.dilation;
    const int64_t xx = j * S.stride - S.pad + v * S.dilation;
    A acc = 0;
    if (y >= 0 && y < S.H && xx >= 0 && xx < S.W) {
      for (int64_t cc = 0; cc < Cg; ++cc) {
        const int64_t c = g * Cg + cc;
        acc += to_acc(go[(b * S.C + c) * HWo + i * S.Wo + j]) *
               to_acc(x[(b * S.C + c) * HW + y * S.W + xx]);
      }
    }
    gw[idx] = from_acc<T>(acc);
  }
}

// ---------------------------------------------------------------------------------
// Tiled kernels (no __launch_bounds__: with it ptxas spilled a few registers of the
// K=3 variants; blocks never exceed 256 threads, so any register count <= 255 fits).
// Block (TW, TH) = (blockDim.x, blockDim.y); blockIdx.x enumerates
// (b, g, tile) with the tile fastest. Shared memory holds one channel's tile in the
// accumulator type.
// ---------------------------------------------------------------------------------

__device__ __forceinline__ int64_t group_width(const InvShape& S) {
  return static_cast<unsigned>(S.C) / static_cast<unsigned>(S.G);
}

struct TileInfo {
  int64_t b, g, bg, row0, col0;
};

// 32-bit index arithmetic here: 64-bit division is a called subroutine on the GPU.
// The launcher guarantees the grid, the tile counts and G fit in 31 bits.
__device__ __forceinline__ TileInfo tile_of_block(const InvShape& S, int tiles_w, int tiles_h) {
  const unsigned tiles = static_cast<unsigned>(tiles_w) * static_cast<unsigned>(tiles_h);
  const unsigned blk = blockIdx.x;
  const unsigned tile = blk % tiles, bg = blk / tiles;
  const unsigned G = static_cast<unsigned>(S.G);
  TileInfo t;
  t.bg = bg;
  t.g = bg % G;
  t.b = bg / G;
  t.row0 = static_cast<int64_t>(tile / static_cast<unsigned>(tiles_w)) * blockDim.y;
  t.col0 = static_cast<int64_t>(tile % static_cast<unsigned>(tiles_w)) * blockDim.x;
  return t;
}

// Stage rows [y0, y0 + hh) x cols [x0, x0 + hw) of one plane (zeros outside it).
template <typename T, typename A>
__device__ __forceinline__ void stage_plane(A* __restrict__ dst, const T* __restrict__ src,
                                            int64_t y0, int64_t x0, int hh, int hw,
                                            int64_t H, int64_t W) {
  for (int r = threadIdx.y; r < hh; r += blockDim.y) {
    const int64_t y = y0 + r;
    const bool row_ok = y >= 0 && y < H;
    for (int q = threadIdx.x; q < hw; q += blockDim.x) {
      const int64_t xx = x0 + q;
      dst[r * hw + q] = (row_ok && xx >= 0 && xx < W) ? to_acc(src[y * W + xx]) : A(0);
    }
  }
}

template <typename T, int K>
__global__ void inv_fwd_tiled(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ out,
                  InvShape S, int tiles_w, int tiles_h) {
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* halo = reinterpret_cast<A*>(smem_raw);
  const TileInfo t = tile_of_block(S, tiles_w, tiles_h);
  const int s = static_cast<int>(S.stride), d = static_cast<int>(S.dilation);
  const int hh = (blockDim.y - 1) * s + (K - 1) * d + 1;
  const int hw = (blockDim.x - 1) * s + (K - 1) * d + 1;
  const int64_t i = t.row0 + threadIdx.y, j = t.col0 + threadIdx.x;
  const bool active = i < S.Ho && j < S.Wo;
  const int64_t HWo = S.Ho * S.Wo, Cg = group_width(S);

  A wr[K * K];
  const T* wp = w + t.bg * (K * K) * HWo + (active ? i * S.Wo + j : 0);
#pragma unroll
  for (int uv = 0; uv < K * K; ++uv) wr[uv] = active ? to_acc(wp[uv * HWo]) : A(0);
  const int base = threadIdx.y * s * hw + threadIdx.x * s;
  for (int64_t cc = 0; cc < Cg; ++cc) {
    const int64_t plane = t.b * S.C + t.g * Cg + cc;
    __syncthreads();
    stage_plane<T, A>(halo, x + plane * S.H * S.W, t.row0 * S.stride - S.pad,
                      t.col0 * S.stride - S.pad, hh, hw, S.H, S.W);
    __syncthreads();
    if (active) {
      A acc = 0;
#pragma unroll
      for (int u = 0; u < K; ++u)
#pragma unroll
        for (int v = 0; v < K; ++v) acc += wr[u * K + v] * halo[base + u * d * hw + v * d];
      out[plane * HWo + i * S.Wo + j] = from_acc<T>(acc);
    }
  }
}

// Forward at stride 1 and dilation 1, two adjacent output pixels of a row per thread.
// The tiled forward reads one shared-memory value per multiply-add, and a Hopper SM
// serves one 32-lane 4-byte shared-memory load per clock, a quarter of its FFMA rate:
// that bounds it well below the bf16 memory floor. Here a thread loads the K + 1 halo
// values of a row once, as K/2 + 1 aligned pairs (64-bit loads; lanes 8 bytes apart,
// so no bank conflicts), and uses each for both of its pixels: K/2 + 1 loads for 2K
// multiply-adds per row (4 for 14 at K=7), at the price of 2*K*K weight registers.
// Block (TW/2, TH) covers a TH x TW pixel tile; halo rows are padded to an even length.
template <typename A>
struct alignas(2 * sizeof(A)) Pair {
  A lo, hi;
};

// A two-pixel kernel's block: (TW/2, TH) threads over a TH x TW pixel tile of one
// (b, g) plane, blockIdx.x enumerating (b, g, tile) with the tile fastest; the staged
// tile has K - 1 extra rows and columns, its rows padded to an even length so that
// every thread's pairs start at an even offset.
struct PairTile {
  int64_t b, g, bg, row0, col0;
  int hh, hw;
};

template <int K>
__device__ __forceinline__ PairTile pair_tile_of_block(const InvShape& S, int tiles_w,
                                                       int tiles_h) {
  const unsigned tiles = static_cast<unsigned>(tiles_w) * static_cast<unsigned>(tiles_h);
  const unsigned tile = blockIdx.x % tiles, bg = blockIdx.x / tiles;
  const unsigned G = static_cast<unsigned>(S.G);
  const int tw = 2 * blockDim.x;
  PairTile t;
  t.bg = bg;
  t.g = bg % G;
  t.b = bg / G;
  t.row0 = static_cast<int64_t>(tile / static_cast<unsigned>(tiles_w)) * blockDim.y;
  t.col0 = static_cast<int64_t>(tile % static_cast<unsigned>(tiles_w)) * tw;
  t.hh = blockDim.y + K - 1;
  t.hw = (tw + K) & ~1;
  return t;
}

// h[0..K] from K + 1 consecutive staged values, read as (K + 1) / 2 aligned pairs.
template <typename A, int K>
__device__ __forceinline__ void load_pairs(const Pair<A>* row, A (&h)[K + 1]) {
#pragma unroll
  for (int e = 0; e < (K + 1) / 2; ++e) {
    const Pair<A> p = row[e];
    h[2 * e] = p.lo;
    h[2 * e + 1] = p.hi;
  }
}

template <typename T, int K>
__global__ void inv_fwd_pairs(const T* __restrict__ x, const T* __restrict__ w,
                              T* __restrict__ out, InvShape S, int tiles_w, int tiles_h) {
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* halo = reinterpret_cast<A*>(smem_raw);
  const PairTile t = pair_tile_of_block<K>(S, tiles_w, tiles_h);
  const int64_t b = t.b, g = t.g, bg = t.bg, row0 = t.row0, col0 = t.col0;
  const int hh = t.hh, hw = t.hw;
  const int64_t i = row0 + threadIdx.y, j = col0 + 2 * threadIdx.x;
  const bool on0 = i < S.Ho && j < S.Wo, on1 = i < S.Ho && j + 1 < S.Wo;
  const int64_t HWo = S.Ho * S.Wo, Cg = group_width(S);

  A w0[K * K], w1[K * K];
  const T* wp = w + static_cast<int64_t>(bg) * (K * K) * HWo + (on0 ? i * S.Wo + j : 0);
#pragma unroll
  for (int uv = 0; uv < K * K; ++uv) {
    w0[uv] = on0 ? to_acc(wp[uv * HWo]) : A(0);
    w1[uv] = on1 ? to_acc(wp[uv * HWo + 1]) : A(0);
  }
  const int base = threadIdx.y * hw + 2 * threadIdx.x;
  for (int64_t cc = 0; cc < Cg; ++cc) {
    const int64_t plane = b * S.C + g * Cg + cc;
    __syncthreads();
    stage_plane<T, A>(halo, x + plane * S.H * S.W, row0 - S.pad, col0 - S.pad, hh, hw, S.H,
                      S.W);
    __syncthreads();
    A acc0 = 0, acc1 = 0;
#pragma unroll
    for (int u = 0; u < K; ++u) {
      const Pair<A>* row = reinterpret_cast<const Pair<A>*>(halo + base + u * hw);
      A h[K + 1];
      load_pairs<A, K>(row, h);
#pragma unroll
      for (int v = 0; v < K; ++v) {
        acc0 += w0[u * K + v] * h[v];
        acc1 += w1[u * K + v] * h[v + 1];
      }
    }
    if (on0) out[plane * HWo + i * S.Wo + j] = from_acc<T>(acc0);
    if (on1) out[plane * HWo + i * S.Wo + j + 1] = from_acc<T>(acc1);
  }
}

// grad_weight at stride 1 and dilation 1, the mirror image of inv_fwd_pairs: two
// pixels per thread, 2*K*K accumulators, the staged halo read in aligned pairs that
// serve both pixels.
template <typename T, int K>
__global__ void inv_bwdw_pairs(const T* __restrict__ go, const T* __restrict__ x,
                               T* __restrict__ gw, InvShape S, int tiles_w, int tiles_h) {
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* halo = reinterpret_cast<A*>(smem_raw);
  const PairTile t = pair_tile_of_block<K>(S, tiles_w, tiles_h);
  const int64_t b = t.b, g = t.g, bg = t.bg, row0 = t.row0, col0 = t.col0;
  const int hh = t.hh, hw = t.hw;
  const int64_t i = row0 + threadIdx.y, j = col0 + 2 * threadIdx.x;
  const bool on0 = i < S.Ho && j < S.Wo, on1 = i < S.Ho && j + 1 < S.Wo;
  const int64_t HWo = S.Ho * S.Wo, Cg = group_width(S);

  A acc0[K * K], acc1[K * K];
#pragma unroll
  for (int uv = 0; uv < K * K; ++uv) acc0[uv] = acc1[uv] = 0;
  const int base = threadIdx.y * hw + 2 * threadIdx.x;
  for (int64_t cc = 0; cc < Cg; ++cc) {
    const int64_t plane = b * S.C + g * Cg + cc;
    const A g0 = on0 ? to_acc(go[plane * HWo + i * S.Wo + j]) : A(0);
    const A g1 = on1 ? to_acc(go[plane * HWo + i * S.Wo + j + 1]) : A(0);
    __syncthreads();
    stage_plane<T, A>(halo, x + plane * S.H * S.W, row0 - S.pad, col0 - S.pad, hh, hw, S.H,
                      S.W);
    __syncthreads();
#pragma unroll
    for (int u = 0; u < K; ++u) {
      const Pair<A>* row = reinterpret_cast<const Pair<A>*>(halo + base + u * hw);
      A h[K + 1];
      load_pairs<A, K>(row, h);
#pragma unroll
      for (int v = 0; v < K; ++v) {
        acc0[u * K + v] += g0 * h[v];
        acc1[u * K + v] += g1 * h[v + 1];
      }
    }
  }
  T* wp = gw + static_cast<int64_t>(bg) * (K * K) * HWo + i * S.Wo + j;
#pragma unroll
  for (int uv = 0; uv < K * K; ++uv) {
    if (on0) wp[uv * HWo] = from_acc<T>(acc0[uv]);
    if (on1) wp[uv * HWo + 1] = from_acc<T>(acc1[uv]);
  }
}

template <typename T, int K>
__global__ void inv_bwdw_tiled(const T* __restrict__ go, const T* __restrict__ x, T* __restrict__ gw,
                   InvShape S, int tiles_w, int tiles_h) {
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* halo = reinterpret_cast<A*>(smem_raw);
  const TileInfo t = tile_of_block(S, tiles_w, tiles_h);
  const int s = static_cast<int>(S.stride), d = static_cast<int>(S.dilation);
  const int hh = (blockDim.y - 1) * s + (K - 1) * d + 1;
  const int hw = (blockDim.x - 1) * s + (K - 1) * d + 1;
  const int64_t i = t.row0 + threadIdx.y, j = t.col0 + threadIdx.x;
  const bool active = i < S.Ho && j < S.Wo;
  const int64_t HWo = S.Ho * S.Wo, Cg = group_width(S);

  A acc[K * K];
#pragma unroll
  for (int uv = 0; uv < K * K; ++uv) acc[uv] = 0;
  const int base = threadIdx.y * s * hw + threadIdx.x * s;
  for (int64_t cc = 0; cc < Cg; ++cc) {
    const int64_t plane = t.b * S.C + t.g * Cg + cc;
    const A g = active ? to_acc(go[plane * HWo + i * S.Wo + j]) : A(0);
    __syncthreads();
    stage_plane<T, A>(halo, x + plane * S.H * S.W, t.row0 * S.stride - S.pad,
                      t.col0 * S.stride - S.pad, hh, hw, S.H, S.W);
    __syncthreads();
#pragma unroll
    for (int u = 0; u < K; ++u)
#pragma unroll
      for (int v = 0; v < K; ++v) acc[u * K + v] += g * halo[base + u * d * hw + v * d];
  }
  if (active) {
    T* wp = gw + t.bg * (K * K) * HWo + i * S.Wo + j;
#pragma unroll
    for (int uv = 0; uv < K * K; ++uv) wp[uv * HWo] = from_acc<T>(acc[uv]);
  }
}

// grad_x at stride 1 and dilation 1, two adjacent input pixels per thread. Input pixel
// (y, z) receives tap (u, v) of output pixel (y + pad - u, z + pad - v), so a thread
// stages nothing of its own: the block stages the grad_out tile its input tile touches
// (zeros outside the output grid), and each thread reads K + 1 values of each staged
// row in aligned pairs, used by both pixels with the taps reversed. The weights of the
// 2*K*K (tap, output pixel) pairs are resolved once per thread (0 outside the grid).
template <typename T, int K>
__global__ void inv_bwdx_pairs(const T* __restrict__ go, const T* __restrict__ w,
                               T* __restrict__ gx, InvShape S, int tiles_w, int tiles_h) {
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* tile_go = reinterpret_cast<A*>(smem_raw);
  const PairTile t = pair_tile_of_block<K>(S, tiles_w, tiles_h);
  const int64_t b = t.b, g = t.g, bg = t.bg, row0 = t.row0, col0 = t.col0;
  const int hh = t.hh, hw = t.hw;
  const int64_t y = row0 + threadIdx.y, z = col0 + 2 * threadIdx.x;
  const bool on0 = y < S.H && z < S.W, on1 = y < S.H && z + 1 < S.W;
  const int64_t HWo = S.Ho * S.Wo, HW = S.H * S.W, Cg = group_width(S);

  A w0[K * K], w1[K * K];
  const T* wp = w + static_cast<int64_t>(bg) * (K * K) * HWo;
#pragma unroll
  for (int u = 0; u < K; ++u) {
    const int64_t i = y + S.pad - u;
    const bool row_ok = i >= 0 && i < S.Ho;
#pragma unroll
    for (int v = 0; v < K; ++v) {
      const int64_t j = z + S.pad - v;
      const bool ok0 = on0 && row_ok && j >= 0 && j < S.Wo;
      const bool ok1 = on1 && row_ok && j + 1 >= 0 && j + 1 < S.Wo;
      w0[u * K + v] = ok0 ? to_acc(wp[(u * K + v) * HWo + i * S.Wo + j]) : A(0);
      w1[u * K + v] = ok1 ? to_acc(wp[(u * K + v) * HWo + i * S.Wo + j + 1]) : A(0);
    }
  }
  // staged row r, column q hold grad_out at (row0 + pad - (K-1) + r, col0 + pad - (K-1) + q)
  const int base = threadIdx.y * hw + 2 * threadIdx.x;
  for (int64_t cc = 0; cc < Cg; ++cc) {
    const int64_t plane = b * S.C + g * Cg + cc;
    __syncthreads();
    stage_plane<T, A>(tile_go, go + plane * HWo, row0 + S.pad - (K - 1),
                      col0 + S.pad - (K - 1), hh, hw, S.Ho, S.Wo);
    __syncthreads();
    A acc0 = 0, acc1 = 0;
#pragma unroll
    for (int u = 0; u < K; ++u) {
      const Pair<A>* row = reinterpret_cast<const Pair<A>*>(tile_go + base + (K - 1 - u) * hw);
      A h[K + 1];
      load_pairs<A, K>(row, h);
#pragma unroll
      for (int v = 0; v < K; ++v) {
        acc0 += w0[u * K + v] * h[K - 1 - v];
        acc1 += w1[u * K + v] * h[K - v];
      }
    }
    if (on0) gx[plane * HW + y * S.W + z] = from_acc<T>(acc0);
    if (on1) gx[plane * HW + y * S.W + z + 1] = from_acc<T>(acc1);
  }
}

// Rows of grad_out that input rows [y0, y0 + n) receive contributions from
// (32-bit: the launcher checks every plane dimension is below 2^30).
__device__ __forceinline__ void gather_rows(int y0, int n, int pad, int span, int s, int n_out,
                                            int* first, int* count) {
  const int a = y0 + pad - span, b = y0 + n - 1 + pad;
  int lo = a >= 0 ? (a + s - 1) / s : -((-a) / s);  // ceil(a / s)
  int hi = b >= 0 ? b / s : -((-b + s - 1) / s);    // floor(b / s)
  if (lo < 0) lo = 0;
  if (hi > n_out - 1) hi = n_out - 1;
  *first = lo;
  *count = hi >= lo ? hi - lo + 1 : 0;
}

template <typename T, int K>
__global__ void inv_bwdx_tiled(const T* __restrict__ go, const T* __restrict__ w, T* __restrict__ gx,
                   InvShape S, int tiles_w, int tiles_h) {
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* tile = reinterpret_cast<A*>(smem_raw);
  const TileInfo t = tile_of_block(S, tiles_w, tiles_h);
  const int span = (K - 1) * static_cast<int>(S.dilation);
  int gi0, gh, gj0, gwid;
  gather_rows(static_cast<int>(t.row0), blockDim.y, static_cast<int>(S.pad), span,
              static_cast<int>(S.stride), static_cast<int>(S.Ho), &gi0, &gh);
  gather_rows(static_cast<int>(t.col0), blockDim.x, static_cast<int>(S.pad), span,
              static_cast<int>(S.stride), static_cast<int>(S.Wo), &gj0, &gwid);
  const int64_t y = t.row0 + threadIdx.y, z = t.col0 + threadIdx.x;
  const bool active = y < S.H && z < S.W;
  const int64_t HWo = S.Ho * S.Wo, HW = S.H * S.W, Cg = group_width(S);

  // Resolve the K*K taps once: weight value and offset into the staged tile.
  A wr[K * K];
  int off[K * K];
  const T* wp = w + t.bg * (K * K) * HWo;
  // Per-dimension coordinates fit in 32 bits (the launcher checks H, W < 2^30).
  const int s = static_cast<int>(S.stride), d = static_cast<int>(S.dilation);
  const int ho = static_cast<int>(S.Ho), wo = static_cast<int>(S.Wo);
  const int yp = static_cast<int>(y + S.pad), zp = static_cast<int>(z + S.pad);
#pragma unroll
  for (int u = 0; u < K; ++u) {
    const int iy = yp - u * d;
    const bool row_ok = iy >= 0 && iy % s == 0 && iy / s < ho;
    const int i = row_ok ? iy / s : 0;
#pragma unroll
    for (int v = 0; v < K; ++v) {
      const int jx = zp - v * d;
      const bool ok = active && row_ok && jx >= 0 && jx % s == 0 && jx / s < wo;
      const int j = ok ? jx / s : 0;
      wr[u * K + v] = ok ? to_acc(wp[(u * K + v) * HWo + static_cast<int64_t>(i) * wo + j]) : A(0);
      off[u * K + v] = ok ? static_cast<int>((i - gi0) * gwid + (j - gj0)) : 0;
    }
  }
  for (int64_t cc = 0; cc < Cg; ++cc) {
    const int64_t plane = t.b * S.C + t.g * Cg + cc;
    A acc = 0;
    if (gh > 0 && gwid > 0) {
      __syncthreads();
      stage_plane<T, A>(tile, go + plane * HWo, gi0, gj0, gh, gwid, S.Ho, S.Wo);
      __syncthreads();
#pragma unroll
      for (int uv = 0; uv < K * K; ++uv) acc += wr[uv] * tile[off[uv]];
    }
    if (active) gx[plane * HW + y * S.W + z] = from_acc<T>(acc);
  }
}

}  // namespace invbench::cuda
