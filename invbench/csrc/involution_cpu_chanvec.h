// The forward with SIMD across the channels of a group: groups of a multiple of L
// channels (RedNet's have 16) at dilation 1, K = 3, 5 or 7 and stride 1 or 2. Other
// shapes run the pixel-vector forward (forward_t).
//
// Deliberately no include guard: involution_cpu_kernels.h includes it once per path,
// inside that path's namespace (it uses that path's `Vec`, put_n and task helpers).
//
// A pixel's weight is shared by the channels of its group, so with L channels of a group
// in one vector a tap is one FMA: the weight broadcast (on AVX-512 folded into the FMA
// as an embedded broadcast) times a vector of one input pixel's L channels. Those input
// vectors are whole aligned blocks of a staged, transposed copy of the input, so no load
// crosses a cache line (the pixel-vector kernels load every tap's input at its column
// offset, and a 16-lane load at an offset of 1 to 15 floats spans two lines); and a
// loaded input vector serves every output pixel of the block whose taps reach it, up to
// K of them, from a register.
//
// A task is (batch, group, block of rows), as in forward_t. It stages the block's input
// rows channels-innermost (x[c][y][x] to st[cb][y][pad + x][c % L], zero-padded,
// widened to float), runs R output pixels of a row at a time into a row buffer, and
// writes the row into the output's planes through L x L transposes in registers. The
// weights are read in place; bfloat16 and float16 ones are widened as they are
// broadcast (bfloat16 two pixels' at a time on the 32-register paths).

inline typename Vec::V broadcast(const float* p) { return Vec::set1(*p); }
inline typename Vec::V broadcast(const c10::BFloat16* p) { return Vec::set1_bf16(p); }
inline typename Vec::V broadcast(const c10::Half* p) { return Vec::set1_half(p); }

template <typename TV>
inline typename TV::V set1_pair(const c10::BFloat16* p, typename TV::V& second) {
  return TV::set1_bf16_pair(p, second);
}
template <typename TV>
inline typename TV::V set1_pair(const float* p, typename TV::V& second) {
  return TV::set1_f32_pair(p, second);
}

// How the taps' loops (cv_taps, and grad_x's cvt_taps) broadcast the weights: one load
// per FMA, or shared by pairs of pixels (see cv_taps).
enum class Bcast { kSingle, kPairs, kHalfPairs };

// Pixel r's weight of a tap, at p, as B broadcasts it (r of R, taken in descending order
// where B pairs). carry: the weights held for this input column (modulo S), by pixel.
template <Bcast B, int R, typename TW>
__attribute__((always_inline)) inline typename Vec::V tap_weight(const TW* p, int r,
                                                                 typename Vec::V* carry) {
  if constexpr (B != Bcast::kSingle) {
    if (B == Bcast::kHalfPairs && (r / 2) % 2 == 1) return broadcast(p);
    if (r % 2 == 1) return carry[r];
    if (r + 1 < R) return set1_pair<Vec>(p, carry[r + 1]);
  }
  return broadcast(p);
}

// Taps of R output pixels of one row, one block of L channels: acc[r] += w[(kh * K + kw) *
// wp + r] * X[kh * xr + (r * S + kw) * L].
//
// B = Bcast::kPairs: pixels r and r + 1 (r even) share one broadcast of their two adjacent
// weights of a tap: bfloat16 a 32-bit one, widened by a shift (r's) and a mask (r + 1's);
// float32 a 64-bit one, each float then copied over its pair's lanes (vmovsldup,
// vmovshdup). Pixel r + 1's is held in a register until S input columns on, where the
// same tap reaches that pixel: half the weight loads, for one more instruction each.
// Bcast::kHalfPairs: pixels 0-1, 4-5, 8-9, ... so, the others broadcast singly (an FMA
// with its broadcast folded in): a quarter fewer loads than kSingle, and half the copies
// of kPairs, which go to the shuffle units the transposes also use.
//
// pfd != 0: each kernel row first prefetches its K taps' weights pfd elements on (the
// lines that hold this block's pixels, two rows down the planes), so the prefetches are
// spread over the FMAs instead of a whole row's K * K planes issued at once.
//
// N = 2: two output rows of R pixels each, a row's R being the whole row (Wo = R), so
// the second row's weights follow the first's in every plane (w + R + r) and its input
// rows are S staged rows down (X + S * xr): 2R accumulators over one set of pointers.
template <int K, int S, int R, Bcast B, typename TW, int N = 1>
__attribute__((always_inline)) inline void cv_taps(typename Vec::V* acc, const TW* w,
                                                   int64_t wp, const float* X, int64_t xr,
                                                   int64_t pfd = 0) {
  constexpr int L = Vec::L;
  constexpr bool P = B != Bcast::kSingle;
  static_assert(!P || std::is_same_v<TW, c10::BFloat16> || std::is_same_v<TW, float>);
  // A pointer per tap column, stepped a kernel row at a time: every weight address is
  // then a pointer and a constant. (Written as w[kw * wp + r], GCC kept the K offsets in
  // vector registers and moved one to an integer register before nearly every FMA.)
  const TW* wk[K];
#pragma GCC unroll 16
  for (int kw = 0; kw < K; ++kw) wk[kw] = w + kw * wp;
  for (int kh = 0; kh < K; ++kh, X += xr) {
    if (pfd != 0) {
#pragma GCC unroll 16
      for (int kw = 0; kw < K; ++kw) {
        __builtin_prefetch(wk[kw] + pfd, 0, 3);
        __builtin_prefetch(wk[kw] + pfd + N * R - 1, 0, 3);
      }
    }
#pragma GCC unroll 2
    for (int h = 0; h < N; ++h) {
      [[maybe_unused]] typename Vec::V carry[S][R];  // by input column, modulo S
      const float* Xh = X + h * S * xr;
      typename Vec::V* ah = acc + h * R;
      const int wo = h * R;
#pragma GCC unroll 64
      for (int j = 0; j < (R - 1) * S + K; ++j) {
        typename Vec::V xv = Vec::load(Xh + j * L);
        Vec::keep(xv);  // one load for all its FMAs (GCC would fold it into each)
#pragma GCC unroll 16
        for (int q = 0; q < R; ++q) {
          // with P descending, so an odd pixel takes its carried weight before the even
          // one below it replaces it
          const int r = P ? R - 1 - q : q;
          const int kw = j - r * S;
          if (kw < 0 || kw >= K) continue;
          ah[r] = Vec::fma(tap_weight<B, R>(wk[kw] + wo + r, r, carry[j % S]), xv, ah[r]);
        }
      }
    }
#pragma GCC unroll 16
    for (int kw = 0; kw < K; ++kw) wk[kw] += K * wp;
  }
}

// One output row of one channel block: nblk blocks of R pixels (tap t's weights for the
// row at w + t * wp) into obuf[pixel][L].
// N = 2: rows i and i + 1 of R = Wo pixels (nblk = 1), into obuf[2R][L].
template <int K, int S, int R, typename TW, Bcast P = Bcast::kSingle, int N = 1>
void cv_row(float* __restrict obuf, const TW* w, int64_t wp, const float* X, int64_t xr,
            int64_t nblk, int64_t pfd) {
  using V = typename Vec::V;
  for (int64_t blk = 0; blk < nblk; ++blk) {
    V acc[N * R];
#pragma GCC unroll 16
    for (int r = 0; r < N * R; ++r) acc[r] = Vec::zero();
    cv_taps<K, S, R, P, TW, N>(acc, w + blk * R, wp, X + blk * R * S * Vec::L, xr, pfd);
#pragma GCC unroll 16
    for (int r = 0; r < N * R; ++r) Vec::store(obuf + (blk * R + r) * Vec::L, acc[r]);
  }
}

template <typename TW>
using CvRowFn = void (*)(float*, const TW*, int64_t, const float*, int64_t, int64_t, int64_t);

template <typename TW, Bcast P>
inline CvRowFn<TW> cv_row_for_p(int R, int64_t K, int64_t s) {
  if constexpr (Vec::REGS >= 32)
    if (R == 14) return s == 1 ? cv_row<7, 1, 14, TW, P> : cv_row<7, 2, 14, TW, P>;  // K = 7 only
  if (R == 7) {
    if (K == 3) return s == 1 ? cv_row<3, 1, 7, TW, P> : cv_row<3, 2, 7, TW, P>;
    if (K == 5) return s == 1 ? cv_row<5, 1, 7, TW, P> : cv_row<5, 2, 7, TW, P>;
    return s == 1 ? cv_row<7, 1, 7, TW, P> : cv_row<7, 2, 7, TW, P>;
  }
  if (K == 3) return s == 1 ? cv_row<3, 1, 8, TW, P> : cv_row<3, 2, 8, TW, P>;
  if (K == 5) return s == 1 ? cv_row<5, 1, 8, TW, P> : cv_row<5, 2, 8, TW, P>;
  return s == 1 ? cv_row<7, 1, 8, TW, P> : cv_row<7, 2, 8, TW, P>;
}

// bfloat16 and float32 weights broadcast in pairs on the 32-register paths (with 16
// registers the carried weights would not fit beside the accumulators at stride 2).
// float32 pairs: on a Zen 5 core (batch 8, two threads, 8 to 10 pairs in one process)
// 0.83 to 0.91 of the time on layer2 and layer3, 0.88 to 0.92 on layer2-first and
// layer3-first, 0.93 to 0.98 on layer1; 8-lane `avx512` path 0.91 to 0.95 on those.
template <typename TW>
constexpr bool kPairedWeights =
    (std::is_same_v<TW, c10::BFloat16> || std::is_same_v<TW, float>) && Vec::REGS >= 32;

// The broadcasts of the forward's and grad_x's taps: float32 half in pairs on 16 lanes.
// On a Zen 5 core (batch 8, two threads, three sets of 14 to 16 pairs in one process)
// the forward took 0.92 to 0.97 of the time with pairs on layer1 and 0.95 to 0.98 on
// layer3, 0.92 to 1.04 on the others; grad_x 0.94 to 0.96 on layer1, 0.95 to 0.99 on
// layer2-first and layer2, 0.95 to 1.03 on the others. The taps' loop alone on data in
// L1 (tools/cv_loop_rate.c) ran 13 to 18% faster in three rounds. bfloat16 pairs widen
// with a shift and a mask, not a shuffle, and stay as they are.
template <typename TW>
constexpr Bcast kTapsBcast = !kPairedWeights<TW> ? Bcast::kSingle
                                : std::is_same_v<TW, float> && Vec::L == 16 ? Bcast::kHalfPairs
                                                                            : Bcast::kPairs;

// Two rows of 7 pixels a call (K = 7, Wo = 7, on the 32-register paths), else nullptr.
template <typename TW>
inline CvRowFn<TW> cv_row2_for(int64_t K, int64_t s, int64_t Wo) {
  constexpr Bcast P = kPairedWeights<TW> ? Bcast::kPairs : Bcast::kSingle;
  if constexpr (Vec::REGS >= 32)
    if (K == 7 && Wo == 7) return s == 1 ? cv_row<7, 1, 7, TW, P, 2> : cv_row<7, 2, 7, TW, P, 2>;
  return nullptr;
}

template <typename TW>
inline CvRowFn<TW> cv_row_for(int R, int64_t K, int64_t s) {
  return cv_row_for_p<TW, kTapsBcast<TW>>(R, K, s);
}

// Whether forward_cv_t runs this shape.
inline bool cv_fits(const InvShape& S) {
  return S.group_channels() % Vec::L == 0 && S.dilation == 1 &&
         (S.K == 3 || S.K == 5 || S.K == 7) && (S.stride == 1 || S.stride == 2);
}

// Pixels per register block: 7 or 8, whichever pads the row less (8 on a tie); at K = 7
// on the 32-register paths, 14 where 14 divides the row. Every resnet-shapes row (112, 56,
// 28, 14 or 7 pixels) is a whole number of blocks. Fourteen accumulators hide the FMA's
// latency better than seven and load each input vector for twice as many pixels (20
// loads per 98 FMAs of a kernel row, against 26). A small gain: docs/backends/cuda_ext.md,
// "The forward across channels". Twenty-eight accumulators spilled (five times as long).
inline int cv_block_pixels(int64_t Wo, int64_t K) {
  if (Vec::REGS >= 32 && K == 7 && Wo % 14 == 0) return 14;
  return ceil_div(Wo, 7) * 7 < ceil_div(Wo, 8) * 8 ? 7 : 8;
}

// Whether the taps' loop prefetches the weights two rows on: rows of 112 bytes of
// weights or more (28 float32 pixels). There the hardware prefetchers did not keep up
// with the K * K planes. On a Zen 5 core (batch 8, two threads, 8 pairs in one process)
// the prefetch took layer1's float32 forward from 1.23 to 0.98 times the pixel-vector
// kernel's time and layer2-first's from 0.81 to 0.73; on rows of 7 and 14 pixels it cost
// 5 to 15%. Issued by the taps' loop a kernel row at a time (cv_taps) rather than a row's
// 49 planes at once before it: layer1 0.89 and 0.90 of the time, layer2-first 0.92,
// layer2 0.86 and 0.91 (float32, two sets of 10 pairs); on rows under 112 bytes it still
// made no consistent difference (layer3 0.96, layer4 1.02).
template <typename T>
constexpr bool cv_prefetch_weights(int64_t Wo) {
  return Wo * int64_t(sizeof(T)) >= 112;
}

// Whether a call's float32 result (planes of `plane` values) goes around the caches:
// where the call moves kStreamPastBytes or more, its first lines have left the caches by
// its end anyway, and a cached store would first read each line from memory.
template <typename T>
inline bool cv_stream_out(const InvShape& S, int64_t plane) {
  return std::is_same_v<T, float> &&
         (S.x_numel() + S.w_numel() + S.out_numel()) * int64_t(sizeof(T)) >= kStreamPastBytes &&
         (plane * int64_t(sizeof(T))) % kStreamAlign == 0;
}

// n values from p widened to float, n <= L: a whole vector when n = L, else the first n
// (masked loads, or through a buffer for float16).
inline typename Vec::V load_float_n(const float* p, int64_t n) {
  return n >= Vec::L ? Vec::load(p) : Vec::load_n(p, n);
}
inline typename Vec::V load_float_n(const c10::BFloat16* p, int64_t n) {
  return n >= Vec::L ? Vec::load_bf16(p) : Vec::load_bf16_n(p, n);
}
inline typename Vec::V load_float_n(const c10::Half* p, int64_t n) {
  if (n >= Vec::L) return Vec::load_half(p);
  c10::Half part[Vec::L] = {};
  for (int64_t k = 0; k < n; ++k) part[k] = p[k];
  return Vec::load_half(part);
}

// How far ahead of its loads transpose_in prefetches each channel plane. Its L planes are
// L streams at once, more than the hardware prefetchers followed: with each load's line
// 256 bytes on prefetched, the float32 forward took 0.72 to 0.88 of the time on the stem,
// 0.91 to 0.95 on layer1, 0.81 to 0.94 on layer2-first and 0.92 to 0.97 on
// layer3-first, whose inputs come from memory (a Zen 5 core, batch 8, two threads, three
// sets of 10 pairs in one process); 0.96 to 1.03 on the other layers and on bfloat16.
// docs/backends/cuda_ext.md, "The input's planes prefetched as they are staged".
constexpr int64_t kStageAheadBytes = 256;

// Pixels [0, n) of L channel planes (src + c * cs), rows of W pixels, into dst: pixel
// q = y * W + x to dst[y * xr + x * L + c]. One image row is W = n; a run of whole rows
// shorter than a vector is W < n (a transpose per L pixels rather than one per row).
// A whole vector is loaded wherever it stays before `end` (the tensor's end), even past
// the n pixels: on a Zen 5 core a masked load that missed the caches took about three
// times as long as a whole one (a C loop over a 16 MiB array, three runs each).
// One pointer steps over the L planes and one over the destination's pixels, and `end`
// is checked once a vector of pixels, not once a load: written with a pointer per plane,
// GCC kept most of the 16 on the stack, eleven instructions a load. On a Zen 5 core
// (batch 8, two threads, with store_transposed's same change; medians of 12 to 14 pairs
// in one process) the float32 forward took 0.89 to 1.00 of the time on layer3-first to
// layer4 and 0.95 to 1.02 on the stem to layer2 (three sets); bfloat16 0.90 to 1.00 on
// layer3-first to layer4 and 0.82 to 1.04 on the others (two sets).
template <typename T>
inline void transpose_in(float* __restrict dst, int64_t xr, const T* __restrict src, int64_t cs,
                         int64_t W, int64_t n, const T* end) {
  constexpr int L = Vec::L;
  const int64_t gap = xr - W * L;  // from past a row's last pixel to the next row's first
  float* d = dst;                  // pixel j0's place
  int64_t x = 0;                   // and its column
  for (int64_t j0 = 0; j0 < n; j0 += L) {
    const int64_t m = std::min<int64_t>(L, n - j0);
    typename Vec::V v[L];
    const T* p = src + j0;
    if (src + (L - 1) * cs + j0 + L <= end) {
#pragma GCC unroll 16
      for (int c = 0; c < L; ++c, p += cs) {
        __builtin_prefetch(reinterpret_cast<const char*>(p) + kStageAheadBytes, 0, 3);
        v[c] = load_float_n(p, L);
      }
    } else {
#pragma GCC unroll 16
      for (int c = 0; c < L; ++c, p += cs) v[c] = load_float_n(p, p + L <= end ? L : m);
    }
    Vec::transpose(v);
#pragma GCC unroll 16
    for (int q = 0; q < L; ++q) {
      if (q == m) break;
      Vec::store(d, v[q]);
      const bool wrap = ++x == W;
      d += wrap ? L + gap : L;
      x = wrap ? 0 : x;
    }
  }
}

// v[p] (pixel j0 + p's L channels, p < L) transposed into L output planes (dst + c * cs)
// at columns j0 .. j0 + L - 1, those before n.
template <bool NT, typename T>
inline void store_transposed(T* __restrict dst, int64_t cs, typename Vec::V* v, int64_t j0,
                             int64_t n) {
  Vec::transpose(v);
  T* p = dst + j0;
  if (n - j0 >= Vec::L) {
#pragma GCC unroll 16
    for (int c = 0; c < Vec::L; ++c, p += cs) put_n<NT>(p, v[c], Vec::L);
  } else {
#pragma GCC unroll 16
    for (int c = 0; c < Vec::L; ++c, p += cs) put_n<NT>(p, v[c], n - j0);
  }
}

// Pixels [0, n) of obuf[pixel][L] (which holds whole L x L blocks) into L output planes
// (dst + c * cs), columns [0, n). NT: whole vectors with non-temporal stores (dst and cs
// kStreamAlign-aligned).
template <bool NT = false, typename T>
inline void transpose_out(T* __restrict dst, int64_t cs, const float* __restrict obuf, int64_t n) {
  constexpr int L = Vec::L;
  for (int64_t j0 = 0; j0 < n; j0 += L) {
    typename Vec::V v[L];
#pragma GCC unroll 16
    for (int p = 0; p < L; ++p) v[p] = Vec::load(obuf + (j0 + p) * L);
    store_transposed<NT>(dst, cs, v, j0, n);
  }
}

// Forward (cv_fits(S)).
template <typename T>
void forward_cv_t(const T* x, const T* w, T* out, const InvShape& S) {
  constexpr int L = Vec::L;
  const int64_t Cg = S.group_channels(), K = S.K, KK = K * K, s = S.stride, pad = S.pad;
  const int64_t Wo = S.Wo, HWo = S.Ho * S.Wo, HW = S.H * S.W;
  const int R = cv_block_pixels(Wo, K);
  const int64_t nblk = ceil_div(Wo, R), Wpad = nblk * R;  // the row padded to whole blocks
  const CvRowFn<T> row_fn = cv_row_for<T>(R, K, s);
  const CvRowFn<float> row_fn_staged = cv_row_for<float>(R, K, s);
  // A staged row: XW columns, column q holding input column q - pad (0 outside the image).
  const int64_t XW = (Wpad - 1) * s + K, xr = XW * L;
  const int64_t Wst = std::min(S.W, XW - pad);  // input columns staged
  const int64_t CB = Cg / L;                    // channel blocks
  const int64_t Rr = row_block(S.B * S.G, S.Ho, Cg * s * XW), blocks = ceil_div(S.Ho, Rr);
  const int64_t srows = (Rr - 1) * s + K, cs = srows * xr;  // staged rows; a block's stride
  const T* wend = w + S.w_numel();
  const T* xend = x + S.x_numel();
  const bool prefetch = cv_prefetch_weights<T>(Wo);
  // Where rows are whole blocks (every resnet-shapes layer), a task's output goes out
  // once per channel block at its end, its rows as one run of pixels (they are
  // contiguous in each output plane): whole vectors, whole cache lines, no masked row
  // tails, and no output writes between the loops' loads. Where whole input rows are
  // staged, they come in the same way. Large float32 outputs then go around the caches
  // (stream_out). docs/backends/cuda_ext.md, "A task's rows as one run", has the pairs.
  const bool flat_out = Wpad == Wo;
  const bool flat_in = flat_out && Wst == S.W;
  const bool stream_out = flat_out && cv_stream_out<T>(S, HWo);
  // Rows of 7 pixels (layer4-first, layer4) go two a call where the task has two rows left:
  // 14 accumulators instead of 7 (more independent FMA chains, half the calls). Same
  // results, bit for bit (every accumulator takes the same FMAs in the same order). On a
  // Zen 5 core (batch 8, two threads, 8 to 10 pairs in one process) 0.94 to 1.00 of the
  // time, float32 and bfloat16, on both layers; docs/backends/cuda_ext.md.
  const CvRowFn<T> row2_fn = flat_out ? cv_row2_for<T>(K, s, Wo) : nullptr;
  const int64_t obs = flat_out ? ceil_div(Rr * Wo, L) * L * L : ceil_div(Wpad, L) * L * L;
  run_tasks(S.B * S.G * blocks, [&](TaskClaim& claim) {
    InputStage st(CB * cs, 0, srows);
    std::vector<float> wst(KK * Wpad), obuf((flat_out ? CB : 1) * obs);
    int64_t t, following;
    while (claim.next(t, following)) {
      const Task k = task_of(t, blocks, Rr, S.Ho, S);
      const int64_t y0 = k.r0 * s - pad, rows = (k.r1 - k.r0 - 1) * s + K;
      int64_t ra = rows, rb = 0;  // the staged rows inside the image
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t y = y0 + r;
        if (y < 0 || y >= S.H) {
          if (st.held[r])
            for (int64_t cb = 0; cb < CB; ++cb) zero_fill(st.buf.data() + cb * cs + r * xr, xr);
          st.held[r] = 0;
          continue;
        }
        st.held[r] = 1;
        ra = std::min(ra, r), rb = r + 1;
        if (!flat_in)
          for (int64_t cb = 0; cb < CB; ++cb)
            transpose_in(st.buf.data() + cb * cs + r * xr + pad * L, xr,
                         x + (k.c0 + cb * L) * HW + y * S.W, HW, Wst, Wst, xend);
      }
      if (flat_in && ra < rb)
        for (int64_t cb = 0; cb < CB; ++cb)
          transpose_in(st.buf.data() + cb * cs + ra * xr + pad * L, xr,
                       x + (k.c0 + cb * L) * HW + (y0 + ra) * S.W, HW, S.W, (rb - ra) * S.W,
                       xend);
      for (int64_t i = k.r0; i < k.r1; ++i) {
        const T* wsrc = w + k.bg * KK * HWo + i * Wo;
        const float* xb = st.buf.data() + (i - k.r0) * s * xr;
        if (row2_fn != nullptr && i + 1 < k.r1) {  // rows i and i + 1, in place
          for (int64_t cb = 0; cb < CB; ++cb)
            row2_fn(obuf.data() + cb * obs + (i - k.r0) * Wo * L, wsrc, HWo, xb + cb * cs, xr,
                    1, 0);
          ++i;
          continue;
        }
        // The blocks past Wo read on into the next row's weights; only where that would
        // pass the tensor's end is the row staged (widened, zero-padded to Wpad) first.
        const bool in_place = wsrc + (KK - 1) * HWo + Wpad <= wend;
        if (!in_place)
          for (int64_t uv = 0; uv < KK; ++uv)
            stage_row(wst.data() + uv * Wpad, wsrc + uv * HWo, Wo, 0, 1, Wpad);
        const int64_t pfd = prefetch && i + 2 < S.Ho ? 2 * Wo : 0;  // first channel block
        for (int64_t cb = 0; cb < CB; ++cb) {
          float* ob = flat_out ? obuf.data() + cb * obs + (i - k.r0) * Wo * L : obuf.data();
          if (in_place)
            row_fn(ob, wsrc, HWo, xb + cb * cs, xr, nblk, cb == 0 ? pfd : 0);
          else
            row_fn_staged(ob, wst.data(), Wpad, xb + cb * cs, xr, nblk, 0);
          if (!flat_out) transpose_out(out + (k.c0 + cb * L) * HWo + i * Wo, HWo, ob, Wo);
        }
      }
      if (flat_out)
        for (int64_t cb = 0; cb < CB; ++cb) {
          T* dst = out + (k.c0 + cb * L) * HWo + k.r0 * Wo;
          const float* ob = obuf.data() + cb * obs;
          if (stream_out && reinterpret_cast<uintptr_t>(dst) % kStreamAlign == 0)
            transpose_out<true>(dst, HWo, ob, (k.r1 - k.r0) * Wo);
          else
            transpose_out(dst, HWo, ob, (k.r1 - k.r0) * Wo);
        }
    }
    if (stream_out) Vec::fence();  // the non-temporal stores are weakly ordered
  });
}
