// grad_weight with SIMD across images: the L lanes of a vector hold L (batch, group)
// pairs, on small planes (gwi_fits).
//
// Deliberately no include guard: included once per path after involution_cpu_chanvec.h,
// inside that path's namespace (it uses that path's `Vec` and the forward's transposes).
//
// grad_weight sums over a group's channels: gw[bg][kh][kw](oy, ox) = sum over c of
// go[bg][c](oy, ox) * x[bg][c](oy * s + kh - pad, ox * s + kw - pad). SIMD across pixels
// (grad_weight_t) fills 7 of 8 lanes on a 7-pixel row and loads its input at every tap's
// column offset; SIMD across channels would need a sum across the lanes for every
// output. With lanes that are different (batch, group) pairs of the same shape, each
// lane's sum is its own: one FMA per channel, tap and pixel, every lane busy whatever the
// row's length, and every load a whole aligned vector of a staged, transposed copy.
//
// A task is L consecutive (batch, group) pairs, whole planes. It stages their input and
// grad_out channels-innermost (x[bg][c][y][x] to xs[c][pad + y][pad + x][bg % L],
// zero-padded, widened to float), runs R pixels of a row by one kernel row at a time (K x
// R accumulators, the R grad_out vectors and the input vector: 25 registers at K = 7,
// R = 3), each input vector serving every pixel whose taps reach it, and writes a block
// of rows out through L x L transposes, one run of pixels per tap plane.

// Taps of kernel row kh for R pixels of a row: ob[(kh * K + kw) * ot + r * L] = sum over c
// of G[c * gc + r * L] * X[c * xc + kh * xr + (r * S + kw) * L].
template <int K, int S, int R>
__attribute__((always_inline)) inline void gwi_taps(float* __restrict ob, int64_t ot, int kh,
                                                    const float* X, int64_t xr, int64_t xc,
                                                    const float* G, int64_t gc, int64_t Cg) {
  using V = typename Vec::V;
  constexpr int L = Vec::L;
  V acc[K][R];
#pragma GCC unroll 16
  for (int kw = 0; kw < K; ++kw)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[kw][r] = Vec::zero();
  const float* Xk = X + kh * xr;
  for (int64_t c = 0; c < Cg; ++c, Xk += xc, G += gc) {
    V g[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) g[r] = Vec::load(G + r * L);
#pragma GCC unroll 32
    for (int j = 0; j < (R - 1) * S + K; ++j) {
      V xv = Vec::load(Xk + j * L);
      Vec::keep(xv);  // one load for all its FMAs
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const int kw = j - r * S;
        if (kw < 0 || kw >= K) continue;
        acc[kw][r] = Vec::fma(g[r], xv, acc[kw][r]);
      }
    }
  }
#pragma GCC unroll 16
  for (int kw = 0; kw < K; ++kw)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) Vec::store(ob + (kh * K + kw) * ot + r * L, acc[kw][r]);
}

// One output row: its pixels in blocks of 3, the last one or two alone or as a pair.
template <int K, int S>
void gwi_row(float* ob, int64_t ot, const float* X, int64_t xr, int64_t xc, const float* G,
             int64_t gc, int64_t Cg, int64_t Wo) {
  constexpr int L = Vec::L;
  int64_t ox = 0;
  for (; ox + 3 <= Wo; ox += 3)
    for (int kh = 0; kh < K; ++kh)
      gwi_taps<K, S, 3>(ob + ox * L, ot, kh, X + ox * S * L, xr, xc, G + ox * L, gc, Cg);
  if (Wo - ox == 2)
    for (int kh = 0; kh < K; ++kh)
      gwi_taps<K, S, 2>(ob + ox * L, ot, kh, X + ox * S * L, xr, xc, G + ox * L, gc, Cg);
  if (Wo - ox == 1)
    for (int kh = 0; kh < K; ++kh)
      gwi_taps<K, S, 1>(ob + ox * L, ot, kh, X + ox * S * L, xr, xc, G + ox * L, gc, Cg);
}

// The staged floats of a task: its input rows and columns that some tap reads, and
// grad_out, for every channel of the group.
inline int64_t gwi_staged_floats(const InvShape& S) {
  const int64_t XH = (S.Ho - 1) * S.stride + S.K, XW = (S.Wo - 1) * S.stride + S.K;
  return S.group_channels() * (XH * XW + S.Ho * S.Wo) * Vec::L;
}

// Whether grad_weight_images_t runs this shape: K = 7, stride 1 or 2, dilation 1, (batch
// x groups) a multiple of L, rows of at most 8 pixels, on the 32-register paths, where a
// task's staged input and grad_out fit in 640 KiB (layer4-first and layer4 of
// resnet-shapes, at any batch that makes B x G a multiple of L).
//
// Rows of at most 8 pixels: there the pixel-vector kernel fills at most 8 lanes and calls
// are short. On a Zen 5 core (batch 8, two threads, 6 to 8 pairs in one process, four
// sets) this one took 0.55 to 0.70 of its time on layer4-first and 0.65 to 0.69 on
// layer4 (float32 and bfloat16 on 16 lanes, float32 on the 8-lane `avx512` path); on
// layer3's 14-pixel rows 1.02 to 1.18 on 16 lanes (0.88 on 8). Its own cost is the transposes: a task writes
// K * K planes of every pair through L x L transposes (196 for 38416 FMAs on layer4).
inline bool gwi_fits(const InvShape& S) {
  return Vec::REGS >= 32 && S.K == 7 && S.dilation == 1 && (S.stride == 1 || S.stride == 2) &&
         S.Wo <= 8 && (S.B * S.G) % Vec::L == 0 && gwi_staged_floats(S) <= 160 * 1024;
}

template <typename T>
void grad_weight_images_t(const T* go, const T* x, T* gw, const InvShape& S) {
  constexpr int L = Vec::L;
  constexpr int K = 7;
  const int64_t Cg = S.group_channels(), KK = K * K, s = S.stride, pad = S.pad;
  const int64_t Ho = S.Ho, Wo = S.Wo, HWo = Ho * Wo, HW = S.H * S.W;
  const int64_t XH = (Ho - 1) * s + K, XW = (Wo - 1) * s + K, xr = XW * L, xc = XH * xr;
  const int64_t gc = HWo * L;
  // Input rows and columns some tap reads: image row y is staged row y + pad.
  const int64_t y_hi = std::min(S.H, XH - pad), Wst = std::min(S.W, XW - pad);
  // Output rows a block: the tap planes' results for them (K*K x rows x Wo vectors) within
  // 256 KiB, so they go out from L2.
  const int64_t rb = std::max<int64_t>(1, std::min(Ho, (64 * 1024) / (KK * Wo * L)));
  const int64_t ot = rb * Wo * L;
  const T* xend = x + S.x_numel();
  const T* goend = go + S.out_numel();
  auto* const row_fn = s == 1 ? &gwi_row<K, 1> : &gwi_row<K, 2>;
  run_tasks(S.B * S.G / L, [&](TaskClaim& claim) {
    // Zeroed once: the padding rows and columns are the same in every task. transpose_out
    // reads whole L x L blocks, past the last plane's run by up to L pixels.
    std::vector<float> xs(Cg * xc), gs(Cg * gc), ob(KK * ot + L * L);
    int64_t t, following;
    while (claim.next(t, following)) {
      const int64_t bg0 = t * L;  // lane i: pair bg0 + i, whose planes are Cg planes apart
      for (int64_t c = 0; c < Cg; ++c) {
        const T* xsrc = x + (bg0 * Cg + c) * HW;
        float* dst = xs.data() + c * xc + pad * xr + pad * L;
        if (Wst == S.W)
          transpose_in(dst, xr, xsrc, Cg * HW, S.W, y_hi * S.W, xend);
        else
          for (int64_t y = 0; y < y_hi; ++y)
            transpose_in(dst + y * xr, xr, xsrc + y * S.W, Cg * HW, Wst, Wst, xend);
        transpose_in(gs.data() + c * gc, Wo * L, go + (bg0 * Cg + c) * HWo, Cg * HWo, Wo, HWo,
                     goend);
      }
      for (int64_t r0 = 0; r0 < Ho; r0 += rb) {
        const int64_t r1 = std::min(Ho, r0 + rb);
        for (int64_t oy = r0; oy < r1; ++oy)
          row_fn(ob.data() + (oy - r0) * Wo * L, ot, xs.data() + oy * s * xr, xr, xc,
                 gs.data() + oy * Wo * L, gc, Cg, Wo);
        for (int64_t tap = 0; tap < KK; ++tap)
          transpose_out(gw + (bg0 * KK + tap) * HWo + r0 * Wo, KK * HWo, ob.data() + tap * ot,
                        (r1 - r0) * Wo);
      }
    }
  });
}
