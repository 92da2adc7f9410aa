// The vectorised CPU kernels, written once for every instruction-set path.
//
// Deliberately no include guard: each path's involution_cpu_<path>.cpp includes this file
// inside its own namespace and compiler target region, after defining `Vec` there (the
// vector type, its width L and load/store/fma).
//
// Layout of the work (all three ops; the forward and grad_x of groups of a multiple of L
// channels at dilation 1, K 3 to 7 and stride 1 or 2 run across channels instead, in
// involution_cpu_chanvec.h and involution_cpu_chanvec_gx.h, and grad_weight of 7-pixel
// rows across images, in involution_cpu_gw_images.h):
// - SIMD runs across output pixels of one row (input pixels for grad_x): a vector is
//   L adjacent columns; a micro-kernel covers NV vectors (NV = 2, or 1 on rows of at
//   most L columns, so 7-pixel rows fill 7 of 8 lanes).
// - A task is (batch, group, block of rows), so the weights and the input halo of
//   the block are staged once, converted to float and zero-padded, into per-thread
//   buffers that stay in L2; boundaries, padding and dilation then cost nothing in
//   the inner loops. At stride s the staged input rows are split into s column
//   phases, so every vector load is contiguous.
// - forward and grad_x share one micro-kernel: a vector of per-pixel weights is
//   loaded once per tap and used by CB channels (register blocking over channels).
//   grad_weight keeps TB taps' accumulators in registers and loads each grad_out
//   vector once per channel for all of them (register blocking over taps).
// - Blocks of rows are sized so every thread gets several equal tasks.

// L values of A's type as floats: bfloat16 and float16 widened in registers (exact).
inline typename Vec::V load_float(const float* p) { return Vec::load(p); }
inline typename Vec::V load_float(const c10::BFloat16* p) { return Vec::load_bf16(p); }
inline typename Vec::V load_float(const c10::Half* p) { return Vec::load_half(p); }

// A result vector into the output: float as it is (NT: around the caches), bfloat16
// rounded as c10 rounds (the forward writes bfloat16 outputs straight from registers).
template <bool NT>
inline void put(float* p, typename Vec::V v) {
  if constexpr (NT)
    Vec::stream(p, v);
  else
    Vec::store(p, v);
}
template <bool NT>
inline void put(c10::BFloat16* p, typename Vec::V v) {
  Vec::store_bf16(p, v);
}

// The first n lanes of a result vector (all of them when n >= L; nothing past them is
// written): float as it is (NT: a whole vector around the caches), bfloat16 rounded as
// c10 rounds.
template <bool NT = false>
inline void put_n(float* p, typename Vec::V v, int64_t n) {
  if (n >= Vec::L)
    put<NT>(p, v);
  else
    Vec::store_n(p, v, n);
}
template <bool NT = false>
inline void put_n(c10::BFloat16* p, typename Vec::V v, int64_t n) {
  if (n >= Vec::L)
    Vec::store_bf16(p, v);
  else
    Vec::store_bf16_n(p, v, n);
}
// float16: through a buffer, each value rounded as write_row rounds it
template <bool NT = false>
inline void put_n(c10::Half* p, typename Vec::V v, int64_t n) {
  float part[Vec::L];
  Vec::store(part, v);
  for (int64_t k = 0; k < std::min<int64_t>(n, Vec::L); ++k) p[k] = static_cast<c10::Half>(part[k]);
}

// A may be float (staged) or the op's own type (the forward's weights read in place).
// With pfd != 0 each tap also prefetches A + aoff[t] + pfd (the weights a later row
// reads), one or two cache lines per tap, spread evenly over the FMAs.
template <int CB, int NV, bool NT, typename TA, typename TO>
inline void mk_shared(TO* __restrict out, int64_t os, const TA* A, const int64_t* aoff,
                      const float* B, int64_t bs, const int64_t* boff, int64_t nt,
                      int64_t pfd, int64_t ncols) {
  using V = typename Vec::V;
  constexpr int L = Vec::L;
  V acc[CB][NV];
#pragma GCC unroll 16
  for (int c = 0; c < CB; ++c)
#pragma GCC unroll 2
    for (int n = 0; n < NV; ++n) acc[c][n] = Vec::zero();
  for (int64_t t = 0; t < nt; ++t) {
    const TA* a = A + aoff[t];
    const float* b = B + boff[t];
    if (pfd != 0) {
      __builtin_prefetch(a + pfd, 0, 3);
      if (NV * L * sizeof(TA) > 32) __builtin_prefetch(a + pfd + NV * L - 1, 0, 3);
    }
    V av[NV];
#pragma GCC unroll 2
    for (int n = 0; n < NV; ++n) av[n] = load_float(a + n * L);
#pragma GCC unroll 16
    for (int c = 0; c < CB; ++c) {  // one running pointer: fewer address operations per FMA
#pragma GCC unroll 2
      for (int n = 0; n < NV; ++n) acc[c][n] = Vec::fma(av[n], Vec::load(b + n * L), acc[c][n]);
      b += bs;
    }
  }
#pragma GCC unroll 16
  for (int c = 0; c < CB; ++c)
#pragma GCC unroll 2
    for (int n = 0; n < NV; ++n) {
      if (ncols >= NV * L)
        put<NT>(out + c * os + n * L, acc[c][n]);
      else if (n * L < ncols)  // the first ncols columns only
        put_n<NT>(out + c * os + n * L, acc[c][n], ncols - n * L);
    }
}

// One row's taps from kernel rows [y0, y1): acc[c] += A[aoff[(y - shift) * K + v]] *
// B[y * rs + colv[v] + c * bs] (mk_pair's rows taken alone, below; its arguments).
template <int CB, typename TA>
__attribute__((always_inline)) inline void mk_row_taps(typename Vec::V* acc, const TA* A,
                                                       const int64_t* aoff, int64_t shift,
                                                       const float* B, int64_t bs, int64_t rs,
                                                       const int64_t* colv, int64_t K, int64_t y0,
                                                       int64_t y1, int64_t pfd) {
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t v = 0; v < K; ++v) {
      const TA* a = A + aoff[(y - shift) * K + v];
      if (pfd != 0) __builtin_prefetch(a + pfd, 0, 3);
      const typename Vec::V w = load_float(a);
      const float* b = B + y * rs + colv[v];
#pragma GCC unroll 16
      for (int c = 0; c < CB; ++c) {
        acc[c] = Vec::fma(w, Vec::load(b), acc[c]);
        b += bs;
      }
    }
}

// mk_pair's taps in the general form: acc0 (row i) and acc1 (row i + 1), its arguments.
template <int CB, typename TA>
__attribute__((always_inline)) inline void mk_pair_taps(typename Vec::V* acc0,
                                                        typename Vec::V* acc1, const TA* A,
                                                        const TA* A1, const int64_t* aoff,
                                                        const float* B, int64_t bs, int64_t rs,
                                                        const int64_t* colv, int64_t K, int64_t m,
                                                        int64_t pfd) {
  using V = typename Vec::V;
  mk_row_taps<CB>(acc0, A, aoff, 0, B, bs, rs, colv, K, 0, m, pfd);  // row i only
  for (int64_t y = m; y < K; ++y)  // both rows
    for (int64_t v = 0; v < K; ++v) {
      const TA* a0 = A + aoff[y * K + v];
      const TA* a1 = A1 + aoff[(y - m) * K + v];
      if (pfd != 0) {
        __builtin_prefetch(a0 + pfd, 0, 3);
        __builtin_prefetch(a1 + pfd, 0, 3);
      }
      const V w0 = load_float(a0), w1 = load_float(a1);
      const float* b = B + y * rs + colv[v];
#pragma GCC unroll 16
      for (int c = 0; c < CB; ++c) {
        V xv = Vec::load(b);
        Vec::keep(xv);  // one load for both FMAs (GCC would fold it into each)
        acc0[c] = Vec::fma(w0, xv, acc0[c]);
        acc1[c] = Vec::fma(w1, xv, acc1[c]);
        b += bs;
      }
    }
  mk_row_taps<CB>(acc1, A1, aoff, m, B, bs, rs, colv, K, K, K + m, pfd);  // row i + 1 only
}

// Two output rows at once (forward): rows i and i + 1 of CB channels, L pixels each (the
// first ncols of them stored).
// Row i + 1 reads the staged input m kernel rows below row i (m = stride / dilation), so
// an input vector at kernel row y serves tap (y, v) of row i and tap (y - m, v) of row
// i + 1: one load feeds two FMAs where mk_shared's feeds one. Kernel rows y < m serve
// row i only, y >= K row i + 1 only. A + arow are row i + 1's weights; B + y * rs +
// colv[v] is tap (y, v)'s input for channel 0 (channel c adds c * bs). With pfd != 0
// each tap also prefetches both rows' weights pfd ahead.
//
// KU != 0: the unit-step form for K = KU at m = 1, where the offsets are affine in the
// tap: aoff[y * K + v] = aoff[0] + y * ay + v * av and colv[v] = colv[0] + CS * v (CS = 1
// in the forward, -1 in grad_x; unit_offsets checks it). Every offset is then a constant
// or a pointer step. GCC's code for the general form reloads colv, aoff and, with 16
// registers, several of its pointers from the stack for every tap: 14 loads and about 8
// integer instructions for 12 FMAs where this one has 8 loads and 2 additions.
template <int CB, bool NT, int KU, int CS, typename TA, typename TO>
inline void mk_pair(TO* __restrict out, int64_t os, int64_t orow, const TA* A, int64_t arow,
                    const int64_t* aoff, const float* B, int64_t bs, int64_t rs,
                    const int64_t* colv, int64_t K, int64_t m, int64_t pfd, int64_t ncols) {
  using V = typename Vec::V;
  V acc0[CB], acc1[CB];
#pragma GCC unroll 16
  for (int c = 0; c < CB; ++c) acc0[c] = acc1[c] = Vec::zero();
  const TA* A1 = A + arow;
  if constexpr (KU != 0) {
    // av: from tap v to v + 1; skip: from the end of a kernel row to the next row's start
    const int64_t av = aoff[1] - aoff[0], skip = aoff[KU] - aoff[0] - KU * av;
    const float* b[CB];
#pragma GCC unroll 16
    for (int c = 0; c < CB; ++c) b[c] = B + colv[0] + c * bs;
    const TA* a0 = A + aoff[0];
    const TA* a1 = A1 + aoff[0];
#pragma GCC unroll 16
    for (int v = 0; v < KU; ++v, a0 += av) {  // kernel row 0: row i only
      if (pfd != 0) __builtin_prefetch(a0 + pfd, 0, 3);
      const V w0 = load_float(a0);
#pragma GCC unroll 16
      for (int c = 0; c < CB; ++c) acc0[c] = Vec::fma(w0, Vec::load(b[c] + CS * v), acc0[c]);
    }
    a0 += skip;
    for (int y = 1; y < KU; ++y, a0 += skip, a1 += skip) {  // both rows
#pragma GCC unroll 16
      for (int c = 0; c < CB; ++c) b[c] += rs;
#pragma GCC unroll 16
      for (int v = 0; v < KU; ++v, a0 += av, a1 += av) {
        if (pfd != 0) {
          __builtin_prefetch(a0 + pfd, 0, 3);
          __builtin_prefetch(a1 + pfd, 0, 3);
        }
        const V w0 = load_float(a0), w1 = load_float(a1);
#pragma GCC unroll 16
        for (int c = 0; c < CB; ++c) {
          V xv = Vec::load(b[c] + CS * v);
          Vec::keep(xv);
          acc0[c] = Vec::fma(w0, xv, acc0[c]);
          acc1[c] = Vec::fma(w1, xv, acc1[c]);
        }
      }
    }
#pragma GCC unroll 16
    for (int c = 0; c < CB; ++c) b[c] += rs;
#pragma GCC unroll 16
    for (int v = 0; v < KU; ++v, a1 += av) {  // kernel row K: row i + 1 only
      if (pfd != 0) __builtin_prefetch(a1 + pfd, 0, 3);
      const V w1 = load_float(a1);
#pragma GCC unroll 16
      for (int c = 0; c < CB; ++c) acc1[c] = Vec::fma(w1, Vec::load(b[c] + CS * v), acc1[c]);
    }
  } else {
    mk_pair_taps<CB>(acc0, acc1, A, A1, aoff, B, bs, rs, colv, K, m, pfd);
  }
#pragma GCC unroll 16
  for (int c = 0; c < CB; ++c) {
    put_n<NT>(out + c * os, acc0[c], ncols);
    put_n<NT>(out + c * os + orow, acc1[c], ncols);
  }
}

// out[t][k] = sum over c < nc of G[c * gs + k] * X[c * xs + boff[t] + k], computed for
// t < TB and k < NV * L, stored for t < ntap and k < ncols. UNIT: boff[t] = boff[0] + t
// (a kernel row's taps at stride 1 and dilation 1), so the loads take their offsets as
// constants; with 16 registers the offsets otherwise live on the stack and are reloaded
// for every channel.
template <int TB, int NV, bool UNIT, typename TO>
inline void mk_taps(TO* __restrict out, int64_t os, const float* G, int64_t gs, const float* X,
                    int64_t xs, const int64_t* boff, int64_t nc, int64_t ntap, int64_t ncols) {
  using V = typename Vec::V;
  constexpr int L = Vec::L;
  V acc[TB][NV];
  int64_t off[TB];
#pragma GCC unroll 16
  for (int t = 0; t < TB; ++t) {
    off[t] = UNIT ? t : boff[t];
#pragma GCC unroll 2
    for (int n = 0; n < NV; ++n) acc[t][n] = Vec::zero();
  }
  if constexpr (UNIT) X += boff[0];
  for (int64_t c = 0; c < nc; ++c) {
    const float* g = G + c * gs;
    const float* x = X + c * xs;
    V gv[NV];
#pragma GCC unroll 2
    for (int n = 0; n < NV; ++n) gv[n] = Vec::load(g + n * L);
#pragma GCC unroll 16
    for (int t = 0; t < TB; ++t)
#pragma GCC unroll 2
      for (int n = 0; n < NV; ++n)
        acc[t][n] = Vec::fma(gv[n], Vec::load(x + off[t] + n * L), acc[t][n]);
  }
#pragma GCC unroll 16
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 2
    for (int n = 0; n < NV; ++n)
      if (t < ntap && n * L < ncols) put_n(out + t * os + n * L, acc[t][n], ncols - n * L);
}

// Two output rows of grad_weight, one kernel row of taps each (TB = K): row i's taps t
// and row i + 1's taps one kernel row up read the same staged input, so each input
// vector loaded feeds both rows' FMAs. out0[t][k] = sum over c < nc of G0[c * gs + k] *
// X[c * xs + boff[t] + k], out1 the same with G1; L columns, the first ncols stored.
template <int TB, typename TO>
inline void mk_taps_pair(TO* __restrict out0, TO* __restrict out1, int64_t os, const float* G0,
                         const float* G1, int64_t gs, const float* X, int64_t xs,
                         const int64_t* boff, int64_t nc, int64_t ncols) {
  using V = typename Vec::V;
  V acc0[TB], acc1[TB];
  int64_t off[TB];
#pragma GCC unroll 16
  for (int t = 0; t < TB; ++t) {
    off[t] = boff[t];
    acc0[t] = acc1[t] = Vec::zero();
  }
  for (int64_t c = 0; c < nc; ++c) {
    const V g0 = Vec::load(G0 + c * gs), g1 = Vec::load(G1 + c * gs);
    const float* x = X + c * xs;
#pragma GCC unroll 16
    for (int t = 0; t < TB; ++t) {
      V xv = Vec::load(x + off[t]);
      Vec::keep(xv);  // one load for both rows' FMAs
      acc0[t] = Vec::fma(g0, xv, acc0[t]);
      acc1[t] = Vec::fma(g1, xv, acc1[t]);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < TB; ++t) {
    put_n(out0 + t * os, acc0[t], ncols);
    put_n(out1 + t * os, acc1[t], ncols);
  }
}

constexpr int64_t kStreamAlign = 32;  // bytes: Vec::stream's alignment on every path

// A call that moves at least this many bytes (inputs, weights and output) writes its
// float32 output around the caches in the forward across channels: by its end the first
// output lines it wrote have left the caches anyway, and a cached store first reads each
// line from memory. On the Zen 5 machine these kernels were tuned on (a 32 MiB L3, shared),
// one-thread reads of a buffer ran at 72 to 96 GB/s up to 12 MB and at 31 to 44 GB/s from
// 24 MB on: the caches kept about 12 MB of a call's data between calls. (sysconf's L3 size
// is no guide: there it reported 384 MiB.)
constexpr int64_t kStreamPastBytes = int64_t(12) << 20;

constexpr int kChanBlock = Vec::REGS >= 32 ? 8 : 4;  // channels per micro-kernel, NV = 2

// Channels c0 .. c0 + cb of out = A x B over nt taps; cb = kChanBlock (x2 when NV = 1) or 1.
// Channel c of the result goes to out + c * os.
// nt_store: non-temporal stores (out and os kStreamAlign-aligned), only for whole channel
// blocks of two vectors.
template <typename TA, typename TO>
inline void shared_block(int cb, int nv, TO* out, int64_t os, const TA* A, const int64_t* aoff,
                         const float* B, int64_t bs, const int64_t* boff, int64_t nt,
                         int64_t pfd = 0, bool nt_store = false, int64_t ncols = 2 * Vec::L) {
  if (nv == 2) {
    if (cb == kChanBlock) {
      if (nt_store)
        return mk_shared<kChanBlock, 2, true>(out, os, A, aoff, B, bs, boff, nt, pfd, ncols);
      return mk_shared<kChanBlock, 2, false>(out, os, A, aoff, B, bs, boff, nt, pfd, ncols);
    }
    return mk_shared<1, 2, false>(out, os, A, aoff, B, bs, boff, nt, pfd, ncols);
  }
  if (cb == 2 * kChanBlock)
    return mk_shared<2 * kChanBlock, 1, false>(out, os, A, aoff, B, bs, boff, nt, pfd, ncols);
  return mk_shared<1, 1, false>(out, os, A, aoff, B, bs, boff, nt, pfd, ncols);
}

// Channels per two-row micro-kernel (mk_pair): 2 x CB accumulators, two weight vectors and
// one input vector. With 16 registers that is CB = 6 (15 registers); each tap then loads 2
// weight and 6 input vectors for 12 FMAs where CB = 4 loads 2 and 4 for 8. A group's
// channels go 6 at a time, then 4, then one by one (16 = 6 + 6 + 4).
constexpr int kPairBlock = Vec::REGS >= 32 ? 8 : 6;

// The channel block of a two-row call with `left` channels of the group still to do.
inline int pair_chan_block(int64_t left) {
  if (left >= kPairBlock) return kPairBlock;
  if (Vec::REGS < 32 && left >= 4) return 4;
  return 1;
}

// The number of two-row calls that cover Cg channels (pair_chan_block's blocks).
inline int64_t pair_chan_blocks(int64_t Cg) {
  int64_t n = 0;
  for (int64_t cc = 0; cc < Cg; ++n) cc += pair_chan_block(Cg - cc);
  return n;
}

// mk_pair for CB channels, with non-temporal stores or not.
template <int CB, int KU, int CS, typename TA, typename TO>
inline void pair_nt(bool nt_store, TO* out, int64_t os, int64_t orow, const TA* A, int64_t arow,
                    const int64_t* aoff, const float* B, int64_t bs, int64_t rs,
                    const int64_t* colv, int64_t K, int64_t m, int64_t pfd, int64_t ncols) {
  if (nt_store)
    return mk_pair<CB, true, KU, CS>(out, os, orow, A, arow, aoff, B, bs, rs, colv, K, m, pfd,
                                     ncols);
  mk_pair<CB, false, KU, CS>(out, os, orow, A, arow, aoff, B, bs, rs, colv, K, m, pfd, ncols);
}

// Whether aoff and colv fit mk_pair's unit-step form for K = KU and column step CS.
template <int KU, int CS>
inline bool unit_offsets(const int64_t* aoff, const int64_t* colv, int64_t K, int64_t m) {
  if (K != KU || m != 1) return false;
  const int64_t av = aoff[1] - aoff[0], ay = aoff[K] - aoff[0];
  for (int64_t y = 0; y < K; ++y)
    for (int64_t v = 0; v < K; ++v)
      if (aoff[y * K + v] != aoff[0] + y * ay + v * av) return false;
  for (int64_t v = 0; v < K; ++v)
    if (colv[v] != colv[0] + CS * v) return false;
  return true;
}

// Channels c0 .. c0 + cb of two output rows: cb from pair_chan_block (mk_pair's arguments;
// KU, CS its unit-step form).
template <int KU, int CS, typename TA, typename TO>
inline void pair_block(int cb, TO* out, int64_t os, int64_t orow, const TA* A, int64_t arow,
                       const int64_t* aoff, const float* B, int64_t bs, int64_t rs,
                       const int64_t* colv, int64_t K, int64_t m, int64_t pfd, bool nt_store,
                       int64_t ncols) {
  if (cb == kPairBlock)
    return pair_nt<kPairBlock, KU, CS>(nt_store, out, os, orow, A, arow, aoff, B, bs, rs, colv,
                                       K, m, pfd, ncols);
  if constexpr (Vec::REGS < 32) {
    if (cb == 4)
      return pair_nt<4, KU, CS>(nt_store, out, os, orow, A, arow, aoff, B, bs, rs, colv, K, m,
                                pfd, ncols);
  }
  mk_pair<1, false, KU, CS>(out, os, orow, A, arow, aoff, B, bs, rs, colv, K, m, pfd, ncols);
}

// pair_block in mk_pair's unit-step form for K = 7 when `unit`, else the general form
// (whose columns may run either way: CS does not apply to it).
template <int CS, typename TA, typename TO>
inline void pair_block_of(bool unit, int cb, TO* out, int64_t os, int64_t orow, const TA* A,
                          int64_t arow, const int64_t* aoff, const float* B, int64_t bs,
                          int64_t rs, const int64_t* colv, int64_t K, int64_t m, int64_t pfd,
                          bool nt_store, int64_t ncols) {
  if (unit)
    return pair_block<7, CS>(cb, out, os, orow, A, arow, aoff, B, bs, rs, colv, K, m, pfd,
                             nt_store, ncols);
  pair_block<0, 1>(cb, out, os, orow, A, arow, aoff, B, bs, rs, colv, K, m, pfd, nt_store,
                   ncols);
}

// mk_taps for tb (7 or 9) taps and nv vectors.
template <bool UNIT, typename TO>
inline void taps_of(int tb, int nv, TO* out, int64_t os, const float* G, int64_t gs,
                    const float* X, int64_t xs, const int64_t* boff, int64_t nc, int64_t ntap,
                    int64_t ncols) {
  if (tb == 9) {
    if (nv == 2) return mk_taps<9, 2, UNIT>(out, os, G, gs, X, xs, boff, nc, ntap, ncols);
    return mk_taps<9, 1, UNIT>(out, os, G, gs, X, xs, boff, nc, ntap, ncols);
  }
  if (nv == 2) return mk_taps<7, 2, UNIT>(out, os, G, gs, X, xs, boff, nc, ntap, ncols);
  mk_taps<7, 1, UNIT>(out, os, G, gs, X, xs, boff, nc, ntap, ncols);
}

// mk_taps for tb taps at offsets boff, NV = nv; the unit-step form (16-register paths only)
// where boff[t] = boff[0] + t for every t < tb.
template <typename TO>
inline void taps_block(int tb, int nv, TO* out, int64_t os, const float* G, int64_t gs,
                       const float* X, int64_t xs, const int64_t* boff, int64_t nc, int64_t ntap,
                       int64_t ncols) {
  if constexpr (Vec::REGS < 32) {
    bool unit = true;
    for (int t = 1; t < tb && unit; ++t) unit = boff[t] == boff[0] + t;
    if (unit) return taps_of<true>(tb, nv, out, os, G, gs, X, xs, boff, nc, ntap, ncols);
  }
  taps_of<false>(tb, nv, out, os, G, gs, X, xs, boff, nc, ntap, ncols);
}

template <typename T>
inline float to_float(T v) {
  return static_cast<float>(v);
}

// Vector stores: the staged rows are short, a memset call per row costs more than the fill.
inline void zero_fill(float* dst, int64_t n) {
  int64_t q = 0;
  for (; q + Vec::L <= n; q += Vec::L) Vec::store(dst + q, Vec::zero());
  for (; q < n; ++q) dst[q] = 0.f;
}

// dst[q] = src[first + q * step] for indices inside [0, n), else 0; src null: all 0.
// pads_zero: the entries outside [0, n) already hold 0 and are left as they are.
template <typename T>
inline void stage_row(float* __restrict dst, const T* __restrict src, int64_t n, int64_t first,
                      int64_t step, int64_t count, bool pads_zero = false) {
  if (src == nullptr) return zero_fill(dst, count);
  // q with 0 <= first + q * step < n
  int64_t lo = first >= 0 ? 0 : (-first + step - 1) / step;
  int64_t hi = n - 1 - first < 0 ? 0 : (n - 1 - first) / step + 1;
  hi = std::min(hi, count);
  lo = std::min(lo, hi);
  if (!pads_zero) zero_fill(dst, lo);
  if (step == 1) {
    const T* s = src + first;
    int64_t q = lo;
    if constexpr (std::is_same_v<T, float>) {  // vector copies, the tail masked (7-pixel rows)
      for (; q + Vec::L <= hi; q += Vec::L) Vec::store(dst + q, Vec::load(s + q));
      if (q < hi) Vec::copy_n(dst + q, s + q, hi - q);
      q = hi;
    } else if constexpr (std::is_same_v<T, c10::BFloat16>) {  // widened, the tail masked
      for (; q + Vec::L <= hi; q += Vec::L) Vec::store(dst + q, load_float(s + q));
      if (q < hi) Vec::store_n(dst + q, Vec::load_bf16_n(s + q, hi - q), hi - q);
      q = hi;
    } else {  // float16: widened a vector at a time, the tail through a buffer
      for (; q + Vec::L <= hi; q += Vec::L) Vec::store(dst + q, load_float(s + q));
      if (q < hi) {
        T part[Vec::L] = {};
        for (int64_t k = 0; k < hi - q; ++k) part[k] = s[q + k];
        Vec::store_n(dst + q, load_float(static_cast<const T*>(part)), hi - q);
        q = hi;
      }
    }
    for (; q < hi; ++q) dst[q] = to_float(s[q]);
  } else {
    for (int64_t q = lo; q < hi; ++q) dst[q] = to_float(src[first + q * step]);
  }
  if (!pads_zero) zero_fill(dst + hi, count - hi);
}

template <typename T>
inline void write_row(T* __restrict dst, const float* __restrict src, int64_t n, int64_t step) {
  if (step == 1) {
    int64_t k = 0;
    if constexpr (std::is_same_v<T, float>) {
      for (; k + Vec::L <= n; k += Vec::L) Vec::store(dst + k, Vec::load(src + k));
      if (k < n) Vec::copy_n(dst + k, src + k, n - k);
      k = n;
    } else if constexpr (std::is_same_v<T, c10::BFloat16>) {
      for (; k + Vec::L <= n; k += Vec::L) Vec::store_bf16(dst + k, Vec::load(src + k));
      if (k < n) {  // src holds whole vectors (staged or micro-kernel rows)
        Vec::store_bf16_n(dst + k, Vec::load(src + k), n - k);
        k = n;
      }
    }
    for (; k < n; ++k) dst[k] = static_cast<T>(src[k]);
  } else {
    for (int64_t k = 0; k < n; ++k) dst[k * step] = static_cast<T>(src[k]);
  }
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Software prefetch of the next task's inputs, spread over the current task's rows:
// the weights are read from planes K*K apart, too many streams for the hardware
// prefetchers, and without this the staging copies wait on memory.
class Prefetcher {
 public:
  void clear() {
    blocks_.clear();
    lines_ = issued_ = 0;
    block_ = 0;
    offset_ = 0;
  }
  template <typename T>
  void add(const T* p, int64_t count) {
    if (count <= 0) return;
    const int64_t bytes = count * int64_t(sizeof(T));
    blocks_.push_back({reinterpret_cast<const char*>(p), bytes});
    lines_ += (bytes + 63) / 64;
  }
  // Issues cache lines up to the share (k + 1) / n of all lines added since clear().
  // Locality 2 (prefetcht1 on x86), not 3: the lines are read a task later, and with 3
  // the stride-2 forwards (layer2-first, layer3-first) ran 10-15% slower on one Zen 4
  // thread, with the samples piling up on the prefetch instructions.
  void step(int64_t k, int64_t n) {
    const int64_t upto = lines_ * (k + 1) / n;
    for (; issued_ < upto && block_ < blocks_.size(); ++issued_) {
      __builtin_prefetch(blocks_[block_].first + offset_, 0, 2);
      offset_ += 64;
      if (offset_ >= blocks_[block_].second) {
        ++block_;
        offset_ = 0;
      }
    }
  }

 private:
  std::vector<std::pair<const char*, int64_t>> blocks_;
  int64_t lines_ = 0, issued_ = 0, offset_ = 0;
  size_t block_ = 0;
};

// Rows per task: equal blocks, as few as keep a task's staged floats (row_floats per
// row) within about a third of a 1 MiB L2 and give every thread at least 8 tasks. Whole
// planes when they fit: the staging then reads long contiguous runs, which the
// hardware prefetchers follow, and re-stages fewer halo rows.
inline int64_t row_block(int64_t outer, int64_t rows, int64_t row_floats) {
  constexpr int64_t kBudget = 96 * 1024;  // floats (384 KiB)
  const int64_t want = 8 * std::max<int64_t>(1, at::get_num_threads());
  int64_t blocks = 1;
  while (blocks < rows &&
         (outer * blocks < want || ceil_div(rows, blocks) * row_floats > kBudget))
    ++blocks;
  return ceil_div(rows, blocks);
}

// Hands out tasks 0 .. n-1 one at a time. Each thread has a contiguous range of them
// and its own counter, on a cache line of its own, and takes from it first: claiming a
// task then writes a line no other thread touches. A thread whose range has run dry
// takes from the others' ranges, so a thread that the OS preempts (the machine is
// shared) leaves its remaining tasks to the others instead of making them wait at the
// end. Each thread claims its next task before running the current one, so the current
// one can prefetch the next one's inputs.
//
// One counter shared by every thread, as before, took 0.98 to 1.09 times as long on the
// stem to layer4-first and 1.08 and 1.35 on layer4 (the forward, float32, two sets;
// bfloat16 0.99 to 1.05, and 1.29 and 1.33 on layer4 and layer4-first) on a Zen 5 core,
// batch 8, two threads, 12 pairs in one process: with tasks of a microsecond or less,
// each claim waited for the counter's line to come from the other core. And a counter
// on the caller's stack shared a line with variables every task reads: in a profile of
// the layer4 forward, one such load had 10% of the task code's samples until the counter
// had a line of its own. docs/backends/cuda_ext.md, "Threads".
class TaskQueue {
 public:
  TaskQueue(int64_t n, int64_t parts) : n_(n), ranges_(static_cast<size_t>(parts)) {
    for (int64_t p = 0; p < parts; ++p) {
      ranges_[p].next.store(n * p / parts, std::memory_order_relaxed);
      ranges_[p].end = n * (p + 1) / parts;
    }
  }
  int64_t size() const { return n_; }
  // The next task for the thread in slot `slot`, or size() when none is left.
  int64_t take(int64_t slot) {
    const int64_t parts = static_cast<int64_t>(ranges_.size());
    for (int64_t k = 0; k < parts; ++k) {
      Range& r = ranges_[static_cast<size_t>((slot + k) % parts)];
      if (r.next.load(std::memory_order_relaxed) >= r.end) continue;
      const int64_t t = r.next.fetch_add(1, std::memory_order_relaxed);
      if (t < r.end) return t;
    }
    return n_;
  }

 private:
  struct alignas(128) Range {
    std::atomic<int64_t> next{0};
    int64_t end = 0;
  };
  const int64_t n_;
  std::vector<Range> ranges_;
};

class TaskClaim {
 public:
  TaskClaim(TaskQueue& q, int64_t slot) : q_(q), slot_(slot) {}
  // The task to run now and the one to run after it (-1 when none); false when done.
  bool next(int64_t& task, int64_t& following) {
    if (held_ < 0) held_ = q_.take(slot_);
    if (held_ >= q_.size()) return false;
    task = held_;
    held_ = q_.take(slot_);
    following = held_ < q_.size() ? held_ : -1;
    return true;
  }

 private:
  TaskQueue& q_;
  const int64_t slot_;
  int64_t held_ = -1;
};

// body(TaskClaim&) runs on up to get_num_threads() threads of torch's intra-op pool
// (at::parallel_for, OpenMP on Linux: the threads every other torch CPU op runs on);
// each call sets up its buffers, then loops while claim.next(...) gives it tasks. A
// thread that starts late finds fewer tasks, or none, left.
//
// An earlier version ran the tasks on the calling thread and helpers from torch's
// inter-op pool instead, to keep a late OpenMP thread from holding up the join. But
// after any torch op the OpenMP threads spin on the other core for a while (libgomp's
// default), and a helper woken then waited for that core. In the harness, beside
// `dwconv`, the forward took 0.32 to 1.12 of the helper version's time with these
// threads, median 0.72 (three alternated F runs each, batch 8, two threads); with one
// busy process on the machine, 0.41 to 0.65 (in one process, 8 pairs). What it gives
// up: with one to three busy processes the slowest tenth of the calls got slower (p90
// 4.0 ms against 0.9 on layer3 with one), as for any torch op that waits at an OpenMP
// join. docs/backends/cuda_ext.md, "Threads".
template <typename Body>
void run_tasks(int64_t n, const Body& body) {
  if (n <= 0) return;
  const int64_t threads = std::min<int64_t>(n, at::get_num_threads());
  if (threads <= 1 || at::in_parallel_region()) {
    TaskQueue q(n, 1);
    TaskClaim claim(q, 0);
    body(claim);
    return;
  }
  TaskQueue q(n, threads);
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      TaskClaim claim(q, i);
      body(claim);
    }
  });
}

// A row at stride 2, split into its two column phases straight from the source:
// even[q] = src[first + 2q], odd[q] = src[first + 2q + 1] for q < count (a multiple of L)
// where 0 <= first + 2q (+ 1) < n. The other entries must hold 0 already; a vector that
// reaches past the row reads only the row's elements (masked loads) and writes 0 there.
// (Copying the row first and splitting the copy made every split load wait on the
// copy's stores, which a load spanning two of them cannot take from the store buffer.)
template <typename T>
inline void stage_split2(float* __restrict even, float* __restrict odd, const T* __restrict src,
                         int64_t n, int64_t first, int64_t count) {
  for (int64_t q = 0; q < count; q += Vec::L) {
    const int64_t e = first + 2 * q;
    const int64_t lo = std::max<int64_t>(0, -e), hi = std::min<int64_t>(2 * Vec::L, n - e);
    if (lo < hi) Vec::split2_n(src + e, lo, hi, even + q, odd + q);
  }
}

// The staged input of one thread: dst (zeroed once when allocated), rowbuf (s * QW floats,
// zeroed once) and whether each staged row now holds an image row (held[r] != 0) or zeros.
// Which entries of a staged row hold data is the same for every image row, so the zeros
// of the padding columns are written once per call, not once per task, and a row outside
// the image is written only when it held an image row before. On small planes (7 to 28
// pixels a row, padding 3) most of a staged row is padding.
struct InputStage {
  std::vector<float> buf, rowbuf;
  std::vector<char> held;
  InputStage(int64_t floats, int64_t row_floats, int64_t rows)
      : buf(floats), rowbuf(row_floats), held(rows, 0) {}
};

// Stages the input rows [y0, y0 + rows) of channels [c0, c0 + Cg) into
// st.buf[cc * cs + (r * s + ph) * QW + q] = x[c][y0 + r][q * s + ph - pad] (0 outside).
// At stride 2 a row is split into its two column phases as it is read (stage_split2); at
// larger strides it is first copied into st.rowbuf (s * QW floats, zero-padded).
template <typename T>
void stage_input(InputStage& st, int64_t cs, int64_t QW, const T* x, const InvShape& S, int64_t c0,
                 int64_t y0, int64_t rows) {
  const int64_t s = S.stride, Cg = S.group_channels();
  float* dst = st.buf.data();
  float* rowbuf = st.rowbuf.data();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t y = y0 + r;
    const bool inside = y >= 0 && y < S.H;
    if (!inside) {
      if (st.held[r])
        for (int64_t cc = 0; cc < Cg; ++cc) zero_fill(dst + cc * cs + r * s * QW, s * QW);
      st.held[r] = 0;
      continue;
    }
    st.held[r] = 1;
    for (int64_t cc = 0; cc < Cg; ++cc) {
      const T* row = x + ((c0 + cc) * S.H + y) * S.W;
      float* out = dst + cc * cs + r * s * QW;
      if (s == 1) {
        stage_row(out, row, S.W, -S.pad, 1, QW, true);
        continue;
      }
      if (s == 2) {
        stage_split2(out, out + QW, row, S.W, -S.pad, QW);
        continue;
      }
      stage_row(rowbuf, row, S.W, -S.pad, 1, s * QW, true);
      for (int64_t ph = 0; ph < s; ++ph)
        for (int64_t q = 0; q < QW; ++q) out[ph * QW + q] = rowbuf[q * s + ph];
    }
  }
}

struct Tiling {
  int nv;         // vectors per micro-kernel
  int64_t chunk;  // columns per micro-kernel
  int64_t padded; // columns rounded up to chunks
};

inline Tiling tiling(int64_t cols) {
  const int nv = cols > Vec::L ? 2 : 1;
  const int64_t chunk = nv * Vec::L;
  return {nv, chunk, ceil_div(cols, chunk) * chunk};
}

// One vector per micro-kernel whatever the row's length.
inline Tiling tiling_one(int64_t cols) { return {1, Vec::L, ceil_div(cols, Vec::L) * Vec::L}; }

inline int chan_block(int nv, int64_t left) {
  const int full = nv == 2 ? kChanBlock : 2 * kChanBlock;
  return left >= full ? full : 1;
}

// The input rows [y0, y0 + rows) of channels [c0, c0 + Cg), clipped to the image.
template <typename T>
void prefetch_input(Prefetcher& pf, const T* x, const InvShape& S, int64_t c0, int64_t y0,
                    int64_t rows) {
  const int64_t lo = std::max<int64_t>(y0, 0), hi = std::min(S.H, y0 + rows);
  for (int64_t cc = 0; cc < S.group_channels(); ++cc)
    pf.add(x + ((c0 + cc) * S.H + lo) * S.W, (hi - lo) * S.W);
}

// A task: batch b, group g (bg = b * G + g), rows [r0, r1) of its row blocks.
struct Task {
  int64_t bg, g, b, r0, r1, c0;
};

inline Task task_of(int64_t t, int64_t blocks, int64_t R, int64_t rows, const InvShape& S) {
  const int64_t blk = t % blocks, bg = t / blocks, g = bg % S.G, b = bg / S.G;
  return {bg, g, b, blk * R, std::min(rows, blk * R + R), b * S.C + g * S.group_channels()};
}

// Output types the micro-kernels write whole vectors of directly (others go through a
// float buffer and write_row).
template <typename T>
constexpr bool kDirect = std::is_same_v<T, float> || std::is_same_v<T, c10::BFloat16>;

// Forward. The weights are read in place (no staging copy; bfloat16 and float16 are
// widened in registers): each tap's vector is loaded by the first channel block from
// memory and by the others from L1, and the first block prefetches the same tap two
// rows ahead. Only a row whose last chunk would read past the end of the weight
// tensor stages its K*K weight rows (zero-padded floats).
template <typename T>
void forward_t(const T* x, const T* w, T* out, const InvShape& S, bool next_weights) {
  const int64_t Cg = S.group_channels(), K = S.K, KK = K * K, s = S.stride, d = S.dilation;
  const int64_t Wo = S.Wo, HWo = S.Ho * S.Wo;
  const Tiling tl = tiling(Wo);
  const int64_t QW = ceil_div(tl.padded + (K - 1) * d / s + 1, Vec::L) * Vec::L;
  const int64_t R = row_block(S.B * S.G, S.Ho, Cg * s * s * QW + KK * Wo), blocks = ceil_div(S.Ho, R);
  const int64_t xs = ((R - 1) * s + (K - 1) * d + 1) * s * QW;  // channel stride of the stage
  const int64_t wend = S.w_numel();
  // A large float32 output is written around the caches (it is not read again here, and
  // a cached store would first read each line): rows of whole kStreamAlign multiples only.
  const bool stream_out = std::is_same_v<T, float> && S.out_numel() * 4 >= (int64_t(4) << 20) &&
                          (HWo * 4) % kStreamAlign == 0 && (Wo * 4) % kStreamAlign == 0;
  const auto x_rows = [&](const Task& k) { return (k.r1 - k.r0 - 1) * s + (K - 1) * d + 1; };
  // Rows in pairs (mk_pair) where row i + 1's taps are row i's m = s / d kernel rows down
  // and the two share kernel rows (m < K); one vector of pixels per call, so the chunks
  // are L wide (nch1 per row, padded1 columns) and channels go pair_chan_block at a time.
  // Not at K < 5: with 9 taps a call does too little work for its three kernel-row
  // loops, and the K = 3 stem layer measured slower with pairs than without.
  const bool pairs = K >= 5 && s % d == 0 && s / d < K;
  const int64_t m = s / d, rs = d * s * QW;
  const int64_t nch1 = ceil_div(Wo, Vec::L), padded1 = nch1 * Vec::L;
  const int64_t ncb1 = pair_chan_blocks(Cg);
  run_tasks(S.B * S.G * blocks, [&](TaskClaim& claim) {
    InputStage xst(Cg * xs, s * QW, (R - 1) * s + (K - 1) * d + 1);
    std::vector<float> wst(KK * tl.padded), tmp(2 * std::max(kChanBlock, kPairBlock) * tl.chunk);
    // Tap offsets: into the staged weight row (swoff) or the weight planes (dwoff), and
    // into the input stage for the block's first row (boff; row ii adds ii * s * s * QW).
    std::vector<int64_t> swoff(KK), dwoff(KK), boff(KK), colv(K);
    for (int64_t u = 0; u < K; ++u)
      for (int64_t v = 0; v < K; ++v) {
        swoff[u * K + v] = (u * K + v) * tl.padded;
        dwoff[u * K + v] = (u * K + v) * HWo;
        boff[u * K + v] = (u * d * s + (v * d) % s) * QW + (v * d) / s;
      }
    for (int64_t v = 0; v < K; ++v) colv[v] = ((v * d) % s) * QW + (v * d) / s;
    // Two rows of cb channels (pair_block's arguments), in the unit-step form where it fits
    // (K = 7 and m = 1: stride 1 and dilation 1, or both 2).
    const bool unit = unit_offsets<7, 1>(dwoff.data(), colv.data(), K, m);
    const auto pair = [&](int cb, auto* dst, int64_t os, int64_t orow, const T* a,
                          const float* xb, int64_t ahead, bool nt, int64_t ncols) {
      pair_block_of<1>(unit, cb, dst, os, orow, a, Wo, dwoff.data(), xb, xs, rs, colv.data(), K,
                       m, ahead, nt, ncols);
    };
    Prefetcher pf;
    int64_t t, following;
    while (claim.next(t, following)) {
      const Task k = task_of(t, blocks, R, S.Ho, S);
      const int64_t nr = k.r1 - k.r0;
      stage_input(xst, xs, QW, x, S, k.c0, k.r0 * s - S.pad, x_rows(k));
      pf.clear();
      if (following >= 0) {
        const Task n = task_of(following, blocks, R, S.Ho, S);
        prefetch_input(pf, x, S, n.c0, n.r0 * s - S.pad, x_rows(n));
        // All of its weights, not only the first rows: the taps' own prefetch, two rows
        // ahead in each of K*K planes, then finds them in L2, and on small planes (7 or 14
        // pixels a row) two rows ahead is hardly ahead at all. Not when they come to under
        // 8 KiB (bfloat16 on 7 x 7 planes: 49 runs of 98 bytes), where issuing them cost
        // more than it saved; and not where the caller says so (next_weights false: on a
        // Zen 5 core, whose taps' own prefetch found them in time, issuing them cost 5 to
        // 12% of the forward's time).
        if (next_weights && KK * (n.r1 - n.r0) * Wo * int64_t(sizeof(T)) >= 8192)
          for (int64_t uv = 0; uv < KK; ++uv)
            pf.add(w + (n.bg * KK + uv) * HWo + n.r0 * Wo, (n.r1 - n.r0) * Wo);
      }
      const int64_t nch = ceil_div(Wo, tl.chunk);
      const int64_t full = tl.nv == 2 ? kChanBlock : 2 * kChanBlock;
      const int64_t ncb = Cg / full + Cg % full;  // channel blocks per chunk
      // Pairs of rows first (whole pairs whose vectors stay inside the weight tensor),
      // then any row left over one at a time. pf.step counts micro-kernel calls of both.
      const int64_t npair = pairs ? nr / 2 : 0;
      const int64_t pair_calls = npair * nch1 * ncb1, calls = pair_calls + (nr - 2 * npair) * nch * ncb;
      int64_t ii = 0;
      for (; ii < 2 * npair; ii += 2) {
        const int64_t i = k.r0 + ii;
        if ((k.bg * KK + KK - 1) * HWo + (i + 1) * Wo + padded1 > wend) break;
        const T* wsrc = w + k.bg * KK * HWo + i * Wo;
        const float* xrow = xst.buf.data() + ii * s * s * QW;
        for (int64_t j0 = 0; j0 < Wo; j0 += Vec::L) {
          const int64_t n = std::min<int64_t>(Vec::L, Wo - j0);
          int64_t blk = 0;
          for (int64_t cc = 0; cc < Cg; ++blk) {
            pf.step(((ii / 2) * nch1 + j0 / Vec::L) * ncb1 + blk, calls);
            const int cb = pair_chan_block(Cg - cc);
            const int64_t ahead = cc == 0 ? 2 * Wo : 0;
            T* dst = out + (k.c0 + cc) * HWo + i * Wo + j0;
            const float* xb = xrow + cc * xs + j0;
            if constexpr (kDirect<T>) {  // straight into the output, the row tail masked
              const bool aligned = reinterpret_cast<uintptr_t>(dst) % kStreamAlign == 0;
              pair(cb, dst, HWo, Wo, wsrc + j0, xb, ahead, stream_out && aligned, n);
              cc += cb;
              continue;
            }
            pair(cb, tmp.data(), Vec::L, cb * Vec::L, wsrc + j0, xb, ahead, false, Vec::L);
            for (int q = 0; q < cb; ++q) {
              write_row(dst + q * HWo, tmp.data() + q * Vec::L, n, 1);
              write_row(dst + q * HWo + Wo, tmp.data() + (cb + q) * Vec::L, n, 1);
            }
            cc += cb;
          }
        }
      }
      for (; ii < nr; ++ii) {
        const int64_t i = k.r0 + ii;
        const T* wsrc = w + k.bg * KK * HWo + i * Wo;
        const float* xrow = xst.buf.data() + ii * s * s * QW;
        // One output row: weights wrow (float or T) at tap offsets aoff.
        const auto row = [&](const auto* wrow, const int64_t* aoff, int64_t pfd) {
          for (int64_t j0 = 0; j0 < Wo; j0 += tl.chunk) {
            const int64_t n = std::min(tl.chunk, Wo - j0);
            int64_t blk = 0;
            for (int64_t cc = 0; cc < Cg; ++blk) {
              pf.step(pair_calls + ((ii - 2 * npair) * nch + j0 / tl.chunk) * ncb + blk, calls);
              const int cb = chan_block(tl.nv, Cg - cc);
              const int64_t ahead = cc == 0 ? pfd : 0;
              T* dst = out + (k.c0 + cc) * HWo + i * Wo + j0;
              if constexpr (kDirect<T>) {  // straight into the output, the row tail masked
                const bool aligned = reinterpret_cast<uintptr_t>(dst) % kStreamAlign == 0;
                shared_block(cb, tl.nv, dst, HWo, wrow + j0, aoff, xrow + cc * xs + j0, xs,
                             boff.data(), KK, ahead, stream_out && aligned, n);
                cc += cb;
                continue;
              }
              shared_block(cb, tl.nv, tmp.data(), tl.chunk, wrow + j0, aoff, xrow + cc * xs + j0,
                           xs, boff.data(), KK, ahead);
              for (int q = 0; q < cb; ++q) write_row(dst + q * HWo, tmp.data() + q * tl.chunk, n, 1);
              cc += cb;
            }
          }
        };
        if ((k.bg * KK + KK - 1) * HWo + i * Wo + tl.padded <= wend) {
          row(wsrc, dwoff.data(), 2 * Wo);
        } else {  // the last chunk would read past the weight tensor: stage this row
          for (int64_t uv = 0; uv < KK; ++uv)
            stage_row(wst.data() + uv * tl.padded, wsrc + uv * HWo, Wo, 0, 1, tl.padded);
          row(static_cast<const float*>(wst.data()), swoff.data(), 0);
        }
      }
      pf.step(calls - 1, calls);  // the rest, if a pair was left to the one-row path
    }
    Vec::fence();  // the non-temporal stores are weakly ordered
  });
}

template <typename T>
void grad_weight_t(const T* go, const T* x, T* gw, const InvShape& S) {
  const int64_t Cg = S.group_channels(), K = S.K, KK = K * K, s = S.stride, d = S.dilation;
  const int64_t Wo = S.Wo, HWo = S.Ho * S.Wo;
  // With 16 registers, two vectors of pixels a call (7 or 9 taps x 2 accumulators and two
  // grad_out vectors) fill or overflow the register file; one vector a call measured
  // faster on rows of more than two vectors (0.75 to 0.89 of the time on the stem to
  // layer2 at batch 8, two threads) and no faster on 14-pixel rows, which keep two.
  const Tiling tl = Vec::REGS < 32 && Wo > 2 * Vec::L ? tiling_one(Wo) : tiling(Wo);
  const int64_t QW = ceil_div(tl.padded + (K - 1) * d / s + 1, Vec::L) * Vec::L;
  const int64_t R = row_block(S.B * S.G, S.Ho, Cg * (s * s * QW + tl.padded));
  const int64_t blocks = ceil_div(S.Ho, R);
  const int64_t xs = ((R - 1) * s + (K - 1) * d + 1) * s * QW;
  const int64_t gs = R * tl.padded;
  const auto x_rows = [&](const Task& k) { return (k.r1 - k.r0 - 1) * s + (K - 1) * d + 1; };
  // Taps per micro-kernel: 7 or 9, whichever pads K*K less (dummy taps repeat tap 0).
  const int tb = ceil_div(KK, 9) * 9 < ceil_div(KK, 7) * 7 ? 9 : 7;
  const int64_t ntaps = ceil_div(KK, tb) * tb;
  // Two rows a call where a tap block is one kernel row (K = 7 or 9) and row i + 1's taps
  // are row i's m = s / d kernel rows up, as in the forward; results straight into the
  // output (float32, bfloat16), 2 x K accumulators (32 registers).
  const int64_t m = s / d;
  const bool pairs = kDirect<T> && tb == K && s % d == 0 && m < K && Vec::REGS >= 32;
  run_tasks(S.B * S.G * blocks, [&](TaskClaim& claim) {
    InputStage xst(Cg * xs, s * QW, (R - 1) * s + (K - 1) * d + 1);
    std::vector<float> gst(Cg * gs), tmp(9 * tl.chunk);  // gst's row tails: zeroed once
    std::vector<int64_t> boff(ntaps, 0);  // as in the forward; row ii adds ii * s * s * QW
    for (int64_t u = 0; u < K; ++u)
      for (int64_t v = 0; v < K; ++v) boff[u * K + v] = (u * d * s + (v * d) % s) * QW + (v * d) / s;
    Prefetcher pf;
    int64_t t, following;
    while (claim.next(t, following)) {
      const Task k = task_of(t, blocks, R, S.Ho, S);
      const int64_t nr = k.r1 - k.r0;
      stage_input(xst, xs, QW, x, S, k.c0, k.r0 * s - S.pad, x_rows(k));
      for (int64_t cc = 0; cc < Cg; ++cc)
        for (int64_t ii = 0; ii < nr; ++ii)
          stage_row(gst.data() + cc * gs + ii * tl.padded, go + (k.c0 + cc) * HWo + (k.r0 + ii) * Wo,
                    Wo, 0, 1, tl.padded, true);
      pf.clear();
      if (following >= 0) {
        const Task n = task_of(following, blocks, R, S.Ho, S);
        for (int64_t cc = 0; cc < Cg; ++cc) pf.add(go + (n.c0 + cc) * HWo + n.r0 * Wo, (n.r1 - n.r0) * Wo);
        prefetch_input(pf, x, S, n.c0, n.r0 * s - S.pad, x_rows(n));
      }
      const int64_t nch = ceil_div(Wo, tl.chunk);
      int64_t ii = 0;
      // Rows in pairs (one kernel row of taps a call, m = s / d kernel rows apart), then a
      // row left over alone.
      if constexpr (kDirect<T>) {
        for (; pairs && ii + 1 < nr; ii += 2) {
          pf.step(ii, nr);
          pf.step(ii + 1, nr);
          const float* xrow = xst.buf.data() + ii * s * s * QW;
          const float* g0 = gst.data() + ii * tl.padded;
          T* row0 = gw + k.bg * KK * HWo + (k.r0 + ii) * Wo;
          for (int64_t j0 = 0; j0 < Wo; j0 += Vec::L) {
            const int64_t n = std::min<int64_t>(Vec::L, Wo - j0);
            for (int64_t y = 0; y < K + m; ++y) {  // kernel row y of row ii: row ii + 1's y - m
              T* d0 = y < K ? row0 + y * K * HWo + j0 : nullptr;
              T* d1 = y >= m ? row0 + (y - m) * K * HWo + Wo + j0 : nullptr;
              const float* xb = xrow + j0;
              if (y < m)
                taps_block(tb, 1, d0, HWo, g0 + j0, gs, xb, xs, boff.data() + y * K, Cg, K, n);
              else if (y >= K)
                taps_block(tb, 1, d1, HWo, g0 + tl.padded + j0, gs, xb + s * s * QW, xs,
                           boff.data() + (y - m) * K, Cg, K, n);
              else if (tb == 7)
                mk_taps_pair<7>(d0, d1, HWo, g0 + j0, g0 + tl.padded + j0, gs, xb, xs,
                                boff.data() + y * K, Cg, n);
              else
                mk_taps_pair<9>(d0, d1, HWo, g0 + j0, g0 + tl.padded + j0, gs, xb, xs,
                                boff.data() + y * K, Cg, n);
            }
          }
        }
      }
      for (; ii < nr; ++ii) {
        const float* xrow = xst.buf.data() + ii * s * s * QW;
        for (int64_t j0 = 0; j0 < Wo; j0 += tl.chunk) {
          pf.step(ii * nch + j0 / tl.chunk, nr * nch);
          const int64_t n = std::min(tl.chunk, Wo - j0);
          for (int64_t t0 = 0; t0 < KK; t0 += tb) {
            T* dst = gw + (k.bg * KK + t0) * HWo + (k.r0 + ii) * Wo + j0;
            const int64_t ntap = std::min<int64_t>(tb, KK - t0);
            if constexpr (kDirect<T>) {  // straight into the output, row tails masked
              taps_block(tb, tl.nv, dst, HWo, gst.data() + ii * tl.padded + j0, gs, xrow + j0, xs,
                         boff.data() + t0, Cg, ntap, n);
              continue;
            }
            taps_block(tb, tl.nv, tmp.data(), tl.chunk, gst.data() + ii * tl.padded + j0, gs,
                       xrow + j0, xs, boff.data() + t0, Cg, tb, tl.chunk);
            for (int64_t q = 0; q < ntap; ++q) write_row(dst + q * HWo, tmp.data() + q * tl.chunk, n, 1);
          }
        }
      }
    }
  });
}

// grad_x as a gather: input row y, column phase z0 (columns z = z0 + s * m) receives
// from the taps (u, v) whose output pixel (n, j) = ((y + pad - u*d) / s, (z + pad - v*d) / s)
// is whole; j = m + bv with bv = (z0 + pad - v*d) / s, so each tap is a shifted,
// contiguous read of staged weights (per input row) and staged grad_out (per channel).
template <typename T>
void grad_input_t(const T* go, const T* w, T* gx, const InvShape& S) {
  const int64_t Cg = S.group_channels(), K = S.K, KK = K * K, s = S.stride, d = S.dilation;
  const int64_t P = S.pad, Wo = S.Wo, HWo = S.Ho * S.Wo, HW = S.H * S.W, span = (K - 1) * d;
  const Tiling tl = tiling(ceil_div(S.W, s));
  const int64_t b_lo = floor_div(P - span, s), b_hi = floor_div(s - 1 + P, s);
  const int64_t JW = tl.padded + b_hi - b_lo;
  const int64_t R = row_block(S.B * S.G, S.H, Cg * JW / s + KK * JW), blocks = ceil_div(S.H, R);
  const int64_t gs = ((R - 1 + span) / s + 2) * JW;
  // Pairs of input rows as in the forward (K >= 5; at stride 1 and dilation 1 only).
  const bool two_rows = s == 1 && d == 1 && K >= 5;
  const bool merge = s == 2;
  // grad_out rows [n0, n1] that input rows [y0, y1) receive from
  const auto out_rows = [&](const Task& k) {
    const int64_t first = k.r0 + P - span;
    return std::pair<int64_t, int64_t>(first > 0 ? ceil_div(first, s) : 0,
                                       std::min(S.Ho - 1, floor_div(k.r1 - 1 + P, s)));
  };
  run_tasks(S.B * S.G * blocks, [&](TaskClaim& claim) {
    // Zeroed once: every staged row of gst and wst holds data in the same columns in every
    // task (those of the grid), so their zeros are written here, not once per row. wst
    // holds the task's weight rows n0 .. n1 of each of the K*K planes (NR rows a plane),
    // staged once per task: input row y's tap (u, v) reads row (y + P - u*d) / s of plane
    // (u, v), so staging them per input row copied every weight row K / s times.
    const int64_t NR = gs / JW;
    std::vector<float> gst(Cg * gs), wst(KK * NR * JW);
    std::vector<float> tmp(2 * std::max(kChanBlock, kPairBlock) * tl.chunk);
    // At stride 2 an input row's two column phases go to ybuf (per channel: the even
    // columns, then the odd ones) and are interleaved from there into the output with
    // vector stores; written straight from tmp they were element by element, 2 apart.
    std::vector<float> ybuf(merge ? Cg * 2 * tl.padded : 0);
    alignas(64) float mbuf[2 * Vec::L];
    std::vector<int64_t> aoff(KK), boff(KK), rowoff(K), rtap(KK), rcol(K);
    // The two-row path (stride 1, dilation 1): input row y's tap (K - 1 - u, v) reads its
    // weights at rtap[u * K + v] from wst + (y + P - n0) * JW (row y + P - (K - 1 - u) of
    // plane (K - 1 - u, v), column span - v), and row y + 1's the same one row further on;
    // its staged grad_out column is rcol[v] (also span - v).
    for (int64_t v = 0; v < K; ++v) rcol[v] = span - v;
    for (int64_t u = 0; u < K; ++u)
      for (int64_t v = 0; v < K; ++v)
        rtap[u * K + v] = ((K - 1 - u) * K + v) * NR * JW - (K - 1 - u) * JW + span - v;
    // The two-row calls in mk_pair's unit-step form where it fits (K = 7; the columns
    // run backwards).
    const bool unit = two_rows && unit_offsets<7, -1>(rtap.data(), rcol.data(), K, 1);
    // Per column phase z0: the taps v it receives from and their staged column.
    std::vector<std::vector<std::pair<int64_t, int64_t>>> vcols(s);
    for (int64_t z0 = 0; z0 < s; ++z0)
      for (int64_t v = 0; v < K; ++v) {
        const int64_t num = z0 + P - v * d;
        if (num % s == 0) vcols[z0].push_back({v, num / s - b_lo});
      }
    Prefetcher pf;
    int64_t t, following;
    while (claim.next(t, following)) {
      const Task k = task_of(t, blocks, R, S.H, S);
      const auto [n0, n1] = out_rows(k);
      for (int64_t cc = 0; cc < Cg; ++cc)
        for (int64_t n = n0; n <= n1; ++n)
          stage_row(gst.data() + cc * gs + (n - n0) * JW, go + (k.c0 + cc) * HWo + n * Wo, Wo, b_lo, 1,
                    JW, true);
      // Plane (u, v)'s rows that the task's input rows [r0, r1) read: n * s = y + P - u * d.
      for (int64_t u = 0; u < K; ++u) {
        const int64_t lo = std::max(n0, ceil_div(std::max<int64_t>(k.r0 + P - u * d, 0), s));
        const int64_t hi = std::min(n1, floor_div(k.r1 - 1 + P - u * d, s));
        for (int64_t v = 0; v < K; ++v)
          for (int64_t n = lo; n <= hi; ++n)
            stage_row(wst.data() + ((u * K + v) * NR + n - n0) * JW,
                      w + (k.bg * KK + u * K + v) * HWo + n * Wo, Wo, b_lo, 1, JW, true);
      }
      pf.clear();
      if (following >= 0) {
        const Task nx = task_of(following, blocks, R, S.H, S);
        const auto [m0, m1] = out_rows(nx);
        if (m1 >= m0) {
          for (int64_t uv = 0; uv < KK; ++uv) pf.add(w + (nx.bg * KK + uv) * HWo + m0 * Wo, (m1 - m0 + 1) * Wo);
          for (int64_t cc = 0; cc < Cg; ++cc) pf.add(go + (nx.c0 + cc) * HWo + m0 * Wo, (m1 - m0 + 1) * Wo);
        }
      }
      // Input rows y and y + 1 whose taps all fall on the grid go two at a time through the
      // forward's two-row micro-kernel: row y + 1's tap (u + 1, v) reads the grad_out row
      // of row y's tap (u, v), so with the kernel rows taken in reverse (tap u at row
      // K - 1 - u of rtap) the two rows share each grad_out vector they load.
      // rowoff[u]: the staged row (of grad_out, and of each weight plane) that input row
      // y's kernel row u reads, or -1 where it falls off the grid.
      const auto row_taps = [&](int64_t y) {
        for (int64_t u = 0; u < K; ++u) {
          const int64_t iy = y + P - u * d;
          rowoff[u] = iy < 0 || iy % s != 0 || iy / s >= S.Ho ? -1 : iy / s - n0;
        }
      };
      const auto whole = [&](int64_t y) { return y + P - span >= 0 && y + P < S.Ho; };
      for (int64_t y = k.r0; y < k.r1;) {
        const int64_t yy = y - k.r0;
        pf.step(yy, k.r1 - k.r0);
        row_taps(y);
        if (two_rows && y + 1 < k.r1 && whole(y) && whole(y + 1)) {
          pf.step(yy + 1, k.r1 - k.r0);
          const float* A = wst.data() + (y + P - n0) * JW;
          const float* B = gst.data() + (y + P - span - n0) * JW;
          for (int64_t m0 = 0; m0 < S.W; m0 += Vec::L) {
            const int64_t n = std::min<int64_t>(Vec::L, S.W - m0);
            for (int64_t cc = 0; cc < Cg;) {
              const int cb = pair_chan_block(Cg - cc);
              T* dst = gx + (k.c0 + cc) * HW + y * S.W + m0;
              const float* b = B + cc * gs + m0;
              if constexpr (kDirect<T>) {  // straight into the output, the row tail masked
                pair_block_of<-1>(unit, cb, dst, HW, S.W, A + m0, JW, rtap.data(), b, gs, JW,
                                  rcol.data(), K, 1, 0, false, n);
                cc += cb;
                continue;
              }
              pair_block_of<-1>(unit, cb, tmp.data(), Vec::L, cb * Vec::L, A + m0, JW,
                                rtap.data(), b, gs, JW, rcol.data(), K, 1, 0, false, Vec::L);
              for (int q = 0; q < cb; ++q) {
                write_row(dst + q * HW, tmp.data() + q * Vec::L, n, 1);
                write_row(dst + q * HW + S.W, tmp.data() + (cb + q) * Vec::L, n, 1);
              }
              cc += cb;
            }
          }
          y += 2;
          continue;
        }
        for (int64_t z0 = 0; z0 < std::min(s, S.W); ++z0) {
          int64_t nt = 0;
          for (int64_t u = 0; u < K; ++u) {
            if (rowoff[u] < 0) continue;
            for (const auto& [v, col] : vcols[z0]) {
              aoff[nt] = ((u * K + v) * NR + rowoff[u]) * JW + col;
              boff[nt] = rowoff[u] * JW + col;
              ++nt;
            }
          }
          const int64_t M = ceil_div(S.W - z0, s);
          for (int64_t m0 = 0; m0 < M; m0 += tl.chunk) {
            const int64_t n = std::min(tl.chunk, M - m0);
            for (int64_t cc = 0; cc < Cg;) {
              const int cb = chan_block(tl.nv, Cg - cc);
              if (merge) {  // into the row's phase buffer, whole chunks
                shared_block(cb, tl.nv, ybuf.data() + (cc * 2 + z0) * tl.padded + m0, 2 * tl.padded,
                             wst.data() + m0, aoff.data(), gst.data() + cc * gs + m0, gs,
                             boff.data(), nt);
                cc += cb;
                continue;
              }
              if constexpr (kDirect<T>) {
                if (s == 1) {  // straight into the output, the row tail masked
                  shared_block(cb, tl.nv, gx + (k.c0 + cc) * HW + y * S.W + m0, HW, wst.data() + m0,
                               aoff.data(), gst.data() + cc * gs + m0, gs, boff.data(), nt, 0, false,
                               n);
                  cc += cb;
                  continue;
                }
              }
              shared_block(cb, tl.nv, tmp.data(), tl.chunk, wst.data() + m0, aoff.data(),
                           gst.data() + cc * gs + m0, gs, boff.data(), nt);
              for (int q = 0; q < cb; ++q)
                write_row(gx + (k.c0 + cc + q) * HW + y * S.W + z0 + s * m0,
                          tmp.data() + q * tl.chunk, n, s);
              cc += cb;
            }
          }
        }
        if (merge)  // the two column phases interleaved, a vector pair at a time
          for (int64_t cc = 0; cc < Cg; ++cc) {
            const float* even = ybuf.data() + cc * 2 * tl.padded;
            T* dst = gx + (k.c0 + cc) * HW + y * S.W;
            for (int64_t q = 0; 2 * q < S.W; q += Vec::L) {
              typename Vec::V lo, hi;
              Vec::merge2(even + q, even + tl.padded + q, lo, hi);
              const int64_t n = S.W - 2 * q;
              if constexpr (kDirect<T>) {
                put_n(dst + 2 * q, lo, n);
                if (n > Vec::L) put_n(dst + 2 * q + Vec::L, hi, n - Vec::L);
              } else {
                Vec::store(mbuf, lo);
                Vec::store(mbuf + Vec::L, hi);
                write_row(dst + 2 * q, mbuf, std::min<int64_t>(2 * Vec::L, n), 1);
              }
            }
          }
        ++y;
      }
    }
  });
}

#include "involution_cpu_chanvec.h"
#include "involution_cpu_chanvec_gx.h"
#include "involution_cpu_gw_images.h"

// Float32, bfloat16 and float16; float64 has its own exact kernels (involution_cpu.cpp).
template <typename F>
void dispatch_float_types(const at::Tensor& t, F&& f) {
  switch (t.scalar_type()) {
    case at::kFloat: return f(float());
    case at::kBFloat16: return f(c10::BFloat16());
    case at::kHalf: return f(c10::Half());
    default: TORCH_CHECK(false, "involution: no vectorised CPU kernel for ", t.scalar_type());
  }
}

void forward(const at::Tensor& x, const at::Tensor& w, at::Tensor& out, const InvShape& s,
             bool next_weights) {
  dispatch_float_types(x, [&](auto tag) {
    using T = decltype(tag);
    if (cv_fits(s))
      return forward_cv_t<T>(x.const_data_ptr<T>(), w.const_data_ptr<T>(),
                             out.mutable_data_ptr<T>(), s);
    forward_t<T>(x.const_data_ptr<T>(), w.const_data_ptr<T>(), out.mutable_data_ptr<T>(), s,
                 next_weights);
  });
}

bool across_channels(const InvShape& s) { return cv_fits(s); }

bool across_images(const InvShape& s) { return gwi_fits(s); }

void grad_input(const at::Tensor& go, const at::Tensor& w, at::Tensor& gx, const InvShape& s) {
  dispatch_float_types(go, [&](auto tag) {
    using T = decltype(tag);
    if (cv_fits(s))
      return grad_input_cv_t<T>(go.const_data_ptr<T>(), w.const_data_ptr<T>(),
                                gx.mutable_data_ptr<T>(), s);
    grad_input_t<T>(go.const_data_ptr<T>(), w.const_data_ptr<T>(), gx.mutable_data_ptr<T>(), s);
  });
}

void grad_weight(const at::Tensor& go, const at::Tensor& x, at::Tensor& gw, const InvShape& s) {
  dispatch_float_types(go, [&](auto tag) {
    using T = decltype(tag);
    if (gwi_fits(s))
      return grad_weight_images_t<T>(go.const_data_ptr<T>(), x.const_data_ptr<T>(),
                                     gw.mutable_data_ptr<T>(), s);
    grad_weight_t<T>(go.const_data_ptr<T>(), x.const_data_ptr<T>(), gw.mutable_data_ptr<T>(), s);
  });
}
