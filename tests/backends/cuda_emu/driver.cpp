// The CUDA launchers and kernels of invbench/csrc, run on the CPU (see cuda_emu.h)
// against a float64 reference, for the geometries given on the command line.
//
//   driver B C H W G K stride pad dilation [B C H W ...]
//
// prints one line per geometry, dtype, op and path:
//   <geometry index> <dtype> <op> <asked: tiled|naive> <ran: pairs|tiled|naive> <max rel. error>
// The launcher file is included after its <<<...>>> launches were rewritten into
// emu::launch(...) calls (done by the test that builds this program).
#include "cuda_emu.h"

#define cudaGetLastError() cudaSuccess
#include "involution_cuda_emu.inc"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

using invbench::InvShape;
namespace ic = invbench::cuda;

namespace {

double idx_x(const InvShape& s, const std::vector<double>& x, int64_t b, int64_t c, int64_t y,
             int64_t z) {
  if (y < 0 || y >= s.H || z < 0 || z >= s.W) return 0.0;
  return x[((b * s.C + c) * s.H + y) * s.W + z];
}

// The operator's definition, in double, and its two gradients by the chain rule.
void reference(const InvShape& s, const std::vector<double>& x, const std::vector<double>& w,
               const std::vector<double>& go, std::vector<double>& out,
               std::vector<double>& gx, std::vector<double>& gw) {
  out.assign(s.out_numel(), 0.0);
  gx.assign(s.x_numel(), 0.0);
  gw.assign(s.w_numel(), 0.0);
  const int64_t cg = s.C / s.G;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t i = 0; i < s.Ho; ++i)
        for (int64_t j = 0; j < s.Wo; ++j) {
          const int64_t o = ((b * s.C + c) * s.Ho + i) * s.Wo + j;
          for (int64_t u = 0; u < s.K; ++u)
            for (int64_t v = 0; v < s.K; ++v) {
              const int64_t y = i * s.stride - s.pad + u * s.dilation;
              const int64_t z = j * s.stride - s.pad + v * s.dilation;
              const int64_t wi = ((((b * s.G + c / cg) * s.K + u) * s.K + v) * s.Ho + i) * s.Wo + j;
              const double xv = idx_x(s, x, b, c, y, z);
              out[o] += w[wi] * xv;
              gw[wi] += go[o] * xv;
              if (y >= 0 && y < s.H && z >= 0 && z < s.W)
                gx[((b * s.C + c) * s.H + y) * s.W + z] += go[o] * w[wi];
            }
        }
}

template <typename T>
T cast(double v);
template <> float cast<float>(double v) { return static_cast<float>(v); }
template <> double cast<double>(double v) { return v; }
template <> __half cast<__half>(double v) { return __float2half_rn(static_cast<float>(v)); }
template <> __nv_bfloat16 cast<__nv_bfloat16>(double v) {
  return __float2bfloat16_rn(static_cast<float>(v));
}
double back(float v) { return v; }
double back(double v) { return v; }
double back(__half v) { return __half2float(v); }
double back(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
std::vector<T> to(const std::vector<double>& v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = cast<T>(v[i]);
  return out;
}

// The inputs as the kernels see them (rounded to T), so the reference gets the same.
template <typename T>
std::vector<double> rounded(const std::vector<double>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = back(cast<T>(v[i]));
  return out;
}

template <typename T>
double max_rel_error(const std::vector<T>& got, const std::vector<double>& want) {
  double scale = 0.0, err = 0.0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = back(got[i]);
    if (!std::isfinite(g)) return INFINITY;  // an unwritten (poisoned) element
    err = std::max(err, std::fabs(g - want[i]));
  }
  return scale > 0 ? err / scale : err;
}

template <typename T>
std::vector<T> poisoned(size_t n) {
  return std::vector<T>(n, cast<T>(NAN));
}

// Which kernel ran: naive (1-D blocks), pairs (the two-pixel kernels) or tiled.
template <typename T>
const char* kernel_kind() {
  const void* pairs[] = {reinterpret_cast<const void*>(&ic::inv_fwd_pairs<T, 3>),
                         reinterpret_cast<const void*>(&ic::inv_fwd_pairs<T, 5>),
                         reinterpret_cast<const void*>(&ic::inv_fwd_pairs<T, 7>),
                         reinterpret_cast<const void*>(&ic::inv_bwdw_pairs<T, 3>),
                         reinterpret_cast<const void*>(&ic::inv_bwdw_pairs<T, 5>),
                         reinterpret_cast<const void*>(&ic::inv_bwdw_pairs<T, 7>),
                         reinterpret_cast<const void*>(&ic::inv_bwdx_pairs<T, 3>),
                         reinterpret_cast<const void*>(&ic::inv_bwdx_pairs<T, 5>),
                         reinterpret_cast<const void*>(&ic::inv_bwdx_pairs<T, 7>)};
  for (const void* p : pairs)
    if (emu::last_kernel == p) return "pairs";
  return emu::last_block_2d ? "tiled" : "naive";
}

template <typename T>
void report(int index, const char* dtype, const char* op, const char* path, size_t before,
            double err) {
  if (emu::launches != before + 1) {
    std::printf("%d %s %s %s none inf\n", index, dtype, op, path);
    return;
  }
  std::printf("%d %s %s %s %s %.3g\n", index, dtype, op, path, kernel_kind<T>(), err);
}

template <typename T>
void run(int index, const char* name, ic::DType dtype, const InvShape& s, std::mt19937& gen) {
  std::normal_distribution<double> normal(0.0, 1.0);
  auto draw = [&](int64_t n) {
    std::vector<double> v(n);
    for (auto& e : v) e = normal(gen);
    return rounded<T>(v);
  };
  const auto x = draw(s.x_numel()), w = draw(s.w_numel()), go = draw(s.out_numel());
  std::vector<double> out, gx, gw;
  reference(s, x, w, go, out, gx, gw);
  const auto tx = to<T>(x), tw = to<T>(w), tgo = to<T>(go);
  for (bool naive : {false, true}) {
    const char* path = naive ? "naive" : "tiled";
    auto o = poisoned<T>(out.size());
    size_t before = emu::launches;
    ic::forward(dtype, tx.data(), tw.data(), o.data(), s, naive, nullptr);
    report<T>(index, name, "forward", path, before, max_rel_error(o, out));
    auto g1 = poisoned<T>(gx.size());
    before = emu::launches;
    ic::grad_input(dtype, tgo.data(), tw.data(), g1.data(), s, naive, nullptr);
    report<T>(index, name, "grad_input", path, before, max_rel_error(g1, gx));
    auto g2 = poisoned<T>(gw.size());
    before = emu::launches;
    ic::grad_weight(dtype, tgo.data(), tx.data(), g2.data(), s, naive, nullptr);
    report<T>(index, name, "grad_weight", path, before, max_rel_error(g2, gw));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if ((argc - 1) % 9 != 0 || argc == 1) {
    std::fprintf(stderr, "usage: driver B C H W G K stride pad dilation [...]\n");
    return 2;
  }
  std::mt19937 gen(7);
  for (int a = 1, index = 0; a < argc; a += 9, ++index) {
    int64_t v[9];
    for (int k = 0; k < 9; ++k) v[k] = std::atoll(argv[a + k]);
    InvShape s{v[0], v[1], v[2], v[3], v[4], v[5], 0, 0, v[6], v[7], v[8]};
    s.Ho = (s.H + 2 * s.pad - s.dilation * (s.K - 1) - 1) / s.stride + 1;
    s.Wo = (s.W + 2 * s.pad - s.dilation * (s.K - 1) - 1) / s.stride + 1;
    run<float>(index, "float32", ic::DType::kFloat32, s, gen);
    run<double>(index, "float64", ic::DType::kFloat64, s, gen);
    run<__half>(index, "float16", ic::DType::kFloat16, s, gen);
    run<__nv_bfloat16>(index, "bfloat16", ic::DType::kBFloat16, s, gen);
  }
  return 0;
}
