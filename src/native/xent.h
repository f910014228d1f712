// Cross-entropy of hidden states against a (frozen, possibly half-precision) output head, in
// chunks of rows: the [rows x vocabulary] logits never exist for more than `chunkRows` rows at a
// time. Forward and backward in one pass (the loss is a sum, so its gradient with respect to the
// logits is known as soon as they are): softmax - onehot, then dH = G W, as Liger-Kernel's fused
// linear cross-entropy does.
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

void crossEntropy(const XentArgs& args, Isa isa, ThreadPool* pool);

}  // namespace rpv
