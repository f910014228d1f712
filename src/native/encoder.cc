// Encoder-block kernels over tfjs-wasm's heap, on every core (encoder.h):
//   gelu(heap, xOff, n, kind, outOff)
//   geluGrad(heap, xOff, dyOff, n, kind, dxOff)
//   layerNorm(heap, xOff, rows, cols, wOff, bOff, eps, outOff)     bOff < 0: no bias
//   layerNormGrad(heap, xOff, rows, cols, wOff, dyOff, eps, dxOff)
// Offsets count floats in the heap. Each element's (row's) result depends on its inputs alone,
// never on the thread count. Row statistics are accumulated in double.
#include "encoder.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "frozen.h"
#include "napi_exports.h"
#include "thread_pool.h"

namespace rpv {

namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;
constexpr float kTanhCubic = 0.044715f;

inline float geluOne(float x, GeluKind kind) {
  switch (kind) {
    case GeluKind::kErf:
      return 0.5f * x * (1.0f + std::erf(x * kInvSqrt2));
    case GeluKind::kTanh:
      return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + kTanhCubic * x * x * x)));
    default:
      return x / (1.0f + std::exp(-1.702f * x));
  }
}

inline float geluSlope(float x, GeluKind kind) {
  switch (kind) {
    case GeluKind::kErf:
      return 0.5f * (1.0f + std::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * std::exp(-0.5f * x * x);
    case GeluKind::kTanh: {
      const float t = std::tanh(kSqrt2OverPi * (x + kTanhCubic * x * x * x));
      return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kTanhCubic * x * x);
    }
    default: {
      const float s = 1.0f / (1.0f + std::exp(-1.702f * x));
      return s + 1.702f * x * s * (1.0f - s);
    }
  }
}

void parallel(int64_t tasks, const std::function<void(int64_t)>& fn) {
  withPool([&](Isa, ThreadPool* pool) {
    if (pool && tasks > 1) {
      pool->run(tasks, [&](int64_t t, int) { fn(t); });
    } else {
      for (int64_t t = 0; t < tasks; ++t) fn(t);
    }
  });
}

napi_value fail(napi_env env, const std::string& message) {
  napi_throw_type_error(env, "ERR_RPV_ENCODER", message.c_str());
  return nullptr;
}

// heap (Float32Array) and `count` finite numbers after it; null on error (exception thrown).
float* parse(napi_env env, napi_callback_info info, const std::string& prefix, size_t count, double* v, size_t* length) {
  size_t argc = 9;
  napi_value argv[9];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < count + 1) {
    fail(env, prefix + ": needs " + std::to_string(count + 1) + " arguments");
    return nullptr;
  }
  bool typed = false;
  napi_typedarray_type type;
  void* data = nullptr;
  if (napi_is_typedarray(env, argv[0], &typed) != napi_ok || !typed ||
      napi_get_typedarray_info(env, argv[0], &type, length, &data, nullptr, nullptr) != napi_ok || type != napi_float32_array) {
    fail(env, prefix + ": heap must be a Float32Array");
    return nullptr;
  }
  for (size_t i = 0; i < count; ++i) {
    if (napi_get_value_double(env, argv[i + 1], &v[i]) != napi_ok || !std::isfinite(v[i])) {
      fail(env, prefix + ": arguments must be finite numbers");
      return nullptr;
    }
  }
  return static_cast<float*>(data);
}

bool inHeap(double off, double n, size_t length) { return off >= 0 && off + n <= static_cast<double>(length); }

bool kindOf(double v, GeluKind* kind) {
  if (v != 0 && v != 1 && v != 2) return false;
  *kind = static_cast<GeluKind>(static_cast<int>(v));
  return true;
}

constexpr int64_t kBlock = 1 << 14;

napi_value Gelu(napi_env env, napi_callback_info info) {
  const std::string prefix = "rpv encoder: gelu(heap, xOff, n, kind, outOff)";
  double v[4];
  size_t length = 0;
  float* heap = parse(env, info, prefix, 4, v, &length);
  if (!heap) return nullptr;
  GeluKind kind;
  if (!kindOf(v[2], &kind)) return fail(env, prefix + ": kind must be 0 (erf), 1 (tanh) or 2 (quick)");
  if (v[1] < 0 || !inHeap(v[0], v[1], length) || !inHeap(v[3], v[1], length)) return fail(env, prefix + ": an operand lies outside the heap");
  const float* x = heap + static_cast<int64_t>(v[0]);
  float* out = heap + static_cast<int64_t>(v[3]);
  const int64_t n = static_cast<int64_t>(v[1]);
  parallel((n + kBlock - 1) / kBlock, [&](int64_t b) {
    const int64_t i0 = b * kBlock;
    geluForward(x + i0, out + i0, std::min(n, i0 + kBlock) - i0, kind);
  });
  return nullptr;
}

napi_value GeluGrad(napi_env env, napi_callback_info info) {
  const std::string prefix = "rpv encoder: geluGrad(heap, xOff, dyOff, n, kind, dxOff)";
  double v[5];
  size_t length = 0;
  float* heap = parse(env, info, prefix, 5, v, &length);
  if (!heap) return nullptr;
  GeluKind kind;
  if (!kindOf(v[3], &kind)) return fail(env, prefix + ": kind must be 0 (erf), 1 (tanh) or 2 (quick)");
  const double n = v[2];
  if (n < 0 || !inHeap(v[0], n, length) || !inHeap(v[1], n, length) || !inHeap(v[4], n, length)) return fail(env, prefix + ": an operand lies outside the heap");
  const float* x = heap + static_cast<int64_t>(v[0]);
  const float* dy = heap + static_cast<int64_t>(v[1]);
  float* dx = heap + static_cast<int64_t>(v[4]);
  const int64_t count = static_cast<int64_t>(n);
  parallel((count + kBlock - 1) / kBlock, [&](int64_t b) {
    const int64_t i0 = b * kBlock;
    geluBackward(x + i0, dy + i0, dx + i0, std::min(count, i0 + kBlock) - i0, kind);
  });
  return nullptr;
}

// Rows per task: about kBlock values.
int64_t rowsPerTask(int64_t cols) { return std::max<int64_t>(1, kBlock / std::max<int64_t>(cols, 1)); }

napi_value LayerNorm(napi_env env, napi_callback_info info) {
  const std::string prefix = "rpv encoder: layerNorm(heap, xOff, rows, cols, wOff, bOff, eps, outOff)";
  double v[7];
  size_t length = 0;
  float* heap = parse(env, info, prefix, 7, v, &length);
  if (!heap) return nullptr;
  const double rows = v[1], cols = v[2];
  if (rows < 0 || cols < 1 || !inHeap(v[0], rows * cols, length) || !inHeap(v[3], cols, length) || (v[4] >= 0 && !inHeap(v[4], cols, length)) ||
      !inHeap(v[6], rows * cols, length)) {
    return fail(env, prefix + ": an operand lies outside the heap");
  }
  if (!(v[5] >= 0)) return fail(env, prefix + ": eps must be >= 0");
  const float* x = heap + static_cast<int64_t>(v[0]);
  const float* w = heap + static_cast<int64_t>(v[3]);
  const float* b = v[4] >= 0 ? heap + static_cast<int64_t>(v[4]) : nullptr;
  float* out = heap + static_cast<int64_t>(v[6]);
  const int64_t R = static_cast<int64_t>(rows), C = static_cast<int64_t>(cols);
  const int64_t per = rowsPerTask(C);
  parallel((R + per - 1) / per, [&](int64_t t) {
    const int64_t r0 = t * per;
    layerNormForward(x + r0 * C, w, b, out + r0 * C, std::min(R, r0 + per) - r0, C, static_cast<float>(v[5]));
  });
  return nullptr;
}

napi_value LayerNormGrad(napi_env env, napi_callback_info info) {
  const std::string prefix = "rpv encoder: layerNormGrad(heap, xOff, rows, cols, wOff, dyOff, eps, dxOff)";
  double v[7];
  size_t length = 0;
  float* heap = parse(env, info, prefix, 7, v, &length);
  if (!heap) return nullptr;
  const double rows = v[1], cols = v[2];
  if (rows < 0 || cols < 1 || !inHeap(v[0], rows * cols, length) || !inHeap(v[3], cols, length) || !inHeap(v[4], rows * cols, length) ||
      !inHeap(v[6], rows * cols, length)) {
    return fail(env, prefix + ": an operand lies outside the heap");
  }
  if (!(v[5] >= 0)) return fail(env, prefix + ": eps must be >= 0");
  const float* x = heap + static_cast<int64_t>(v[0]);
  const float* w = heap + static_cast<int64_t>(v[3]);
  const float* dy = heap + static_cast<int64_t>(v[4]);
  float* dx = heap + static_cast<int64_t>(v[6]);
  const int64_t R = static_cast<int64_t>(rows), C = static_cast<int64_t>(cols);
  const int64_t per = rowsPerTask(C);
  parallel((R + per - 1) / per, [&](int64_t t) {
    const int64_t r0 = t * per;
    layerNormBackward(x + r0 * C, w, dy + r0 * C, dx + r0 * C, std::min(R, r0 + per) - r0, C, static_cast<float>(v[5]));
  });
  return nullptr;
}

// mean and rsqrt(var + eps) of one row, in double.
void rowStats(const float* x, int64_t cols, float eps, double* mean, double* r) {
  double s = 0.0;
  for (int64_t j = 0; j < cols; ++j) s += x[j];
  const double m = s / static_cast<double>(cols);
  double q = 0.0;
  for (int64_t j = 0; j < cols; ++j) {
    const double d = x[j] - m;
    q += d * d;
  }
  *mean = m;
  *r = 1.0 / std::sqrt(q / static_cast<double>(cols) + eps);
}

}  // namespace

void geluForward(const float* x, float* out, int64_t n, GeluKind kind) {
  for (int64_t i = 0; i < n; ++i) out[i] = geluOne(x[i], kind);
}

void geluBackward(const float* x, const float* dy, float* dx, int64_t n, GeluKind kind) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * geluSlope(x[i], kind);
}

void layerNormForward(const float* x, const float* w, const float* b, float* out, int64_t rows, int64_t cols, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    double mean, inv;
    rowStats(xr, cols, eps, &mean, &inv);
    const float m = static_cast<float>(mean), k = static_cast<float>(inv);
    for (int64_t j = 0; j < cols; ++j) o[j] = (xr[j] - m) * k * w[j] + (b ? b[j] : 0.0f);
  }
}

void layerNormBackward(const float* x, const float* w, const float* dy, float* dx, int64_t rows, int64_t cols, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const float* d = dy + r * cols;
    float* o = dx + r * cols;
    double mean, inv;
    rowStats(xr, cols, eps, &mean, &inv);
    double sg = 0.0, sgx = 0.0;
    for (int64_t j = 0; j < cols; ++j) {
      const double g = static_cast<double>(d[j]) * w[j];
      sg += g;
      sgx += g * (xr[j] - mean) * inv;
    }
    const double mg = sg / static_cast<double>(cols), mgx = sgx / static_cast<double>(cols);
    for (int64_t j = 0; j < cols; ++j) {
      const double xhat = (xr[j] - mean) * inv;
      o[j] = static_cast<float>(inv * (static_cast<double>(d[j]) * w[j] - mg - xhat * mgx));
    }
  }
}

bool registerEncoder(napi_env env, napi_value exports) {
  return exportFunctions(env, exports, {{"gelu", Gelu}, {"geluGrad", GeluGrad}, {"layerNorm", LayerNorm}, {"layerNormGrad", LayerNormGrad}});
}

}  // namespace rpv
