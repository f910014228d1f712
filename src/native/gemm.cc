#include "gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>

#include "half.h"
#include "scratch.h"
#include "thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#define RPV_X86 1
#include <immintrin.h>
#endif

namespace rpv {

namespace {

constexpr int64_t kMR = 6;     // microkernel rows (6 x 2 ymm accumulators = 12 registers)
constexpr int64_t kNR = 16;    // microkernel columns (two 8-float vectors)
constexpr int64_t kKC = 256;   // depth of a packed block: an A micro-panel (6 KB) and a B
                               // micro-panel (16 KB) stay in L1 across the microkernel loop
constexpr int64_t kMC = 96;    // rows of a packed A block (96 x 256 x 4 B = 96 KB, L2)
constexpr int64_t kNC = 1024;  // columns of a packed B block (256 x 1024 x 4 B = 1 MB)

using Microkernel = void (*)(int64_t kc, const float* ap, const float* bp, float* c,
                             int64_t ldc, bool accumulate);

// ---------------------------------------------------------------------------------------------
// Microkernels: C[0:MR, 0:NR] (+)= Ap (kc x MR, k-major) * Bp (kc x NR, k-major).

void kernelScalar(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                  bool accumulate) {
  // Two passes of 6 x 8: 48 accumulators fit the 16 SSE registers of baseline x86-64 (and NEON's
  // 32) once the compiler vectorises the j loops; 6 x 16 at once would spill.
  constexpr int64_t kHalf = kNR / 2;
  for (int64_t jh = 0; jh < kNR; jh += kHalf) {
    float acc[kMR][kHalf] = {};
    const float* a = ap;
    const float* b = bp + jh;
    for (int64_t p = 0; p < kc; ++p) {
      for (int64_t i = 0; i < kMR; ++i) {
        const float av = a[i];
        for (int64_t j = 0; j < kHalf; ++j) acc[i][j] += av * b[j];
      }
      a += kMR;
      b += kNR;
    }
    for (int64_t i = 0; i < kMR; ++i) {
      float* row = c + i * ldc + jh;
      if (accumulate) {
        for (int64_t j = 0; j < kHalf; ++j) row[j] += acc[i][j];
      } else {
        for (int64_t j = 0; j < kHalf; ++j) row[j] = acc[i][j];
      }
    }
  }
}

#ifdef RPV_X86
__attribute__((target("avx2,fma"))) void kernelAvx2Fma(int64_t kc, const float* ap,
                                                        const float* bp, float* c, int64_t ldc,
                                                        bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(bp);
    const __m256 b1 = _mm256_load_ps(bp + 8);
    __m256 a;
    a = _mm256_broadcast_ss(ap + 0);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(ap + 1);
    c10 = _mm256_fmadd_ps(a, b0, c10);
    c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(ap + 2);
    c20 = _mm256_fmadd_ps(a, b0, c20);
    c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(ap + 3);
    c30 = _mm256_fmadd_ps(a, b0, c30);
    c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(ap + 4);
    c40 = _mm256_fmadd_ps(a, b0, c40);
    c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(ap + 5);
    c50 = _mm256_fmadd_ps(a, b0, c50);
    c51 = _mm256_fmadd_ps(a, b1, c51);
    ap += kMR;
    bp += kNR;
  }
#define RPV_STORE_ROW(i, lo, hi)                                              \
  do {                                                                        \
    float* row = c + (i) * ldc;                                               \
    if (accumulate) {                                                         \
      _mm256_storeu_ps(row, _mm256_add_ps(_mm256_loadu_ps(row), lo));         \
      _mm256_storeu_ps(row + 8, _mm256_add_ps(_mm256_loadu_ps(row + 8), hi)); \
    } else {                                                                  \
      _mm256_storeu_ps(row, lo);                                              \
      _mm256_storeu_ps(row + 8, hi);                                          \
    }                                                                         \
  } while (0)
  RPV_STORE_ROW(0, c00, c01);
  RPV_STORE_ROW(1, c10, c11);
  RPV_STORE_ROW(2, c20, c21);
  RPV_STORE_ROW(3, c30, c31);
  RPV_STORE_ROW(4, c40, c41);
  RPV_STORE_ROW(5, c50, c51);
#undef RPV_STORE_ROW
}
#endif

// ---------------------------------------------------------------------------------------------
// Packing. op(A)[i, p] and op(B)[p, j] are read through strides, so transposes cost nothing.

// Packs op(A)[i0:i0+mc, p0:p0+kc] into ceil(mc/MR) micro-panels of kc x MR (zero padded).
void packA(const GemmArgs& g, const float* a, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
           float* out) {
  // Element (i, p) of op(A) lives at a[i * rs + p * cs].
  const int64_t rs = g.transA ? 1 : g.lda;
  const int64_t cs = g.transA ? g.lda : 1;
  for (int64_t ir = 0; ir < mc; ir += kMR) {
    const int64_t mr = std::min(kMR, mc - ir);
    const float* src = a + (i0 + ir) * rs + p0 * cs;
    if (mr == kMR && cs == 1) {
      const float* r0 = src;
      const float* r1 = src + rs;
      const float* r2 = src + 2 * rs;
      const float* r3 = src + 3 * rs;
      const float* r4 = src + 4 * rs;
      const float* r5 = src + 5 * rs;
      for (int64_t p = 0; p < kc; ++p) {
        out[0] = r0[p];
        out[1] = r1[p];
        out[2] = r2[p];
        out[3] = r3[p];
        out[4] = r4[p];
        out[5] = r5[p];
        out += kMR;
      }
    } else if (mr == kMR && rs == 1) {
      for (int64_t p = 0; p < kc; ++p) {
        const float* col = src + p * cs;
        for (int64_t i = 0; i < kMR; ++i) out[i] = col[i];
        out += kMR;
      }
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        int64_t i = 0;
        for (; i < mr; ++i) out[i] = src[i * rs + p * cs];
        for (; i < kMR; ++i) out[i] = 0.0f;
        out += kMR;
      }
    }
  }
}

// Packs op(B)[p0:p0+kc, j0:j0+nc] into ceil(nc/NR) micro-panels of kc x NR (zero padded),
// converting B's elements to float32 (E is F32Elem, F16Elem or BF16Elem).
template <typename E>
void packBTyped(const GemmArgs& g, const typename E::Storage* b, int64_t p0, int64_t kc, int64_t j0,
                int64_t nc, float* out) {
  // Element (p, j) of op(B) lives at b[p * rs + j * cs].
  const int64_t rs = g.transB ? 1 : g.ldb;
  const int64_t cs = g.transB ? g.ldb : 1;
  for (int64_t jr = 0; jr < nc; jr += kNR) {
    const int64_t nr = std::min(kNR, nc - jr);
    const typename E::Storage* src = b + p0 * rs + (j0 + jr) * cs;
    if (nr == kNR && cs == 1) {
      for (int64_t p = 0; p < kc; ++p) {
        const typename E::Storage* row = src + p * rs;
        float* o = out + p * kNR;
        for (int64_t j = 0; j < kNR; ++j) o[j] = E::get(row, j);
      }
    } else if (rs == 1) {
      // op(B) columns are contiguous rows of the stored B: read along them.
      for (int64_t j = 0; j < nr; ++j) {
        const typename E::Storage* col = src + j * cs;
        for (int64_t p = 0; p < kc; ++p) out[p * kNR + j] = E::get(col, p);
      }
      for (int64_t j = nr; j < kNR; ++j) {
        for (int64_t p = 0; p < kc; ++p) out[p * kNR + j] = 0.0f;
      }
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        int64_t j = 0;
        for (; j < nr; ++j) out[p * kNR + j] = E::get(src, p * rs + j * cs);
        for (; j < kNR; ++j) out[p * kNR + j] = 0.0f;
      }
    }
    out += kc * kNR;
  }
}

// B of batch entry bi, packed as above whatever its element type.
void packB(const GemmArgs& g, int64_t bi, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* out) {
  const int64_t offset = bi * g.strideB;
  switch (g.bType) {
    case DType::kF32:
      packBTyped<F32Elem>(g, static_cast<const float*>(g.b) + offset, p0, kc, j0, nc, out);
      return;
    case DType::kF16:
      packBTyped<F16Elem>(g, static_cast<const uint16_t*>(g.b) + offset, p0, kc, j0, nc, out);
      return;
    case DType::kBF16:
      packBTyped<BF16Elem>(g, static_cast<const uint16_t*>(g.b) + offset, p0, kc, j0, nc, out);
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Epilogue: bias and activation over a finished tile of C.

inline float activate(Activation act, float v, float slope, float leaky) {
  switch (act) {
    case Activation::kLinear:
      return v;
    case Activation::kRelu:
      return v > 0.0f ? v : 0.0f;
    case Activation::kRelu6:
      return std::min(std::max(v, 0.0f), 6.0f);
    case Activation::kPrelu:
      return v < 0.0f ? slope * v : v;
    case Activation::kLeakyRelu:
      return v < 0.0f ? leaky * v : v;
    case Activation::kSigmoid:
      return 1.0f / (1.0f + std::exp(-v));
    case Activation::kElu:
      return v > 0.0f ? v : std::expm1(v);
  }
  return v;
}

void applyEpilogue(const GemmArgs& g, int64_t bi, float* c, int64_t i0, int64_t i1, int64_t j0,
                   int64_t j1) {
  const bool hasBias = g.bias != nullptr;
  if (!hasBias && g.activation == Activation::kLinear) return;
  const float* bias = hasBias ? g.bias + bi * g.biasStride[0] : nullptr;
  const float* alpha =
      g.activation == Activation::kPrelu ? g.alpha + bi * g.alphaStride[0] : nullptr;
  for (int64_t i = i0; i < i1; ++i) {
    float* row = c + i * g.ldc;
    const float* biasRow = hasBias ? bias + i * g.biasStride[1] : nullptr;
    const float* alphaRow = alpha ? alpha + i * g.alphaStride[1] : nullptr;
    for (int64_t j = j0; j < j1; ++j) {
      float v = row[j];
      if (biasRow) v += biasRow[j * g.biasStride[2]];
      const float slope = alphaRow ? alphaRow[j * g.alphaStride[2]] : 0.0f;
      row[j] = activate(g.activation, v, slope, g.leakyAlpha);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Per-thread packing buffers, 64-byte aligned, grown on demand (scratch.h: counted, and a failed
// allocation names its size).

struct Workspace {
  Scratch a, b;
  Scratch sharedB;  // op(B) packed once per call, read by every thread (caller's own)
};

Workspace& threadWorkspace() {
  static thread_local Workspace ws;
  return ws;
}

struct Tiling {
  int64_t mb, nb, mTiles, nTiles;
  int64_t tasks() const { return mTiles * nTiles; }
};

int64_t roundUp(int64_t v, int64_t to) { return (v + to - 1) / to * to; }
int64_t ceilDiv(int64_t v, int64_t d) { return (v + d - 1) / d; }

// Chooses task tiles of C: big enough to amortise packing, numerous enough to balance threads.
Tiling chooseTiling(const GemmArgs& g, int threads) {
  Tiling t;
  t.mb = std::min(roundUp(g.m, kMR), 2 * kMC);
  t.nb = std::min(roundUp(g.n, kNR), kNC);
  const int64_t wanted = threads > 1 ? 3 * threads : 1;
  auto count = [&](int64_t mb, int64_t nb) { return g.batch * ceilDiv(g.m, mb) * ceilDiv(g.n, nb); };
  while (count(t.mb, t.nb) < wanted && t.mb > 4 * kMR) t.mb = roundUp(t.mb / 2, kMR);
  while (count(t.mb, t.nb) < wanted && t.nb > 4 * kNR) t.nb = roundUp(t.nb / 2, kNR);
  t.mTiles = ceilDiv(g.m, t.mb);
  t.nTiles = ceilDiv(g.n, t.nb);
  return t;
}

// op(B) packed once for a whole call: depth block q (rows q*KC ...) holds ceil(N/NR) panels of
// kc_q x NR at data + q*KC*nPadded. Used when the same B would otherwise be packed by many tasks.
struct PackedB {
  const float* data = nullptr;
  int64_t nPadded = 0;
};

// Above this many floats (16 MB) op(B) is packed per task instead (e.g. a large vocabulary).
constexpr int64_t kMaxSharedB = int64_t{1} << 22;

// One task: rows [i0, i1) x columns [j0, j1) of C for batch entry bi.
void runTile(const GemmArgs& g, Microkernel kernel, const PackedB& shared, int64_t bi, int64_t i0,
             int64_t i1, int64_t j0, int64_t j1) {
  const float* a = g.a + bi * g.strideA;
  float* c = g.c + bi * g.strideC;
  if (g.k == 0) {
    if (!g.accumulate) {
      for (int64_t i = i0; i < i1; ++i) std::fill(c + i * g.ldc + j0, c + i * g.ldc + j1, 0.0f);
    }
    applyEpilogue(g, bi, c, i0, i1, j0, j1);
    return;
  }
  Workspace& ws = threadWorkspace();
  const int64_t nc = j1 - j0;
  const int64_t ncPadded = roundUp(nc, kNR);
  float* ownB = shared.data ? nullptr : ws.b.get(static_cast<size_t>(std::min(g.k, kKC) * ncPadded));
  float* ap = ws.a.get(static_cast<size_t>(std::min(g.k, kKC) * kMC));
  alignas(64) float edge[kMR * kNR];
  for (int64_t p0 = 0; p0 < g.k; p0 += kKC) {
    const int64_t kc = std::min(kKC, g.k - p0);
    const bool accumulate = p0 > 0 || g.accumulate;
    const float* bp;
    if (shared.data) {
      bp = shared.data + p0 * shared.nPadded + (j0 / kNR) * kc * kNR;
    } else {
      packB(g, bi, p0, kc, j0, nc, ownB);
      bp = ownB;
    }
    for (int64_t ic = i0; ic < i1; ic += kMC) {
      const int64_t mc = std::min(kMC, i1 - ic);
      packA(g, a, ic, mc, p0, kc, ap);
      for (int64_t jr = 0; jr < nc; jr += kNR) {
        const int64_t nr = std::min(kNR, nc - jr);
        const float* bpanel = bp + jr * kc;
        for (int64_t ir = 0; ir < mc; ir += kMR) {
          const int64_t mr = std::min(kMR, mc - ir);
          float* ctile = c + (ic + ir) * g.ldc + j0 + jr;
          const float* apanel = ap + ir * kc;
          if (mr == kMR && nr == kNR) {
            kernel(kc, apanel, bpanel, ctile, g.ldc, accumulate);
          } else {
            kernel(kc, apanel, bpanel, edge, kNR, false);
            for (int64_t i = 0; i < mr; ++i) {
              float* row = ctile + i * g.ldc;
              const float* src = edge + i * kNR;
              if (accumulate) {
                for (int64_t j = 0; j < nr; ++j) row[j] += src[j];
              } else {
                for (int64_t j = 0; j < nr; ++j) row[j] = src[j];
              }
            }
          }
        }
      }
    }
  }
  applyEpilogue(g, bi, c, i0, i1, j0, j1);
}

}  // namespace

Isa detectIsa() {
#if defined(RPV_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2Fma;
#endif
  return Isa::kScalar;
}

const char* isaName(Isa isa) { return isa == Isa::kAvx2Fma ? "avx2-fma" : "scalar"; }

void sgemm(const GemmArgs& g, Isa isa, ThreadPool* pool) {
  if (g.batch <= 0 || g.m <= 0 || g.n <= 0) return;
  Microkernel kernel = kernelScalar;
#ifdef RPV_X86
  if (isa == Isa::kAvx2Fma) kernel = kernelAvx2Fma;
#endif
  // Below ~64^3 multiply-adds the hand-off to other threads costs more than it saves.
  const double work = static_cast<double>(g.batch) * g.m * g.n * std::max<int64_t>(g.k, 1);
  const int threads = (pool && work >= 262144.0) ? pool->size() : 1;
  const Tiling t = chooseTiling(g, threads);
  const int64_t perBatch = t.mTiles * t.nTiles;
  // One B for the whole call (weights, or a single matrix) that several row tiles would each
  // pack: pack it once, all threads helping, and let every task read it.
  PackedB shared;
  const bool sameB = g.strideB == 0 || g.batch == 1;
  const int64_t rowTiles = t.mTiles * (g.strideB == 0 ? g.batch : 1);
  const int64_t nPadded = roundUp(g.n, kNR);
  if (g.k > 0 && sameB && rowTiles > 1 && g.k * nPadded <= kMaxSharedB) {
    float* data = threadWorkspace().sharedB.get(static_cast<size_t>(g.k * nPadded));
    const int64_t kBlocks = ceilDiv(g.k, kKC);
    const int64_t panels = nPadded / kNR;
    constexpr int64_t kPanelsPerTask = 8;
    const int64_t chunks = ceilDiv(panels, kPanelsPerTask);
    auto pack = [&](int64_t index, int /*thread*/) {
      const int64_t q = index / chunks;
      const int64_t jp0 = (index % chunks) * kPanelsPerTask;
      const int64_t jp1 = std::min(panels, jp0 + kPanelsPerTask);
      const int64_t p0 = q * kKC;
      const int64_t kc = std::min(kKC, g.k - p0);
      const int64_t j0 = jp0 * kNR;
      packB(g, 0, p0, kc, j0, std::min(g.n, jp1 * kNR) - j0, data + p0 * nPadded + jp0 * kc * kNR);
    };
    if (threads > 1) {
      pool->run(kBlocks * chunks, pack);
    } else {
      for (int64_t i = 0; i < kBlocks * chunks; ++i) pack(i, 0);
    }
    shared.data = data;
    shared.nPadded = nPadded;
  }
  auto task = [&](int64_t index, int /*thread*/) {
    const int64_t bi = index / perBatch;
    const int64_t rest = index % perBatch;
    const int64_t mi = rest / t.nTiles;
    const int64_t ni = rest % t.nTiles;
    const int64_t i0 = mi * t.mb, j0 = ni * t.nb;
    runTile(g, kernel, shared, bi, i0, std::min(g.m, i0 + t.mb), j0, std::min(g.n, j0 + t.nb));
  };
  const int64_t tasks = g.batch * perBatch;
  if (threads > 1) {
    pool->run(tasks, task);
  } else {
    for (int64_t i = 0; i < tasks; ++i) task(i, 0);
  }
}

}  // namespace rpv
