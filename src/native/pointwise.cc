// Element-wise kernels over float32 tensors of tfjs-wasm's heap, on every core.
//
// swiglu(heap, gOff, uOff, n, outOff): out = silu(g) * u.
// swigluGrad(heap, gOff, uOff, dyOff, n, dgOff, duOff): the gradients of swiglu for g and u.
// Both through vmath.h's exponential; each element's result depends on its inputs alone.
//
// dropoutScale(heap, xOff, n, seedMix, threshold, keep, outOff):
//   out[i] = hash(i, seedMix) >= threshold ? x[i] * keep : 0
// with hash(i, s) = fmix32((i * 0x9E3779B1) ^ s) (murmur3's finaliser). A counter-based draw: any
// element's decision is a function of its index and the seed alone, so the mask is drawn in
// parallel, drawn again in the backward pass instead of being kept, and drawn identically by the
// JavaScript fallback (src/model/lora.ts dropoutMask, fmix32 in src/util/random.ts): change both.
#include "pointwise.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "frozen.h"
#include "napi_exports.h"
#include "thread_pool.h"
#include "vmath.h"

namespace rpv {

namespace {

inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

napi_value fail(napi_env env, const std::string& message) {
  napi_throw_type_error(env, "ERR_RPV_POINTWISE", message.c_str());
  return nullptr;
}

bool number(napi_env env, napi_value v, double* out) {
  return napi_get_value_double(env, v, out) == napi_ok && std::isfinite(*out);
}

// The Float32Array view of tfjs-wasm's heap in `v`, or null (and an exception naming `prefix`).
float* heapOf(napi_env env, napi_value v, const std::string& prefix, size_t* length) {
  bool typed = false;
  napi_typedarray_type type;
  void* data = nullptr;
  if (napi_is_typedarray(env, v, &typed) != napi_ok || !typed ||
      napi_get_typedarray_info(env, v, &type, length, &data, nullptr, nullptr) != napi_ok || type != napi_float32_array) {
    fail(env, prefix + ": heap must be a Float32Array");
    return nullptr;
  }
  return static_cast<float*>(data);
}

napi_value DropoutScale(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 7) return fail(env, "rpv pointwise: dropoutScale(heap, xOff, n, seedMix, threshold, keep, outOff) needs 7 arguments");
  size_t length = 0;
  float* data = heapOf(env, argv[0], "rpv pointwise: dropoutScale", &length);
  if (!data) return nullptr;
  double xOff, n, seed, threshold, keep, outOff;
  if (!number(env, argv[1], &xOff) || !number(env, argv[2], &n) || !number(env, argv[3], &seed) || !number(env, argv[4], &threshold) ||
      !number(env, argv[5], &keep) || !number(env, argv[6], &outOff)) {
    return fail(env, "rpv pointwise: dropoutScale: arguments must be finite numbers");
  }
  if (xOff < 0 || n < 0 || outOff < 0 || xOff + n > static_cast<double>(length) || outOff + n > static_cast<double>(length)) {
    return fail(env, "rpv pointwise: dropoutScale: input or output lies outside the heap");
  }
  if (seed < 0 || seed > 4294967295.0 || threshold < 0 || threshold > 4294967295.0) {
    return fail(env, "rpv pointwise: dropoutScale: seedMix and threshold must be 32-bit unsigned integers");
  }
  const float* x = data + static_cast<int64_t>(xOff);
  float* out = data + static_cast<int64_t>(outOff);
  const int64_t count = static_cast<int64_t>(n);
  const uint32_t s = static_cast<uint32_t>(seed);
  const uint32_t t = static_cast<uint32_t>(threshold);
  const float k = static_cast<float>(keep);
  constexpr int64_t kBlock = 1 << 16;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  auto task = [&](int64_t b, int) {
    const int64_t i1 = std::min(count, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < i1; ++i) {
      const uint32_t h = fmix32((static_cast<uint32_t>(i) * 0x9E3779B1u) ^ s);
      out[i] = h >= t ? x[i] * k : 0.0f;
    }
  };
  withPool([&](Isa, ThreadPool* pool) {
    if (pool && blocks > 1) {
      pool->run(blocks, task);
    } else {
      for (int64_t b = 0; b < blocks; ++b) task(b, 0);
    }
  });
  return nullptr;
}

// An element-wise call (heap, numbers...): numbers[countAt] is the element count n, every other
// number the float offset of an operand of n elements, in order. Checks the arguments and that each
// operand lies in the heap, then runs body over [0, n) in blocks on the shared pool, with the
// operands' pointers advanced to the block.
napi_value elementwise(napi_env env, napi_callback_info info, const char* name, const char* usage, size_t numbers, size_t countAt,
                       const std::function<void(float* const* ops, int64_t count, Isa isa)>& body) {
  constexpr size_t kMaxArgs = 8;
  size_t argc = kMaxArgs;
  napi_value argv[kMaxArgs];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  const std::string prefix = std::string("rpv pointwise: ") + name;
  if (argc < numbers + 1) return fail(env, prefix + usage + " needs " + std::to_string(numbers + 1) + " arguments");
  size_t length = 0;
  float* heap = heapOf(env, argv[0], prefix, &length);
  if (!heap) return nullptr;
  double v[kMaxArgs];
  for (size_t i = 0; i < numbers; ++i) {
    if (!number(env, argv[i + 1], &v[i]) || v[i] < 0) return fail(env, prefix + ": offsets and sizes must be finite non-negative numbers");
  }
  const double n = v[countAt];
  std::vector<int64_t> offsets;
  for (size_t i = 0; i < numbers; ++i) {
    if (i == countAt) continue;
    if (v[i] + n > static_cast<double>(length)) return fail(env, prefix + ": an operand lies outside the heap");
    offsets.push_back(static_cast<int64_t>(v[i]));
  }
  const int64_t count = static_cast<int64_t>(n);
  constexpr int64_t kBlock = 1 << 15;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  withPool([&](Isa isa, ThreadPool* pool) {
    auto task = [&](int64_t b, int) {
      const int64_t i0 = b * kBlock;
      float* ops[kMaxArgs];
      for (size_t k = 0; k < offsets.size(); ++k) ops[k] = heap + offsets[k] + i0;
      body(ops, std::min(count, i0 + kBlock) - i0, isa);
    };
    if (pool && blocks > 1) {
      pool->run(blocks, task);
    } else {
      for (int64_t b = 0; b < blocks; ++b) task(b, 0);
    }
  });
  return nullptr;
}

napi_value Swiglu(napi_env env, napi_callback_info info) {
  return elementwise(env, info, "swiglu", "(heap, gOff, uOff, n, outOff)", 4, 2,
                     [](float* const* op, int64_t count, Isa isa) { swigluForward(op[0], op[1], op[2], count, isa); });
}

napi_value SwigluGrad(napi_env env, napi_callback_info info) {
  return elementwise(env, info, "swigluGrad", "(heap, gOff, uOff, dyOff, n, dgOff, duOff)", 6, 3,
                     [](float* const* op, int64_t count, Isa isa) { swigluBackward(op[0], op[1], op[2], op[3], op[4], count, isa); });
}

}  // namespace

bool registerPointwise(napi_env env, napi_value exports) {
  return exportFunctions(env, exports, {{"dropoutScale", DropoutScale}, {"swiglu", Swiglu}, {"swigluGrad", SwigluGrad}});
}

}  // namespace rpv
