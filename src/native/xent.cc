#include "xent.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <new>
#include <vector>

#include "scratch.h"
#include "thread_pool.h"
#include "vmath.h"

namespace rpv {

namespace {

// One row: loss = logsumexp(x) - x[target]; with `grad`, x becomes softmax(x) - onehot(target).
void row(float* x, int64_t vocab, int32_t target, float* loss, bool grad, Isa isa) {
  const float max = maxOf(x, vocab, isa);
  const float picked = x[target];
  // Without `grad` the exponentials go to x too: the chunk's logits are scratch either way.
  const double sum = expShiftSum(x, vocab, max, isa);
  const double lse = static_cast<double>(max) + std::log(sum);
  *loss = static_cast<float>(lse - static_cast<double>(picked));
  if (grad) {
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < vocab; ++j) x[j] *= inv;
    x[target] -= 1.0f;
  }
}

}  // namespace

int64_t xentPartialColumns(int64_t tasks, int64_t rows, int64_t hidden) {
  const int64_t fit = kXentPartialBytes / (static_cast<int64_t>(sizeof(float)) * tasks * rows) / 16 * 16;
  return std::min(hidden, std::max<int64_t>(16, fit));
}

void crossEntropy(const XentArgs& a, Isa isa, ThreadPool* pool) {
  if (a.m <= 0) return;
  const int threads = pool ? pool->size() : 1;
  const int64_t chunk = std::max<int64_t>(1, std::min(a.chunkRows, a.m));
  static thread_local Scratch logitsBuf, partialBuf;
  float* logits = logitsBuf.get(static_cast<size_t>(chunk * a.vocab));
  // dH = G W is a GEMM with a huge depth (the vocabulary) and a small output: each task takes a
  // slice of the vocabulary into its own partial sum (each slice of W is packed once), then the
  // partial sums are added in a fixed order, so results do not depend on the thread count. The
  // partial sums cover `cols` columns of dH at a time, so they never take more than
  // kXentPartialBytes (every column's sums are the same whatever the blocks).
  const int64_t kTasks = std::max<int64_t>(1, std::min<int64_t>(4 * threads, (a.vocab + 1023) / 1024));
  const int64_t cols = xentPartialColumns(kTasks, chunk, a.hidden);
  float* partial = a.dh ? partialBuf.get(static_cast<size_t>(kTasks * chunk * cols)) : nullptr;
  for (int64_t r0 = 0; r0 < a.m; r0 += chunk) {
    const int64_t mc = std::min(chunk, a.m - r0);
    GemmArgs g;
    g.m = mc;
    g.n = a.vocab;
    g.k = a.hidden;
    g.a = a.h + r0 * a.hidden;
    g.lda = a.hidden;
    g.b = a.head;
    g.bType = a.headType;
    g.transB = true;
    g.ldb = a.hidden;
    g.c = logits;
    g.ldc = a.vocab;
    sgemm(g, isa, pool);
    const bool grad = a.dh != nullptr;
    auto rowTask = [&](int64_t i, int) { row(logits + i * a.vocab, a.vocab, a.targets[r0 + i], a.loss + r0 + i, grad, isa); };
    if (pool && mc > 1) {
      pool->run(mc, rowTask);
    } else {
      for (int64_t i = 0; i < mc; ++i) rowTask(i, 0);
    }
    if (!grad) continue;
    const int64_t per = (a.vocab + kTasks - 1) / kTasks;
    for (int64_t c0 = 0; c0 < a.hidden; c0 += cols) {
      const int64_t nc = std::min(cols, a.hidden - c0);
      const int64_t n = mc * nc;
      auto sliceTask = [&](int64_t t, int) {
        float* out = partial + t * n;
        const int64_t v0 = t * per;
        const int64_t v1 = std::min(a.vocab, v0 + per);
        if (v1 <= v0) {
          std::fill(out, out + n, 0.0f);
          return;
        }
        GemmArgs d;
        d.m = mc;
        d.n = nc;
        d.k = v1 - v0;
        d.a = logits + v0;
        d.lda = a.vocab;
        d.b = static_cast<const uint8_t*>(a.head) + (v0 * a.hidden + c0) * dtypeBytes(a.headType);
        d.bType = a.headType;
        d.ldb = a.hidden;
        d.c = out;
        d.ldc = nc;
        sgemm(d, isa, nullptr);
      };
      if (pool && kTasks > 1) {
        pool->run(kTasks, sliceTask);
      } else {
        for (int64_t t = 0; t < kTasks; ++t) sliceTask(t, 0);
      }
      for (int64_t i = 0; i < mc; ++i) {
        float* dh = a.dh + (r0 + i) * a.hidden + c0;
        std::copy(partial + i * nc, partial + (i + 1) * nc, dh);
        for (int64_t t = 1; t < kTasks; ++t) {
          const float* p = partial + t * n + i * nc;
          for (int64_t j = 0; j < nc; ++j) dh[j] += p[j];
        }
      }
    }
  }
}

}  // namespace rpv
