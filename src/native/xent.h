// Cross-entropy of hidden states against a (frozen, possibly half-precision) output head, in
// chunks of rows: the [rows x vocabulary] logits never exist for more than `chunkRows` rows at a
// time. Forward and backward in one pass (the loss is a sum, so its gradient with respect to the
// logits is known as soon as they are): softmax - onehot, then dH = G W, as Liger-Kernel's fused
// linear cross-entropy does. Its scratch, kept by the calling thread for the next call:
// `chunkRows` rows of logits and the partial sums of dH (kXentPartialBytes, below).
#pragma once

#include <cstdint>

#include "gemm.h"

namespace rpv {

struct XentArgs {
  const float* h = nullptr;  // [m, hidden], row stride hidden
  int64_t m = 0, hidden = 0;
  const void* head = nullptr;  // [vocab, hidden] of headType (the LM head or tied embeddings)
  DType headType = DType::kF32;
  int64_t vocab = 0;
  const int32_t* targets = nullptr;  // [m], each in [0, vocab)
  float* loss = nullptr;             // [m]: logsumexp(logits) - logits[target]
  float* dh = nullptr;               // [m, hidden]: d(sum of loss)/dh, or null for the loss only
  int64_t chunkRows = 128;
};

// The most bytes dH's per-task partial sums take (src/train/memory.ts counts them with this).
constexpr int64_t kXentPartialBytes = int64_t{4} << 20;

// Columns of dH whose partial sums over `tasks` vocabulary slices of `rows` rows fit
// kXentPartialBytes: a multiple of 16 (16 even where that does not fit), at most `hidden`.
int64_t xentPartialColumns(int64_t tasks, int64_t rows, int64_t hidden);

void crossEntropy(const XentArgs& args, Isa isa, ThreadPool* pool);

}  // namespace rpv
