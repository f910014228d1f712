// dropoutScale(heap, xOff, n, seedMix, threshold, keep, outOff):
//   out[i] = hash(i, seedMix) >= threshold ? x[i] * keep : 0
// with hash(i, s) = fmix32((i * 0x9E3779B1) ^ s) (murmur3's finaliser). A counter-based draw: any
// element's decision is a function of its index and the seed alone, so the mask is drawn in
// parallel, drawn again in the backward pass instead of being kept, and drawn identically by the
// JavaScript fallback (src/model/lora.ts dropoutMask, fmix32 in src/util/random.ts): change both.
#include "pointwise.h"

#include <cmath>
#include <cstdint>
#include <string>

#include "frozen.h"
#include "thread_pool.h"

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

napi_value DropoutScale(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 7) return fail(env, "rpv pointwise: dropoutScale(heap, xOff, n, seedMix, threshold, keep, outOff) needs 7 arguments");
  bool typed = false;
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_is_typedarray(env, argv[0], &typed) != napi_ok || !typed ||
      napi_get_typedarray_info(env, argv[0], &type, &length, &data, nullptr, nullptr) != napi_ok || type != napi_float32_array) {
    return fail(env, "rpv pointwise: dropoutScale: heap must be a Float32Array");
  }
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
  const float* x = static_cast<const float*>(data) + static_cast<int64_t>(xOff);
  float* out = static_cast<float*>(data) + static_cast<int64_t>(outOff);
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

}  // namespace

bool registerPointwise(napi_env env, napi_value exports) {
  napi_value fn;
  return napi_create_function(env, "dropoutScale", NAPI_AUTO_LENGTH, DropoutScale, nullptr, &fn) == napi_ok &&
         napi_set_named_property(env, exports, "dropoutScale", fn) == napi_ok;
}

}  // namespace rpv
