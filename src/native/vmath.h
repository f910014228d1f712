// Vectorised exponentials for the training step's kernels: softmax rows of the chunked
// cross-entropy (xent.cc) and of the fused attention (attention.cc), and SwiGLU (pointwise.cc).
// With Isa::kAvx2Fma, e^x is computed 8 lanes at a time (Cody-Waite range reduction, a degree-7
// polynomial, the exponent set directly: a few float32 ulp from the exact value, tested through
// SwiGLU and the cross-entropy against float64; 0 below e^-86.5, +inf above e^88.7);
// Isa::kScalar uses std::exp. Results depend only on the inputs, never on the thread count.
#pragma once

#include <cstdint>

#include "gemm.h"

namespace rpv {

// Largest element of x[0..n) (n >= 1).
float maxOf(const float* x, int64_t n, Isa isa);

// x[j] = e^(x[j] - shift) for j < n; returns the sum of the new values, accumulated in double.
double expShiftSum(float* x, int64_t n, float shift, Isa isa);

// out = silu(g) * u, silu(g) = g * sigmoid(g); n elements.
void swigluForward(const float* g, const float* u, float* out, int64_t n, Isa isa);

// With s = sigmoid(g): dg = dy * u * s * (1 + g * (1 - s)), du = dy * g * s.
void swigluBackward(const float* g, const float* u, const float* dy, float* dg, float* du, int64_t n, Isa isa);

}  // namespace rpv
