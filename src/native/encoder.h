// Element-wise and per-row kernels of encoder blocks (vision towers) that tfjs-wasm runs as many
// single-threaded kernels: GELU in its three forms and LayerNorm with bias, forward and backward.
#pragma once

#include <node_api.h>

#include <cstdint>

namespace rpv {

// 0: erf form, 0.5 x (1 + erf(x / sqrt 2)); 1: tanh form; 2: quick, x sigmoid(1.702 x).
enum class GeluKind : int { kErf = 0, kTanh = 1, kQuick = 2 };

void geluForward(const float* x, float* out, int64_t n, GeluKind kind);
// dx = dy * gelu'(x).
void geluBackward(const float* x, const float* dy, float* dx, int64_t n, GeluKind kind);

// out[r] = (x[r] - mean) / sqrt(var + eps) * w + b (b may be null), per row of `cols`.
void layerNormForward(const float* x, const float* w, const float* b, float* out, int64_t rows, int64_t cols, float eps);
// dx[r] = rsqrt(var + eps) * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w.
void layerNormBackward(const float* x, const float* w, const float* dy, float* dx, int64_t rows, int64_t cols, float eps);

// Adds gelu, geluGrad, layerNorm and layerNormGrad to exports (encoder.cc).
bool registerEncoder(napi_env env, napi_value exports);

}  // namespace rpv
