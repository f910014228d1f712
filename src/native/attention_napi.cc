// N-API bindings of the fused attention (attention.h):
//   attentionForward(heap, dims, qOff, kOff, vOff, maskOff, outOff, lseOff)
//   attentionBackward(heap, dims, qOff, kOff, vOff, maskOff, outOff, lseOff, doutOff, dqOff, dkOff, dvOff)
// dims: Float64Array [batch, queries, keys, heads, kvHeads, headDim(, causal)]; causal is 1 (the
// default when absent) or 0; offsets count floats in heap.
#include <node_api.h>

#include <cmath>
#include <string>

#include "attention.h"
#include "frozen.h"
#include "napi_exports.h"

namespace rpv {

namespace {

napi_value fail(napi_env env, const std::string& message) {
  napi_throw_type_error(env, "ERR_RPV_ATTENTION", message.c_str());
  return nullptr;
}

struct Args {
  float* heap = nullptr;
  size_t length = 0;
  AttentionShape s;
  // dims[7] = 1: operand 3 is the segment starts [B, T], not a mask [B, T, S].
  bool segments = false;
  double off[10] = {0};
};

// Reads heap, dims and `offsets` offsets, checking every region against the heap.
bool parse(napi_env env, napi_callback_info info, int offsets, Args* a, std::string* error) {
  size_t argc = 12;
  napi_value argv[12];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < static_cast<size_t>(2 + offsets)) {
    *error = "expected " + std::to_string(2 + offsets) + " arguments";
    return false;
  }
  bool typed = false;
  napi_typedarray_type type;
  void* data = nullptr;
  size_t dimsLen = 0;
  void* dims = nullptr;
  if (napi_is_typedarray(env, argv[0], &typed) != napi_ok || !typed ||
      napi_get_typedarray_info(env, argv[0], &type, &a->length, &data, nullptr, nullptr) != napi_ok || type != napi_float32_array) {
    *error = "heap must be a Float32Array";
    return false;
  }
  a->heap = static_cast<float*>(data);
  if (napi_is_typedarray(env, argv[1], &typed) != napi_ok || !typed ||
      napi_get_typedarray_info(env, argv[1], &type, &dimsLen, &dims, nullptr, nullptr) != napi_ok || type != napi_float64_array || dimsLen < 6 || dimsLen > 8) {
    *error = "dims must be a Float64Array [batch, queries, keys, heads, kvHeads, headDim(, causal(, segments))]";
    return false;
  }
  const double* d = static_cast<const double*>(dims);
  for (int i = 0; i < 6; ++i) {
    if (!std::isfinite(d[i]) || d[i] < 1 || d[i] != std::floor(d[i]) || d[i] > 1e9) {
      *error = "dims must be positive integers";
      return false;
    }
  }
  if (dimsLen >= 7 && d[6] != 0 && d[6] != 1) {
    *error = "dims[6] (causal) must be 0 or 1";
    return false;
  }
  if (dimsLen == 8 && (d[7] != 0 && d[7] != 1)) {
    *error = "dims[7] (segments) must be 0 or 1";
    return false;
  }
  a->segments = dimsLen == 8 && d[7] == 1;
  if (a->segments && dimsLen >= 7 && d[6] != 1) {
    *error = "segment starts need the causal mode (dims[6] = 1)";
    return false;
  }
  AttentionShape& s = a->s;
  s.causal = dimsLen == 6 || d[6] == 1;
  s.batch = static_cast<int64_t>(d[0]);
  s.queries = static_cast<int64_t>(d[1]);
  s.keys = static_cast<int64_t>(d[2]);
  s.heads = static_cast<int64_t>(d[3]);
  s.kvHeads = static_cast<int64_t>(d[4]);
  s.headDim = static_cast<int64_t>(d[5]);
  if ((s.causal && s.keys < s.queries) || s.heads % s.kvHeads != 0) {
    *error = "keys must be >= queries (causal) and heads a multiple of kvHeads";
    return false;
  }
  for (int i = 0; i < offsets; ++i) {
    if (napi_get_value_double(env, argv[2 + i], &a->off[i]) != napi_ok || !std::isfinite(a->off[i]) || a->off[i] < 0) {
      *error = "offsets must be non-negative numbers";
      return false;
    }
  }
  return true;
}

bool inside(const Args& a, int index, double floats, const char* what, std::string* error) {
  if (a.off[index] + floats > static_cast<double>(a.length)) {
    *error = std::string(what) + " lies outside the heap";
    return false;
  }
  return true;
}

napi_value Forward(napi_env env, napi_callback_info info) {
  Args a;
  std::string error;
  if (!parse(env, info, 6, &a, &error)) return fail(env, "rpv attention: attentionForward: " + error);
  const AttentionShape& s = a.s;
  const double qn = static_cast<double>(s.batch * s.queries * s.heads * s.headDim);
  const double kn = static_cast<double>(s.batch * s.keys * s.kvHeads * s.headDim);
  if (!inside(a, 0, qn, "q", &error) || !inside(a, 1, kn, "k", &error) || !inside(a, 2, kn, "v", &error) ||
      !inside(a, 3, static_cast<double>(s.batch * s.queries * (a.segments ? 1 : s.keys)), a.segments ? "starts" : "mask", &error) || !inside(a, 4, qn, "out", &error) ||
      !inside(a, 5, static_cast<double>(s.batch * s.heads * s.queries), "lse", &error)) {
    return fail(env, "rpv attention: attentionForward: " + error);
  }
  AttentionForward f;
  f.s = s;
  f.q = a.heap + static_cast<int64_t>(a.off[0]);
  f.k = a.heap + static_cast<int64_t>(a.off[1]);
  f.v = a.heap + static_cast<int64_t>(a.off[2]);
  if (a.segments) f.starts = a.heap + static_cast<int64_t>(a.off[3]);
  else f.mask = a.heap + static_cast<int64_t>(a.off[3]);
  f.out = a.heap + static_cast<int64_t>(a.off[4]);
  f.lse = a.heap + static_cast<int64_t>(a.off[5]);
  withPool([&](Isa isa, ThreadPool* pool) { attentionForward(f, isa, pool); });
  return nullptr;
}

napi_value Backward(napi_env env, napi_callback_info info) {
  Args a;
  std::string error;
  if (!parse(env, info, 10, &a, &error)) return fail(env, "rpv attention: attentionBackward: " + error);
  const AttentionShape& s = a.s;
  const double qn = static_cast<double>(s.batch * s.queries * s.heads * s.headDim);
  const double kn = static_cast<double>(s.batch * s.keys * s.kvHeads * s.headDim);
  if (!inside(a, 0, qn, "q", &error) || !inside(a, 1, kn, "k", &error) || !inside(a, 2, kn, "v", &error) ||
      !inside(a, 3, static_cast<double>(s.batch * s.queries * (a.segments ? 1 : s.keys)), a.segments ? "starts" : "mask", &error) || !inside(a, 4, qn, "out", &error) ||
      !inside(a, 5, static_cast<double>(s.batch * s.heads * s.queries), "lse", &error) || !inside(a, 6, qn, "dout", &error) ||
      !inside(a, 7, qn, "dq", &error) || !inside(a, 8, kn, "dk", &error) || !inside(a, 9, kn, "dv", &error)) {
    return fail(env, "rpv attention: attentionBackward: " + error);
  }
  AttentionBackward bw;
  bw.s = s;
  float* h = a.heap;
  bw.q = h + static_cast<int64_t>(a.off[0]);
  bw.k = h + static_cast<int64_t>(a.off[1]);
  bw.v = h + static_cast<int64_t>(a.off[2]);
  if (a.segments) bw.starts = h + static_cast<int64_t>(a.off[3]);
  else bw.mask = h + static_cast<int64_t>(a.off[3]);
  bw.out = h + static_cast<int64_t>(a.off[4]);
  bw.lse = h + static_cast<int64_t>(a.off[5]);
  bw.dout = h + static_cast<int64_t>(a.off[6]);
  bw.dq = h + static_cast<int64_t>(a.off[7]);
  bw.dk = h + static_cast<int64_t>(a.off[8]);
  bw.dv = h + static_cast<int64_t>(a.off[9]);
  withPool([&](Isa isa, ThreadPool* pool) { attentionBackward(bw, isa, pool); });
  return nullptr;
}

}  // namespace

bool registerAttention(napi_env env, napi_value exports) {
  return exportFunctions(env, exports, {{"attentionForward", Forward}, {"attentionBackward", Backward}});
}

}  // namespace rpv
