// Launchers of the CUDA kernels: tile choice, shared-memory sizing, dtype and K
// dispatch. Torch-free; compiled on its own by the nvcc test.
#include <algorithm>
#include <type_traits>

#include "involution_cuda.h"
#include "involution_kernels.cuh"

namespace invbench::cuda {
namespace {

constexpr int kThreads = 256;
constexpr size_t kMaxSmem = 48 * 1024;  // no opt-in needed on any architecture

struct Tile {
  int tw, th, tiles_w, tiles_h;
  int64_t blocks;  // tiles * B * G
};

int pow2_at_least(int64_t n) {
  int p = 1;
  while (p < n && p < kThreads) p *= 2;
  return p;
}

// Tile widths of 8, 16 or 32 (a warp covers 1, 2 or 4 rows), at most 256 threads,
// shaped to the plane so small planes do not leave most threads idle.
Tile pick_tile(int64_t rows, int64_t cols, const InvShape& S) {
  Tile t;
  t.tw = cols <= 8 ? 8 : (cols <= 16 ? 16 : 32);
  t.th = std::min(kThreads / t.tw, pow2_at_least(rows));
  t.th = std::max(t.th, 64 / t.tw);
  t.tiles_w = static_cast<int>((cols + t.tw - 1) / t.tw);
  t.tiles_h = static_cast<int>((rows + t.th - 1) / t.th);
  t.blocks = static_cast<int64_t>(t.tiles_w) * t.tiles_h * S.B * S.G;
  return t;
}

int naive_blocks(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(blocks, 1 << 20));
}

// The tiled kernels index blocks, groups and plane coordinates in 32 bits.
bool grid_ok(const Tile& t, const InvShape& S) {
  constexpr int64_t kLimit = 1LL << 30;
  return t.blocks >= 1 && t.blocks < 0x7fffffffLL && S.G < kLimit && S.H < kLimit &&
         S.W < kLimit && S.pad < kLimit && (S.K - 1) * S.dilation < kLimit && S.stride < kLimit;
}

template <typename T>
size_t halo_bytes(const Tile& t, const InvShape& S) {
  const int64_t hh = (t.th - 1) * S.stride + (S.K - 1) * S.dilation + 1;
  const int64_t hw = (t.tw - 1) * S.stride + (S.K - 1) * S.dilation + 1;
  return static_cast<size_t>(hh * hw) * sizeof(acc_t<T>);
}

// inv_fwd_pairs: a TH x TW pixel tile from (TW/2, TH) threads; halo rows of even length.
template <typename T>
size_t pairs_halo_bytes(const Tile& t, const InvShape& S) {
  const int64_t hh = t.th + S.K - 1;
  const int64_t hw = (t.tw + S.K - 1 + 1) & ~int64_t{1};
  return static_cast<size_t>(hh * hw) * sizeof(acc_t<T>);
}

// Calls launch(std::integral_constant<int, K>{}) for the kernels' compiled K (3, 5, 7).
template <typename Launch>
cudaError_t with_k(int64_t k, Launch&& launch) {
  switch (k) {
    case 3: return launch(std::integral_constant<int, 3>{});
    case 5: return launch(std::integral_constant<int, 5>{});
    case 7: return launch(std::integral_constant<int, 7>{});
    default: return cudaErrorInvalidValue;
  }
}

bool tiled_k(int64_t k) { return k == 3 || k == 5 || k == 7; }

// The two-pixel kernels: stride 1, dilation 1, K in {3, 5, 7}, and the halo fits.
template <typename T>
bool pairs_apply(const Tile& t, const InvShape& S) {
  return tiled_k(S.K) && S.stride == 1 && S.dilation == 1 && grid_ok(t, S) &&
         pairs_halo_bytes<T>(t, S) <= kMaxSmem;
}

template <typename T>
size_t gather_bytes(const Tile& t, const InvShape& S) {
  const int64_t span = (S.K - 1) * S.dilation;
  const int64_t rows = (t.th - 1 + span) / S.stride + 2;
  const int64_t cols = (t.tw - 1 + span) / S.stride + 2;
  return static_cast<size_t>(rows * cols) * sizeof(acc_t<T>);
}

template <typename T>
cudaError_t forward_t(const T* x, const T* w, T* out, const InvShape& S, bool naive,
                      cudaStream_t st) {
  const Tile t = pick_tile(S.Ho, S.Wo, S);
  const unsigned grid = static_cast<unsigned>(t.blocks);
  const dim3 pair_block(t.tw / 2, t.th), block(t.tw, t.th);
  if (!naive && pairs_apply<T>(t, S)) {
    const size_t pair_smem = pairs_halo_bytes<T>(t, S);
    return with_k(S.K, [&](auto k) {
      inv_fwd_pairs<T, decltype(k)::value><<<grid, pair_block, pair_smem, st>>>(
          x, w, out, S, t.tiles_w, t.tiles_h);
      return cudaGetLastError();
    });
  }
  const size_t smem = halo_bytes<T>(t, S);
  if (!naive && tiled_k(S.K) && grid_ok(t, S) && smem <= kMaxSmem) {
    return with_k(S.K, [&](auto k) {
      inv_fwd_tiled<T, decltype(k)::value><<<grid, block, smem, st>>>(
          x, w, out, S, t.tiles_w, t.tiles_h);
      return cudaGetLastError();
    });
  }
  inv_fwd_naive<T><<<naive_blocks(S.out_numel()), kThreads, 0, st>>>(x, w, out, S);
  return cudaGetLastError();
}

template <typename T>
cudaError_t grad_input_t(const T* go, const T* w, T* gx, const InvShape& S, bool naive,
                         cudaStream_t st) {
  const Tile t = pick_tile(S.H, S.W, S);
  const unsigned grid = static_cast<unsigned>(t.blocks);
  const dim3 pair_block(t.tw / 2, t.th), block(t.tw, t.th);
  if (!naive && pairs_apply<T>(t, S)) {
    const size_t pair_smem = pairs_halo_bytes<T>(t, S);
    return with_k(S.K, [&](auto k) {
      inv_bwdx_pairs<T, decltype(k)::value><<<grid, pair_block, pair_smem, st>>>(
          go, w, gx, S, t.tiles_w, t.tiles_h);
      return cudaGetLastError();
    });
  }
  const size_t smem = gather_bytes<T>(t, S);
  if (!naive && tiled_k(S.K) && grid_ok(t, S) && smem <= kMaxSmem) {
    return with_k(S.K, [&](auto k) {
      inv_bwdx_tiled<T, decltype(k)::value><<<grid, block, smem, st>>>(
          go, w, gx, S, t.tiles_w, t.tiles_h);
      return cudaGetLastError();
    });
  }
  inv_bwdx_naive<T><<<naive_blocks(S.x_numel()), kThreads, 0, st>>>(go, w, gx, S);
  return cudaGetLastError();
}

template <typename T>
cudaError_t grad_weight_t(const T* go, const T* x, T* gw, const InvShape& S, bool naive,
                          cudaStream_t st) {
  const Tile t = pick_tile(S.Ho, S.Wo, S);
  const unsigned grid = static_cast<unsigned>(t.blocks);
  const dim3 pair_block(t.tw / 2, t.th), block(t.tw, t.th);
  if (!naive && pairs_apply<T>(t, S)) {
    const size_t pair_smem = pairs_halo_bytes<T>(t, S);
    return with_k(S.K, [&](auto k) {
      inv_bwdw_pairs<T, decltype(k)::value><<<grid, pair_block, pair_smem, st>>>(
          go, x, gw, S, t.tiles_w, t.tiles_h);
      return cudaGetLastError();
    });
  }
  const size_t smem = halo_bytes<T>(t, S);
  if (!naive && tiled_k(S.K) && grid_ok(t, S) && smem <= kMaxSmem) {
    return with_k(S.K, [&](auto k) {
      inv_bwdw_tiled<T, decltype(k)::value><<<grid, block, smem, st>>>(
          go, x, gw, S, t.tiles_w, t.tiles_h);
      return cudaGetLastError();
    });
  }
  inv_bwdw_naive<T><<<naive_blocks(S.w_numel()), kThreads, 0, st>>>(go, x, gw, S);
  return cudaGetLastError();
}

// Calls fn(T{}) with the element type of `dtype`.
template <typename F>
cudaError_t dispatch(DType dtype, F&& fn) {
  switch (dtype) {
    case DType::kFloat32: return fn(float{});
    case DType::kFloat16: return fn(__half{});
    case DType::kBFloat16: return fn(__nv_bfloat16{});
    case DType::kFloat64: return fn(double{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t forward(DType dtype, const void* x, const void* weight, void* out, const InvShape& s,
                    bool naive, cudaStream_t stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    return forward_t<T>(static_cast<const T*>(x), static_cast<const T*>(weight),
                        static_cast<T*>(out), s, naive, stream);
  });
}

cudaError_t grad_input(DType dtype, const void* grad_out, const void* weight, void* grad_x,
                       const InvShape& s, bool naive, cudaStream_t stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    return grad_input_t<T>(static_cast<const T*>(grad_out), static_cast<const T*>(weight),
                           static_cast<T*>(grad_x), s, naive, stream);
  });
}

cudaError_t grad_weight(DType dtype, const void* grad_out, const void* x, void* grad_w,
                        const InvShape& s, bool naive, cudaStream_t stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    return grad_weight_t<T>(static_cast<const T*>(grad_out), static_cast<const T*>(x),
                            static_cast<T*>(grad_w), s, naive, stream);
  });
}

}  // namespace invbench::cuda
