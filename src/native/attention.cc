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
    for (int64_t i0 = 0; i0 < s.queries; i0 += kRows) {
      const int64_t rows = std::min(kRows, s.queries - i0);
      const int64_t cols = columnsFor(s, i0 + rows);
      mm(isa, rows, cols, s.headDim, q + i0 * qStride, qStride, false, k, kStride, true, sc, cols, false);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = i0 + r;
        float* row = sc + r * cols;
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
      mm(isa, rows, s.headDim, cols, sc, cols, false, v, kStride, false, out + i0 * qStride, qStride, false);
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
    for (int64_t i0 = 0; i0 < s.queries; i0 += kRows) {
      const int64_t rows = std::min(kRows, s.queries - i0);
      const int64_t cols = columnsFor(s, i0 + rows);
      // P = exp(q k^T + mask - lse), as the forward had it.
      mm(isa, rows, cols, s.headDim, q + i0 * qStride, qStride, false, k, kStride, true, p, cols, false);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = i0 + r;
        float* row = p + r * cols;
        const float* m = a.mask + (b * s.queries + i) * s.keys;
        const float l = lse[i];
        if (std::isinf(l)) {
          std::fill(row, row + cols, 0.0f);
          continue;
        }
        for (int64_t j = 0; j < cols; ++j) row[j] += m[j];
        expShiftSum(row, cols, l, isa);
      }
      // dV += P^T dO; dP = dO V^T.
      mm(isa, cols, s.headDim, rows, p, cols, true, dout + i0 * qStride, qStride, false, dv, s.headDim, true);
      mm(isa, rows, cols, s.headDim, dout + i0 * qStride, qStride, false, v, kStride, true, dp, cols, false);
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
      mm(isa, rows, s.headDim, cols, dp, cols, false, k, kStride, false, dq + i0 * qStride, qStride, false);
      mm(isa, cols, s.headDim, rows, dp, cols, true, q + i0 * qStride, qStride, false, dk, s.headDim, true);
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
