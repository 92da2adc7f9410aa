// grad_x with SIMD across the channels of a group (the shapes cv_fits admits): the
// forward across channels (involution_cpu_chanvec.h) run backwards, as a scatter.
//
// Deliberately no include guard: included once per path after involution_cpu_chanvec.h,
// inside that path's namespace.
//
// The forward adds w[kh][kw](oy, ox) * x(oy * S + kh - pad, ox * S + kw - pad) into
// out(oy, ox); grad_x adds the same weight times grad_out(oy, ox) into grad_x at that
// input pixel. So a row of R grad_out pixels is held in R registers (L channels each)
// and, for each kernel row, the (R - 1) * S + K input pixels they reach are loaded from a
// staged, zero-padded grad_x buffer, take their taps' FMAs (the weights broadcast exactly
// as in the forward: the same planes, the same pixels, read in place) and are stored
// back. Every weight read is one the forward reads, so none falls outside the grid: the
// padding is on the grad_x side, a buffer whose padding columns are thrown away.
//
// A task is (batch, group, block of input rows), as in the forward; a grad_out row whose
// kernel rows reach the block from above or below runs only those kernel rows, so the
// tasks write disjoint rows and each (grad_out row, kernel row) runs once in all. The
// block's rows then go out as one run of pixels per channel block, through L x L
// transposes.

// The taps of R grad_out pixels g[r] (one block of L channels) for kernel rows [kh0, kh1):
// D[(kh - kh0) * xr + (r * S + kw) * L] += w[(kh * K + kw) * wp + r] * g[r]. B: the
// weights broadcast as in cv_taps; in pairs, pixel r + 1 takes tap kw's weight S columns
// after pixel r, from a register.
template <int K, int S, int R, Bcast B, typename TW>
__attribute__((always_inline)) inline void cvt_taps(float* D, int64_t xr,
                                                    const typename Vec::V* g, const TW* w,
                                                    int64_t wp, int kh0, int kh1, int64_t pfd) {
  constexpr int L = Vec::L;
  constexpr bool P = B != Bcast::kSingle;
  static_assert(!P || std::is_same_v<TW, c10::BFloat16> || std::is_same_v<TW, float>);
  const TW* wk[K];
#pragma GCC unroll 16
  for (int kw = 0; kw < K; ++kw) wk[kw] = w + (kh0 * K + kw) * wp;
  for (int kh = kh0; kh < kh1; ++kh, D += xr) {
    if (pfd != 0) {
#pragma GCC unroll 16
      for (int kw = 0; kw < K; ++kw) {
        __builtin_prefetch(wk[kw] + pfd, 0, 3);
        __builtin_prefetch(wk[kw] + pfd + R - 1, 0, 3);
      }
    }
    [[maybe_unused]] typename Vec::V carry[S][R];  // by column, modulo S
#pragma GCC unroll 64
    for (int j = 0; j < (R - 1) * S + K; ++j) {
      typename Vec::V dv = Vec::load(D + j * L);
#pragma GCC unroll 16
      for (int q = 0; q < R; ++q) {
        const int r = P ? R - 1 - q : q;  // descending with P: see cv_taps
        const int kw = j - r * S;
        if (kw < 0 || kw >= K) continue;
        dv = Vec::fma(tap_weight<B, R>(wk[kw] + r, r, carry[j % S]), g[r], dv);
      }
      Vec::store(D + j * L, dv);
    }
#pragma GCC unroll 16
    for (int kw = 0; kw < K; ++kw) wk[kw] += K * wp;
  }
}

// One grad_out row of one channel block: nblk blocks of R pixels (G: the staged row,
// [pixel][L]; tap t's weights at w + t * wp) into the staged grad_x rows at D (kernel
// row kh0's; xr floats a row).
template <int K, int S, int R, typename TW, Bcast P>
void cvt_row(float* D, int64_t xr, const float* G, const TW* w, int64_t wp, int64_t nblk,
             int kh0, int kh1, int64_t pfd) {
  using V = typename Vec::V;
  for (int64_t blk = 0; blk < nblk; ++blk) {
    V g[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) g[r] = Vec::load(G + (blk * R + r) * Vec::L);
    cvt_taps<K, S, R, P, TW>(D + blk * R * S * Vec::L, xr, g, w + blk * R, wp, kh0, kh1, pfd);
  }
}

template <typename TW>
using CvtRowFn = void (*)(float*, int64_t, const float*, const TW*, int64_t, int64_t, int, int,
                          int64_t);

template <typename TW, Bcast P>
inline CvtRowFn<TW> cvt_row_for_p(int R, int64_t K, int64_t s) {
  if constexpr (Vec::REGS >= 32)
    if (R == 14) return s == 1 ? cvt_row<7, 1, 14, TW, P> : cvt_row<7, 2, 14, TW, P>;
  if (R == 7) {
    if (K == 3) return s == 1 ? cvt_row<3, 1, 7, TW, P> : cvt_row<3, 2, 7, TW, P>;
    if (K == 5) return s == 1 ? cvt_row<5, 1, 7, TW, P> : cvt_row<5, 2, 7, TW, P>;
    return s == 1 ? cvt_row<7, 1, 7, TW, P> : cvt_row<7, 2, 7, TW, P>;
  }
  if (K == 3) return s == 1 ? cvt_row<3, 1, 8, TW, P> : cvt_row<3, 2, 8, TW, P>;
  if (K == 5) return s == 1 ? cvt_row<5, 1, 8, TW, P> : cvt_row<5, 2, 8, TW, P>;
  return s == 1 ? cvt_row<7, 1, 8, TW, P> : cvt_row<7, 2, 8, TW, P>;
}

template <typename TW>
inline CvtRowFn<TW> cvt_row_for(int R, int64_t K, int64_t s) {
  return cvt_row_for_p<TW, kTapsBcast<TW>>(R, K, s);
}

// Pixels [0, n) of rows of W pixels, pixel q = y * W + x at src[y * xr + x * L], into
// L planes (dst + c * cs), columns [0, n): a run of whole rows through L x L transposes,
// as transpose_out but from rows with gaps between them. NT: whole vectors with
// non-temporal stores (dst and cs kStreamAlign-aligned).
template <bool NT = false, typename T>
inline void transpose_out_rows(T* __restrict dst, int64_t cs, const float* __restrict src,
                               int64_t xr, int64_t W, int64_t n) {
  constexpr int L = Vec::L;
  int64_t y = 0, x = 0;  // pixel j0 + p's row and column
  for (int64_t j0 = 0; j0 < n; j0 += L) {
    const int64_t m = std::min<int64_t>(L, n - j0);
    typename Vec::V v[L];
#pragma GCC unroll 16
    for (int p = 0; p < L; ++p) {
      if (p >= m) {
        v[p] = Vec::zero();
        continue;
      }
      v[p] = Vec::load(src + y * xr + x * L);
      if (++x == W) x = 0, ++y;
    }
    store_transposed<NT>(dst, cs, v, j0, n);
  }
}

// grad_x (cv_fits(S)).
template <typename T>
void grad_input_cv_t(const T* go, const T* w, T* gx, const InvShape& S) {
  constexpr int L = Vec::L;
  const int64_t Cg = S.group_channels(), K = S.K, KK = K * K, s = S.stride, pad = S.pad;
  const int64_t Wo = S.Wo, HWo = S.Ho * S.Wo, HW = S.H * S.W;
  const int R = cv_block_pixels(Wo, K);
  const int64_t nblk = ceil_div(Wo, R), Wpad = nblk * R;
  const bool flat = Wpad == Wo;  // rows of whole blocks: every resnet-shapes layer
  // Staged grad_x rows: column q holds input column q - pad; wide enough for every tap
  // of the padded grad_out row and for every input column.
  const int64_t XW = std::max((Wpad - 1) * s + K, pad + S.W), xr = XW * L;
  const int64_t gr = Wpad * L;  // a staged grad_out row
  const int64_t CB = Cg / L;
  const int64_t Rr = row_block(S.B * S.G, S.H, Cg * (XW + ceil_div(Wpad, s))),
                blocks = ceil_div(S.H, Rr);
  const int64_t grows = (Rr + K - 2) / s + 2;  // grad_out rows a task reads, at most
  const int64_t dcs = Rr * xr, gcs = grows * gr;  // a channel block's stride
  const CvtRowFn<T> row_fn = cvt_row_for<T>(R, K, s);
  const CvtRowFn<float> row_fn_staged = cvt_row_for<float>(R, K, s);
  const bool prefetch = cv_prefetch_weights<T>(Wo);
  const T* goend = go + S.out_numel();
  // The task's rows go out as one run of pixels per channel block (a plane's rows are
  // contiguous): whole vectors, fewer part-filled transposes on short rows, and large
  // float32 results around the caches, as in the forward. Against a transpose per row on
  // a Zen 5 core (batch 8, two threads, float32, two sets of 8 pairs in one process):
  // 0.67 to 0.88 of the time on the stem, layer1, layer2-first and layer3-first (0.78 to
  // 0.97 without the non-temporal stores), 0.79 and 0.88 on layer2, 0.80 to 1.03 on
  // layer3 to layer4; bfloat16 (not streamed) 0.92 to 1.02, one set of 6 pairs.
  const bool stream_out = cv_stream_out<T>(S, HW);
  run_tasks(S.B * S.G * blocks, [&](TaskClaim& claim) {
    // gst's columns past Wo stay 0 (transpose_in writes Wo of them a row).
    std::vector<float> dbuf(CB * dcs), gst(CB * gcs), wst(flat ? 0 : KK * Wpad);
    int64_t t, following;
    while (claim.next(t, following)) {
      const Task k = task_of(t, blocks, Rr, S.H, S);
      const int64_t y0 = k.r0, y1 = k.r1;
      // grad_out rows oy whose kernel rows reach [y0, y1): y0 <= oy * s - pad + kh < y1
      const int64_t oa = std::max<int64_t>(0, ceil_div(std::max<int64_t>(y0 + pad - K + 1, 0), s));
      const int64_t ob = std::min(S.Ho - 1, floor_div(y1 - 1 + pad, s));
      zero_fill(dbuf.data(), CB * dcs);
      for (int64_t cb = 0; cb < CB && oa <= ob; ++cb) {
        const T* src = go + (k.c0 + cb * L) * HWo + oa * Wo;
        if (flat)
          transpose_in(gst.data() + cb * gcs, gr, src, HWo, Wo, (ob - oa + 1) * Wo, goend);
        else
          for (int64_t oy = oa; oy <= ob; ++oy)
            transpose_in(gst.data() + cb * gcs + (oy - oa) * gr, gr, src + (oy - oa) * Wo, HWo,
                         Wo, Wo, goend);
      }
      for (int64_t oy = oa; oy <= ob; ++oy) {
        const int64_t top = oy * s - pad;  // the input row of kernel row 0
        const int kh0 = int(std::max<int64_t>(0, y0 - top));
        const int kh1 = int(std::min<int64_t>(K, y1 - top));
        const T* wsrc = w + k.bg * KK * HWo + oy * Wo;
        // Past Wo the in-place reads would reach the next row's weights: a weight that is
        // not finite would then spoil the grad_x it lands on, so such rows are staged.
        if (!flat)
          for (int64_t uv = 0; uv < KK; ++uv)
            stage_row(wst.data() + uv * Wpad, wsrc + uv * HWo, Wo, 0, 1, Wpad);
        const int64_t pfd = prefetch && oy + 2 < S.Ho ? 2 * Wo : 0;
        for (int64_t cb = 0; cb < CB; ++cb) {
          float* D = dbuf.data() + cb * dcs + (top + kh0 - y0) * xr;
          const float* G = gst.data() + cb * gcs + (oy - oa) * gr;
          if (flat)
            row_fn(D, xr, G, wsrc, HWo, nblk, kh0, kh1, cb == 0 ? pfd : 0);
          else
            row_fn_staged(D, xr, G, wst.data(), Wpad, nblk, kh0, kh1, 0);
        }
      }
      for (int64_t cb = 0; cb < CB; ++cb) {
        T* out = gx + (k.c0 + cb * L) * HW + y0 * S.W;
        const float* src = dbuf.data() + cb * dcs + pad * L;
        if (stream_out && reinterpret_cast<uintptr_t>(out) % kStreamAlign == 0)
          transpose_out_rows<true>(out, HW, src, xr, S.W, (y1 - y0) * S.W);
        else
          transpose_out_rows(out, HW, src, xr, S.W, (y1 - y0) * S.W);
      }
    }
    if (stream_out) Vec::fence();  // the non-temporal stores are weakly ordered
  });
}
