// N-API bindings for the GEMM (plain node_api.h, no node-addon-api dependency).
//
// Exports:
//   gemm(a, b, c, params, bias?, alpha?)  a, b, c, bias, alpha: Float32Array (they may all view
//       the same memory, e.g. the tfjs wasm heap); params: Float64Array laid out as kParam* below.
//       Every index the call will touch is bounds-checked before any work starts.
//   setThreads(n) / threads()  the persistent pool (caller thread included). Until setThreads, the
//       pool has the CPUs this process may use (its affinity mask, capped by a cgroup v2 CPU
//       quota, as defaultThreads() in matmul.ts) and starts on the first kernel call that uses it.
//   scratchBytes() / setScratchLimit(bytes | null)  bytes of kernel scratch held now; a test hook
//       making larger scratch requests fail as an allocation would (scratch.h)
//   isa() / setIsa('auto' | 'scalar' | 'avx2-fma') / detectedIsa()
//   gridSums(...)  grid-v1 frame statistics (grid.cc)
//   spawnFiles(...)  posix_spawn with a pidfd exit watch, Linux only (spawner.cc)
#include <node_api.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#ifdef __linux__
#include <sched.h>
#endif

#include "attention.h"
#include "frozen.h"
#include "gemm.h"
#include "grid.h"
#include "napi_exports.h"
#include "encoder.h"
#include "pointwise.h"
#include "scratch.h"
#include "spawner.h"
#include "thread_pool.h"

namespace {

enum Param {
  kBatch = 0, kM, kN, kK, kTransA, kTransB,
  kAOffset, kLda, kAStride,
  kBOffset, kLdb, kBStride,
  kCOffset, kLdc, kCStride,
  kActivation, kLeakyAlpha,
  kBiasOffset, kBiasStride0, kBiasStride1, kBiasStride2,
  kAlphaOffset, kAlphaStride0, kAlphaStride1, kAlphaStride2,
  kParamCount
};

// One pool per process, shared by every Node environment (main thread and workers) that loads
// the addon; a call that finds it busy (another environment is multiplying) runs single-threaded.
// The pool starts when a kernel first needs it (loading the addon for spawnFiles or gridSums
// starts no thread), sized by setThreads or else by defaultThreads().
struct Shared {
  std::mutex configMutex;  // guards the settings below; the pool is replaced under both mutexes
  std::mutex runMutex;     // held while a multiply uses the pool
  std::unique_ptr<rpv::ThreadPool> pool;
  int threads = 0;  // 0: not chosen yet (defaultThreads() when first asked)
  rpv::Isa detected = rpv::Isa::kScalar;
  rpv::Isa active = rpv::Isa::kScalar;
  int environments = 0;
};

Shared& shared() {
  static Shared* s = new Shared();  // never destroyed: worker threads must not outlive it
  return *s;
}

int clampThreads(double v) {
  if (!std::isfinite(v) || v < 1) return 1;
  return v > 256 ? 256 : static_cast<int>(v);
}

// The CPUs this process may use: its affinity mask (what os.availableParallelism() counts),
// capped by a cgroup v2 CPU quota ("quota period" in /sys/fs/cgroup/cpu.max), so a container
// limited to 2 CPUs on a 64-core host starts 2 threads, not 64. The same rule as defaultThreads()
// in matmul.ts: change both.
int defaultThreads() {
  unsigned cpus = std::thread::hardware_concurrency();
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) cpus = static_cast<unsigned>(CPU_COUNT(&set));
#endif
  double limit = cpus > 0 ? cpus : 1;
  std::ifstream max("/sys/fs/cgroup/cpu.max");
  std::string quota;
  double period = 0;
  if (max >> quota >> period && quota != "max" && period > 0) {
    char* end = nullptr;
    const double q = std::strtod(quota.c_str(), &end);
    const double quotaCpus = std::ceil(q / period);
    if (end && *end == '\0' && std::isfinite(quotaCpus) && quotaCpus >= 1 && quotaCpus < limit) limit = quotaCpus;
  }
  return clampThreads(limit);
}

// The pool's size, choosing the default on first use; configMutex held.
int threadsLocked(Shared& s) {
  if (s.threads == 0) s.threads = defaultThreads();
  return s.threads;
}

// The pool for a call, or null when another environment is using it; starts it on first use.
struct PoolLease {
  rpv::Isa isa = rpv::Isa::kScalar;
  std::unique_lock<std::mutex> run;
  rpv::ThreadPool* pool = nullptr;
};

PoolLease leasePool() {
  Shared& s = shared();
  PoolLease lease;
  std::lock_guard<std::mutex> config(s.configMutex);
  lease.isa = s.active;
  lease.run = std::unique_lock<std::mutex>(s.runMutex, std::try_to_lock);
  if (lease.run.owns_lock()) {
    if (!s.pool) s.pool.reset(new rpv::ThreadPool(threadsLocked(s)));
    lease.pool = s.pool.get();
  }
  return lease;
}

napi_value throwError(napi_env env, const std::string& message, bool typeError = false) {
  if (typeError) {
    napi_throw_type_error(env, "ERR_RPV_MATMUL", message.c_str());
  } else {
    napi_throw_error(env, "ERR_RPV_MATMUL", message.c_str());
  }
  return nullptr;
}

#define NAPI_OK(call)                                   \
  do {                                                  \
    if ((call) != napi_ok) return throwError(env, "rpv matmul: N-API call failed: " #call); \
  } while (0)

struct FloatView {
  float* data = nullptr;
  size_t length = 0;
};

bool isNullish(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return true;
  return t == napi_undefined || t == napi_null;
}

bool getFloat32(napi_env env, napi_value v, FloatView* out) {
  bool isTyped = false;
  if (napi_is_typedarray(env, v, &isTyped) != napi_ok || !isTyped) return false;
  napi_typedarray_type type;
  size_t length;
  void* data;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok) {
    return false;
  }
  if (type != napi_float32_array) return false;
  out->data = static_cast<float*>(data);
  out->length = length;
  return true;
}

bool isCount(double v) { return std::isfinite(v) && v >= 0 && v == std::floor(v) && v < 9e15; }

// Largest element index a strided [batch, rows, cols] access touches (rows, cols > 0).
double lastIndex(double offset, double batch, double batchStride, double rows, double rowStride,
                 double cols, double colStride) {
  return offset + (batch - 1) * batchStride + (rows - 1) * rowStride + (cols - 1) * colStride;
}

napi_value Gemm(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 4) return throwError(env, "rpv matmul: gemm(a, b, c, params[, bias, alpha]) needs at least 4 arguments", true);
  FloatView a, b, c, bias, alpha;
  if (!getFloat32(env, argv[0], &a)) return throwError(env, "rpv matmul: gemm: a must be a Float32Array", true);
  if (!getFloat32(env, argv[1], &b)) return throwError(env, "rpv matmul: gemm: b must be a Float32Array", true);
  if (!getFloat32(env, argv[2], &c)) return throwError(env, "rpv matmul: gemm: c must be a Float32Array", true);
  bool isTyped = false;
  napi_typedarray_type type;
  size_t plen = 0;
  void* pdata = nullptr;
  if (napi_is_typedarray(env, argv[3], &isTyped) != napi_ok || !isTyped ||
      napi_get_typedarray_info(env, argv[3], &type, &plen, &pdata, nullptr, nullptr) != napi_ok ||
      type != napi_float64_array || plen < kParamCount) {
    return throwError(env, "rpv matmul: gemm: params must be a Float64Array of " + std::to_string(kParamCount) + " numbers", true);
  }
  const double* p = static_cast<const double*>(pdata);
  const bool hasBias = argc > 4 && !isNullish(env, argv[4]);
  const bool hasAlpha = argc > 5 && !isNullish(env, argv[5]);
  if (hasBias && !getFloat32(env, argv[4], &bias)) return throwError(env, "rpv matmul: gemm: bias must be a Float32Array or null", true);
  if (hasAlpha && !getFloat32(env, argv[5], &alpha)) return throwError(env, "rpv matmul: gemm: alpha must be a Float32Array or null", true);

  for (int i = 0; i < kParamCount; ++i) {
    if (i == kLeakyAlpha) {
      if (!std::isfinite(p[i])) return throwError(env, "rpv matmul: gemm: leaky relu alpha must be finite", true);
      continue;
    }
    if (!isCount(p[i])) {
      return throwError(env, "rpv matmul: gemm: params[" + std::to_string(i) + "] must be a non-negative integer, found " + std::to_string(p[i]), true);
    }
  }
  const double batch = p[kBatch], m = p[kM], n = p[kN], k = p[kK];
  const bool transA = p[kTransA] != 0, transB = p[kTransB] != 0;
  const int act = static_cast<int>(p[kActivation]);
  if (act > static_cast<int>(rpv::Activation::kElu)) return throwError(env, "rpv matmul: gemm: unknown activation code " + std::to_string(act), true);
  if (act == static_cast<int>(rpv::Activation::kPrelu) && !hasAlpha) return throwError(env, "rpv matmul: gemm: prelu needs the alpha array", true);

  if (batch > 0 && m > 0 && n > 0) {
    // C [batch, m, n] through ldc.
    if (lastIndex(p[kCOffset], batch, p[kCStride], m, p[kLdc], n, 1) >= c.length) {
      return throwError(env, "rpv matmul: gemm: output of " + std::to_string(c.length) + " floats is too small for the strides given");
    }
    if (k > 0) {
      const double aLast = transA ? lastIndex(p[kAOffset], batch, p[kAStride], k, p[kLda], m, 1)
                                  : lastIndex(p[kAOffset], batch, p[kAStride], m, p[kLda], k, 1);
      if (aLast >= a.length) return throwError(env, "rpv matmul: gemm: a of " + std::to_string(a.length) + " floats is too small for the shape and strides given");
      const double bLast = transB ? lastIndex(p[kBOffset], batch, p[kBStride], n, p[kLdb], k, 1)
                                  : lastIndex(p[kBOffset], batch, p[kBStride], k, p[kLdb], n, 1);
      if (bLast >= b.length) return throwError(env, "rpv matmul: gemm: b of " + std::to_string(b.length) + " floats is too small for the shape and strides given");
    }
    if (hasBias && lastIndex(p[kBiasOffset], batch, p[kBiasStride0], m, p[kBiasStride1], n, p[kBiasStride2]) >= bias.length) {
      return throwError(env, "rpv matmul: gemm: bias of " + std::to_string(bias.length) + " floats is too small for the strides given");
    }
    if (hasAlpha && lastIndex(p[kAlphaOffset], batch, p[kAlphaStride0], m, p[kAlphaStride1], n, p[kAlphaStride2]) >= alpha.length) {
      return throwError(env, "rpv matmul: gemm: alpha of " + std::to_string(alpha.length) + " floats is too small for the strides given");
    }
  }

  rpv::GemmArgs g;
  g.batch = static_cast<int64_t>(batch);
  g.m = static_cast<int64_t>(m);
  g.n = static_cast<int64_t>(n);
  g.k = static_cast<int64_t>(k);
  g.transA = transA;
  g.transB = transB;
  g.a = a.data + static_cast<int64_t>(p[kAOffset]);
  g.lda = static_cast<int64_t>(p[kLda]);
  g.strideA = static_cast<int64_t>(p[kAStride]);
  g.b = b.data + static_cast<int64_t>(p[kBOffset]);
  g.ldb = static_cast<int64_t>(p[kLdb]);
  g.strideB = static_cast<int64_t>(p[kBStride]);
  g.c = c.data + static_cast<int64_t>(p[kCOffset]);
  g.ldc = static_cast<int64_t>(p[kLdc]);
  g.strideC = static_cast<int64_t>(p[kCStride]);
  g.activation = static_cast<rpv::Activation>(act);
  g.leakyAlpha = static_cast<float>(p[kLeakyAlpha]);
  if (hasBias) {
    g.bias = bias.data + static_cast<int64_t>(p[kBiasOffset]);
    g.biasStride[0] = static_cast<int64_t>(p[kBiasStride0]);
    g.biasStride[1] = static_cast<int64_t>(p[kBiasStride1]);
    g.biasStride[2] = static_cast<int64_t>(p[kBiasStride2]);
  }
  if (hasAlpha) {
    g.alpha = alpha.data + static_cast<int64_t>(p[kAlphaOffset]);
    g.alphaStride[0] = static_cast<int64_t>(p[kAlphaStride0]);
    g.alphaStride[1] = static_cast<int64_t>(p[kAlphaStride1]);
    g.alphaStride[2] = static_cast<int64_t>(p[kAlphaStride2]);
  }

  PoolLease lease = leasePool();
  rpv::sgemm(g, lease.isa, lease.pool);
  return nullptr;
}

// gridSums(rgb: Uint8Array, size, cells, out: Float64Array): grid-v1 statistics (grid.cc).
napi_value GridSums(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 4) return throwError(env, "rpv grid: gridSums(rgb, size, cells, out) needs 4 arguments", true);
  bool isTyped = false;
  napi_typedarray_type type;
  size_t rgbLen = 0, outLen = 0;
  void* rgbData = nullptr;
  void* outData = nullptr;
  if (napi_is_typedarray(env, argv[0], &isTyped) != napi_ok || !isTyped ||
      napi_get_typedarray_info(env, argv[0], &type, &rgbLen, &rgbData, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array) {
    return throwError(env, "rpv grid: gridSums: rgb must be a Uint8Array", true);
  }
  isTyped = false;
  if (napi_is_typedarray(env, argv[3], &isTyped) != napi_ok || !isTyped ||
      napi_get_typedarray_info(env, argv[3], &type, &outLen, &outData, nullptr, nullptr) != napi_ok ||
      type != napi_float64_array) {
    return throwError(env, "rpv grid: gridSums: out must be a Float64Array", true);
  }
  double size = 0, cells = 0;
  if (napi_get_value_double(env, argv[1], &size) != napi_ok || napi_get_value_double(env, argv[2], &cells) != napi_ok ||
      !(size >= 1 && size <= 4096 && size == std::floor(size)) || !(cells >= 1 && cells <= 32 && cells == std::floor(cells))) {
    return throwError(env, "rpv grid: gridSums: size must be an integer from 1 to 4096 and cells from 1 to 32", true);
  }
  const size_t s = static_cast<size_t>(size), g = static_cast<size_t>(cells);
  if (rgbLen != s * s * 3) return throwError(env, "rpv grid: gridSums: rgb must hold size * size * 3 bytes", true);
  if (outLen < 7 * g * g + 9) return throwError(env, "rpv grid: gridSums: out must hold 7 * cells^2 + 9 numbers", true);
  rpv::gridSums(static_cast<const uint8_t*>(rgbData), static_cast<int>(s), static_cast<int>(g), static_cast<double*>(outData));
  return nullptr;
}

napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  double v = 0;
  if (argc < 1 || napi_get_value_double(env, argv[0], &v) != napi_ok || !std::isfinite(v) || v < 1 || v != std::floor(v)) {
    return throwError(env, "rpv matmul: setThreads(n): n must be a positive integer", true);
  }
  Shared& s = shared();
  const int threads = clampThreads(v);
  {
    std::lock_guard<std::mutex> config(s.configMutex);
    std::lock_guard<std::mutex> run(s.runMutex);
    if (threads != s.threads || !s.pool) {
      s.pool.reset();
      // Chosen before the start, which may throw (a thread that cannot start): the next kernel
      // call then tries this size again.
      s.threads = threads;
      s.pool.reset(new rpv::ThreadPool(threads));
    }
  }
  napi_value out;
  NAPI_OK(napi_create_int32(env, threads, &out));
  return out;
}

napi_value Threads(napi_env env, napi_callback_info) {
  Shared& s = shared();
  int threads;
  {
    std::lock_guard<std::mutex> lock(s.configMutex);
    threads = threadsLocked(s);
  }
  napi_value out;
  NAPI_OK(napi_create_int32(env, threads, &out));
  return out;
}

napi_value IsaString(napi_env env, rpv::Isa isa) {
  napi_value out;
  NAPI_OK(napi_create_string_utf8(env, rpv::isaName(isa), NAPI_AUTO_LENGTH, &out));
  return out;
}

napi_value GetIsa(napi_env env, napi_callback_info) {
  Shared& s = shared();
  std::lock_guard<std::mutex> lock(s.configMutex);
  return IsaString(env, s.active);
}

napi_value DetectedIsa(napi_env env, napi_callback_info) {
  Shared& s = shared();
  std::lock_guard<std::mutex> lock(s.configMutex);
  return IsaString(env, s.detected);
}

napi_value SetIsa(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  char name[32] = {0};
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof(name), &len) != napi_ok) {
    return throwError(env, "rpv matmul: setIsa(name): name must be 'auto', 'scalar' or 'avx2-fma'", true);
  }
  Shared& s = shared();
  std::lock_guard<std::mutex> lock(s.configMutex);
  if (std::strcmp(name, "auto") == 0) {
    s.active = s.detected;
  } else if (std::strcmp(name, "scalar") == 0) {
    s.active = rpv::Isa::kScalar;
  } else if (std::strcmp(name, "avx2-fma") == 0) {
    if (s.detected != rpv::Isa::kAvx2Fma) {
      return throwError(env, "rpv matmul: setIsa: this CPU does not support avx2-fma (detected " + std::string(rpv::isaName(s.detected)) + ")");
    }
    s.active = rpv::Isa::kAvx2Fma;
  } else {
    return throwError(env, "rpv matmul: setIsa: unknown instruction set '" + std::string(name) + "'; expected 'auto', 'scalar' or 'avx2-fma'", true);
  }
  return IsaString(env, s.active);
}

napi_value ScratchBytes(napi_env env, napi_callback_info) {
  napi_value out;
  NAPI_OK(napi_create_double(env, static_cast<double>(rpv::scratchHeldBytes.load()), &out));
  return out;
}

// setScratchLimit(bytes | null): scratch requests above `bytes` fail as a failed allocation would
// (tests of the out-of-memory path); null lifts the limit.
napi_value SetScratchLimit(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 1 || isNullish(env, argv[0])) {
    rpv::scratchLimitBytes = std::numeric_limits<size_t>::max();
    return nullptr;
  }
  double v = -1;
  if (napi_get_value_double(env, argv[0], &v) != napi_ok || !isCount(v)) {
    return throwError(env, "rpv native: setScratchLimit(bytes): bytes must be a non-negative integer or null", true);
  }
  rpv::scratchLimitBytes = static_cast<size_t>(v);
  return nullptr;
}

void Cleanup(void*) {
  Shared& s = shared();
  std::lock_guard<std::mutex> config(s.configMutex);
  if (--s.environments == 0) {
    // Join the workers while the process is still intact (a joinable std::thread destroyed at
    // exit would abort).
    std::lock_guard<std::mutex> run(s.runMutex);
    s.pool.reset();
  }
}

}  // namespace

namespace rpv {
void withPool(const std::function<void(Isa, ThreadPool*)>& fn) {
  PoolLease lease = leasePool();
  fn(lease.isa, lease.pool);
}
}  // namespace rpv

NAPI_MODULE_INIT() {
  Shared& s = shared();
  {
    std::lock_guard<std::mutex> lock(s.configMutex);
    if (s.environments++ == 0) {
      s.detected = rpv::detectIsa();
      s.active = s.detected;
    }
  }
  napi_add_env_cleanup_hook(env, Cleanup, nullptr);

  if (!rpv::exportFunctions(env, exports,
                            {{"gemm", Gemm},
                             {"setThreads", SetThreads},
                             {"threads", Threads},
                             {"isa", GetIsa},
                             {"setIsa", SetIsa},
                             {"detectedIsa", DetectedIsa},
                             {"gridSums", GridSums},
                             {"scratchBytes", ScratchBytes},
                             {"setScratchLimit", SetScratchLimit}})) {
    return nullptr;
  }
  if (!rpv::registerFrozen(env, exports)) return nullptr;
  if (!rpv::registerPointwise(env, exports)) return nullptr;
  if (!rpv::registerAttention(env, exports)) return nullptr;
  if (!rpv::registerEncoder(env, exports)) return nullptr;
  if (rpv::spawnSupported()) rpv::exportFunctions(env, exports, {{"spawnFiles", rpv::SpawnFiles}});
  napi_value count;
  if (napi_create_int32(env, kParamCount, &count) == napi_ok) {
    napi_set_named_property(env, exports, "paramCount", count);
  }
  return exports;
}
