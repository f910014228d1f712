// Element-wise kernels of the training step that tfjs-wasm would run on one thread.
#pragma once

#include <node_api.h>

namespace rpv {

// Adds dropoutScale, swiglu and swigluGrad to exports.
bool registerPointwise(napi_env env, napi_value exports);

}  // namespace rpv
