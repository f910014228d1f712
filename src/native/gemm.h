// Single-precision batched GEMM with a fused epilogue (bias + activation):
//   C[b] = act(op(A[b]) * op(B[b]) + bias)
// op(X) is X or X^T, read through strided packing (no explicit transpose is ever made).
// Layout and blocking follow the BLIS/GotoBLAS scheme: KC x NC panels of B and MC x KC blocks of A
// are packed into contiguous micro-panels, then an MR x NR register-blocked microkernel runs.
#pragma once

#include <cstdint>

namespace rpv {

class ThreadPool;

// Codes match tfjs-backend-wasm's FusableActivation enum.
enum class Activation : int {
  kLinear = 0,
  kRelu = 1,
  kRelu6 = 2,
  kPrelu = 3,
  kLeakyRelu = 4,
  kSigmoid = 5,
  kElu = 6,
};

enum class Isa : int { kScalar = 0, kAvx2Fma = 1 };

// Element type of the B operand. A and C are always float32; B may also be half or bfloat16
// (frozen weights used as stored on disk), converted to float32 while its panels are packed.
enum class DType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

inline int64_t dtypeBytes(DType t) { return t == DType::kF32 ? 4 : 2; }

struct GemmArgs {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool transA = false, transB = false;
  // A[b] starts at a + b * strideA (0 broadcasts one matrix over the batch); lda is the distance
  // between consecutive stored rows: stored [M, K] when !transA, [K, M] when transA.
  const float* a = nullptr;
  int64_t lda = 0, strideA = 0;
  const void* b = nullptr;  // stored [K, N] when !transB, [N, K] when transB, of type bType.
  DType bType = DType::kF32;
  int64_t ldb = 0, strideB = 0;  // in elements of bType
  float* c = nullptr;  // [M, N] per batch, row stride ldc.
  int64_t ldc = 0, strideC = 0;
  bool accumulate = false;  // C += op(A) op(B) instead of C = (then the epilogue, if any)
  // Epilogue: bias[b*biasStride[0] + i*biasStride[1] + j*biasStride[2]] is added (broadcast by
  // zero strides), then the activation; prelu reads its slope from `alpha` the same way.
  const float* bias = nullptr;
  int64_t biasStride[3] = {0, 0, 0};
  Activation activation = Activation::kLinear;
  float leakyAlpha = 0.2f;
  const float* alpha = nullptr;
  int64_t alphaStride[3] = {0, 0, 0};
};

// Best instruction set this CPU and OS support (AVX2 + FMA on x86-64, otherwise scalar).
Isa detectIsa();
const char* isaName(Isa isa);

// Computes the GEMM with the given kernel; pool may be null (single thread).
void sgemm(const GemmArgs& args, Isa isa, ThreadPool* pool);

}  // namespace rpv
