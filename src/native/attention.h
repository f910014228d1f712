// Causal self-attention with grouped-query heads, fused: scores, additive mask, softmax and the
// weighted values per (sequence, head), in blocks of query rows, without keeping the
// [heads x queries x keys] probabilities. The forward keeps each row's log-sum-exp; the backward
// recomputes the probabilities from it (FlashAttention's recomputation, on a CPU).
//
// Layouts are the model's: q [B*T, nh*hd] (rotary applied, 1/sqrt(hd) folded in), k and v
// [B*S, nkv*hd], query head h reads key/value head h / (nh / nkv). The mask is additive
// [B, T, S] (0 allowed, -1e9 not). With `causal` (the decoder's case) the columns past a block of
// query rows' last position (key j > past + i1) are skipped, and the mask must hide the later keys
// within a block (the decoder's causal mask does; src/model/attend.ts adds the rule); without it
// (vision towers, other encoders) every key is read and only the mask decides. A row with no
// allowed key gives zeros.
//
// Packed rows (several samples in one row, src/train/packing.ts) pass `starts` instead of a mask:
// [B, T] floats, the first key query i may read (its sample's first position); with the causal
// rule, query i reads keys [starts[i], past + i], block-diagonal causal attention. Nothing
// [T x S] is read, and each block of rows computes only the columns its samples span.
#pragma once

#include <node_api.h>

#include <cstdint>

#include "gemm.h"

namespace rpv {

class ThreadPool;

struct AttentionShape {
  int64_t batch = 1, queries = 0, keys = 0, heads = 0, kvHeads = 0, headDim = 0;
  bool causal = true;
  int64_t past() const { return keys - queries; }
};

struct AttentionForward {
  AttentionShape s;
  // [B, T] first allowed key per query (causal only); when set, `mask` is not read.
  const float* starts = nullptr;
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  const float* mask = nullptr;
  float* out = nullptr;  // [B*T, nh*hd]
  float* lse = nullptr;  // [B, nh, T]; +inf for a row with no allowed key
};

struct AttentionBackward {
  AttentionShape s;
  // [B, T] first allowed key per query (causal only); when set, `mask` is not read.
  const float* starts = nullptr;
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  const float* mask = nullptr;
  const float* out = nullptr;
  const float* lse = nullptr;
  const float* dout = nullptr;
  float* dq = nullptr;  // [B*T, nh*hd]
  float* dk = nullptr;  // [B*S, nkv*hd]
  float* dv = nullptr;  // [B*S, nkv*hd]
};

void attentionForward(const AttentionForward& a, Isa isa, ThreadPool* pool);
void attentionBackward(const AttentionBackward& a, Isa isa, ThreadPool* pool);

// Adds attentionForward and attentionBackward to the addon's exports (attention_napi.cc).
bool registerAttention(napi_env env, napi_value exports);

}  // namespace rpv
