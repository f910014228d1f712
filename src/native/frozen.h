// N-API bindings for frozen weights used in place (mapped.h) by the training step: frozen
// linear layers, embedding rows and the chunked cross-entropy (xent.h). Registered by addon.cc.
#pragma once

#include <node_api.h>

#include <functional>

#include "gemm.h"

namespace rpv {

class ThreadPool;

// Runs fn with the process's matmul settings (addon.cc): the active instruction set and the
// shared pool, or a null pool while another environment is using it.
void withPool(const std::function<void(Isa, ThreadPool*)>& fn);

// Adds mapFile, unmapFile, mappedResident, frozenMatmul, gatherRows and crossEntropy to exports.
bool registerFrozen(napi_env env, napi_value exports);

}  // namespace rpv
