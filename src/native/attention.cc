#include "attention.h"

#include <algorithm>
#include <functional>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <vector>

#include "scratch.h"
#include "thread_pool.h"
#include "vmath.h"

namespace rpv {

namespace {

constexpr int64_t kRows = 48;  // query rows per block (a multiple of the microkernel's 6)
// Below this mask value a key is not allowed (the model adds -1e9).
constexpr float kMaskedBelow = -1e8f;


// C [m, n] (=|+=) A B with the single-threaded kernel (tasks are already spread over threads).
void mm(Isa isa, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, bool transA, const float* b, int64_t ldb, bool transB,
        float* c, int64_t ldc, bool accumulate) {
  GemmArgs g;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.lda = lda;
  g.transA = transA;
  g.b = b;
  g.ldb = ldb;
  g.transB = transB;
  g.c = c;
  g.ldc = ldc;
  g.accumulate = accumulate;
  sgemm(g, isa, nullptr);
}

void run(ThreadPool* pool, int64_t tasks, const std::function<void(int64_t, int)>& fn) {
  if (pool && tasks > 1) {
    pool->run(tasks, fn);
  } else {
    for (int64_t t = 0; t < tasks; ++t) fn(t, 0);
  }
}

// Columns a block of query rows [i0, i1) can attend to: all keys without the causal rule.
int64_t columnsFor(const AttentionShape& s, int64_t i1) { return s.causal ? std::min(s.keys, s.past() + i1) : s.keys; }

// The keys a block of query rows [i0, i0 + rows) reads: [lo, hi). With segment starts, from the
// block's earliest start; otherwise from key 0.
struct Span {
  int64_t lo, hi;
};
Span spanFor(const AttentionShape& s, const float* starts, int64_t i0, int64_t rows) {
  const int64_t hi = columnsFor(s, i0 + rows);
  if (!starts) return {0, hi};
  int64_t lo = hi;
  for (int64_t r = 0; r < rows; ++r) lo = std::min(lo, static_cast<int64_t>(starts[i0 + r]));
  return {std::max<int64_t>(0, std::min(lo, hi)), hi};
}

// Row i's allowed keys inside a span, [a, e) relative to span.lo (empty when a >= e).
void rowRange(const AttentionShape& s, const float* starts, int64_t i, Span span, int64_t* a, int64_t* e) {
  const int64_t first = static_cast<int64_t>(starts[i]);
  *a = std::max<int64_t>(0, first - span.lo);
  *e = std::min(span.hi, s.past() + i + 1) - span.lo;
}
}  // namespace

void attentionForward(const AttentionForward& a, Isa isa, ThreadPool* pool) {
  const AttentionShape& s = a.s;
  const int64_t g = s.heads / s.kvHeads;
  const int64_t qStride = s.heads * s.headDim, kStride = s.kvHeads * s.headDim;
  auto task = [&](int64_t t, int) {
    const int64_t b = t / s.heads, h = t % s.heads, kv = h / g;
    static thread_local Scratch scores;
    float* sc = scores.get(static_cast<size_t>(kRows * s.keys));
    const float* q = a.q + b * s.queries * qStride + h * s.headDim;
    const float* k = a.k + b * s.keys * kStride + kv * s.headDim;
    const float* v = a.v + b * s.keys * kStride + kv * s.headDim;
    float* out = a.out + b * s.queries * qStride + h * s.headDim;
    float* lse = a.lse + (b * s.heads + h) * s.queries;
    const float* starts = a.starts ? a.starts + b * s.queries : nullptr;
    for (int64_t i0 = 0; i0 < s.queries; i0 += kRows) {
      const int64_t rows = std::min(kRows, s.queries - i0);
      const Span span = spanFor(s, starts, i0, rows);
      const int64_t cols = span.hi - span.lo;
      mm(isa, rows, cols, s.headDim, q + i0 * qStride, qStride, false, k + span.lo * kStride, kStride, true, sc, cols, false);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = i0 + r;
        float* row = sc + r * cols;
        if (starts) {
          // Block-diagonal causal: the row's own sample, up to itself; zeros elsewhere.
          int64_t lo, end;
          rowRange(s, starts, i, span, &lo, &end);
          if (lo >= end) {
            std::fill(row, row + cols, 0.0f);
            lse[i] = std::numeric_limits<float>::infinity();
            continue;
          }
          float max = -std::numeric_limits<float>::infinity();
          for (int64_t j = lo; j < end; ++j) max = std::max(max, row[j]);
          const double sum = expShiftSum(row + lo, end - lo, max, isa);
          const float inv = static_cast<float>(1.0 / sum);
          std::fill(row, row + lo, 0.0f);
          for (int64_t j = lo; j < end; ++j) row[j] *= inv;
          std::fill(row + end, row + cols, 0.0f);
          lse[i] = static_cast<float>(static_cast<double>(max) + std::log(sum));
          continue;
        }
        const float* m = a.mask + (b * s.queries + i) * s.keys;
        float max = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < cols; ++j) {
          row[j] += m[j];
          max = std::max(max, row[j]);
        }
        if (max < kMaskedBelow) {
          std::fill(row, row + cols, 0.0f);
          lse[i] = std::numeric_limits<float>::infinity();
          continue;
        }
        const double sum = expShiftSum(row, cols, max, isa);
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < cols; ++j) row[j] *= inv;
        lse[i] = static_cast<float>(static_cast<double>(max) + std::log(sum));
      }
      mm(isa, rows, s.headDim, cols, sc, cols, false, v + span.lo * kStride, kStride, false, out + i0 * qStride, qStride, false);
    }
  };
  run(pool, s.batch * s.heads, task);
}

void attentionBackward(const AttentionBackward& a, Isa isa, ThreadPool* pool) {
  const AttentionShape& s = a.s;
  const int64_t g = s.heads / s.kvHeads;
  const int64_t qStride = s.heads * s.headDim, kStride = s.kvHeads * s.headDim;
  const int64_t partSize = s.keys * s.headDim;
  // Per query head: its contribution to dK and dV of its key/value head, added up afterwards in
  // a fixed order (so results do not depend on the thread count).
  ScratchVector<float> dkPart(static_cast<size_t>(s.batch * s.heads * partSize));
  ScratchVector<float> dvPart(dkPart.size());
  auto task = [&](int64_t t, int) {
    const int64_t b = t / s.heads, h = t % s.heads, kv = h / g;
    static thread_local Scratch pBuf, dpBuf;
    float* p = pBuf.get(static_cast<size_t>(kRows * s.keys));
    float* dp = dpBuf.get(static_cast<size_t>(kRows * s.keys));
    const float* q = a.q + b * s.queries * qStride + h * s.headDim;
    const float* k = a.k + b * s.keys * kStride + kv * s.headDim;
    const float* v = a.v + b * s.keys * kStride + kv * s.headDim;
    const float* out = a.out + b * s.queries * qStride + h * s.headDim;
    const float* dout = a.dout + b * s.queries * qStride + h * s.headDim;
    const float* lse = a.lse + (b * s.heads + h) * s.queries;
    float* dq = a.dq + b * s.queries * qStride + h * s.headDim;
    float* dk = dkPart.data() + t * partSize;
    float* dv = dvPart.data() + t * partSize;
    const float* starts = a.starts ? a.starts + b * s.queries : nullptr;
    for (int64_t i0 = 0; i0 < s.queries; i0 += kRows) {
      const int64_t rows = std::min(kRows, s.queries - i0);
      const Span span = spanFor(s, starts, i0, rows);
      const int64_t cols = span.hi - span.lo;
      const float* kb = k + span.lo * kStride;
      const float* vb = v + span.lo * kStride;
      float* dkb = dk + span.lo * s.headDim;
      float* dvb = dv + span.lo * s.headDim;
      // P = exp(q k^T + mask - lse), as the forward had it.
      mm(isa, rows, cols, s.headDim, q + i0 * qStride, qStride, false, kb, kStride, true, p, cols, false);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = i0 + r;
        float* row = p + r * cols;
        const float l = lse[i];
        if (std::isinf(l)) {
          std::fill(row, row + cols, 0.0f);
          continue;
        }
        if (starts) {
          int64_t lo, end;
          rowRange(s, starts, i, span, &lo, &end);
          std::fill(row, row + lo, 0.0f);
          expShiftSum(row + lo, end - lo, l, isa);
          std::fill(row + end, row + cols, 0.0f);
          continue;
        }
        const float* m = a.mask + (b * s.queries + i) * s.keys;
        for (int64_t j = 0; j < cols; ++j) row[j] += m[j];
        expShiftSum(row, cols, l, isa);
      }
      // dV += P^T dO; dP = dO V^T.
      mm(isa, cols, s.headDim, rows, p, cols, true, dout + i0 * qStride, qStride, false, dvb, s.headDim, true);
      mm(isa, rows, cols, s.headDim, dout + i0 * qStride, qStride, false, vb, kStride, true, dp, cols, false);
      // dS = P (dP - D), D_i = dO_i . O_i.
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = i0 + r;
        double d = 0.0;
        for (int64_t e = 0; e < s.headDim; ++e) d += static_cast<double>(dout[i * qStride + e]) * out[i * qStride + e];
        const float df = static_cast<float>(d);
        float* ds = dp + r * cols;
        const float* pr = p + r * cols;
        for (int64_t j = 0; j < cols; ++j) ds[j] = pr[j] * (ds[j] - df);
      }
      // dQ = dS K; dK += dS^T Q.
      mm(isa, rows, s.headDim, cols, dp, cols, false, kb, kStride, false, dq + i0 * qStride, qStride, false);
      mm(isa, cols, s.headDim, rows, dp, cols, true, q + i0 * qStride, qStride, false, dkb, s.headDim, true);
    }
  };
  run(pool, s.batch * s.heads, task);
  // dk[b, j, kv] = sum of the group's heads, in head order.
  auto reduce = [&](int64_t t, int) {
    const int64_t b = t / s.kvHeads, kv = t % s.kvHeads;
    for (int64_t j = 0; j < s.keys; ++j) {
      float* dk = a.dk + (b * s.keys + j) * kStride + kv * s.headDim;
      float* dv = a.dv + (b * s.keys + j) * kStride + kv * s.headDim;
      for (int64_t e = 0; e < s.headDim; ++e) {
        float sk = 0.0f, sv = 0.0f;
        for (int64_t hh = 0; hh < g; ++hh) {
          const int64_t part = (b * s.heads + kv * g + hh) * partSize + j * s.headDim + e;
          sk += dkPart[part];
          sv += dvPart[part];
        }
        dk[e] = sk;
        dv[e] = sv;
      }
    }
  };
  run(pool, s.batch * s.kvHeads, reduce);
}

}  // namespace rpv
