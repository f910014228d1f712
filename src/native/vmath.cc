#include "vmath.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#define RPV_VMATH_X86 1
#include <immintrin.h>
#endif

namespace rpv {

namespace {

float sigmoidScalar(float g) { return 1.0f / (1.0f + std::exp(-g)); }

#ifdef RPV_VMATH_X86

// e^x in 8 lanes. x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (ln2 split in a part
// exact in float and a small correction, so r keeps its bits); e^r by its Taylor polynomial to
// r^7 (truncation under 1e-8 relative); then times 2^(n-1) (written into the exponent field) and
// 2, so every n from -125 to 128 gives a normal float. Below -86.5 the result is 0 (e^-86.5 is
// 2.7e-38), above 88.7 it is +inf (float overflows at 88.72).
__attribute__((target("avx2,fma"))) inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-86.5f), hi = _mm256_set1_ps(88.7f);
  const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
  const __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(126)), 23);
  const __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), _mm256_set1_ps(2.0f));
  return _mm256_blendv_ps(_mm256_and_ps(y, keep), _mm256_set1_ps(INFINITY), over);
}

__attribute__((target("avx2,fma"))) inline __m256 sigmoid8(__m256 g) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
}

// Loads the last n % 8 elements into a zero-padded register (and stores them back), so tails go
// through the same arithmetic as the body.
struct Tail {
  float buf[8];
  int64_t count;
  __attribute__((target("avx2,fma"))) __m256 load(const float* src) {
    std::memset(buf, 0, sizeof buf);
    std::memcpy(buf, src, static_cast<size_t>(count) * sizeof(float));
    return _mm256_loadu_ps(buf);
  }
  __attribute__((target("avx2,fma"))) void store(float* dst, __m256 v) {
    _mm256_storeu_ps(buf, v);
    std::memcpy(dst, buf, static_cast<size_t>(count) * sizeof(float));
  }
};

__attribute__((target("avx2,fma"))) float maxOfAvx2(const float* x, int64_t n) {
  __m256 m = _mm256_set1_ps(x[0]);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + j));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float best = lanes[0];
  for (int i = 1; i < 8; ++i) best = std::max(best, lanes[i]);
  for (; j < n; ++j) best = std::max(best, x[j]);
  return best;
}

// acc0 += the low 4 lanes of e, acc1 += the high 4, in double.
__attribute__((target("avx2,fma"))) inline void addWidened(__m256 e, __m256d* acc0, __m256d* acc1) {
  *acc0 = _mm256_add_pd(*acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
  *acc1 = _mm256_add_pd(*acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
}

__attribute__((target("avx2,fma"))) double expShiftSumAvx2(float* x, int64_t n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), s));
    _mm256_storeu_ps(x + j, e);
    addWidened(e, &acc0, &acc1);
  }
  if (j < n) {
    Tail t{{}, n - j};
    // Padding lanes hold -inf - shift, whose exponential is 0, so they add nothing.
    __m256 v = t.load(x + j);
    const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v, _mm256_cmp_ps(lane, _mm256_set1_ps(static_cast<float>(t.count)), _CMP_LT_OQ));
    const __m256 e = exp8(_mm256_sub_ps(v, s));
    t.store(x + j, e);
    addWidened(e, &acc0, &acc1);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(acc0, acc1));
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

__attribute__((target("avx2,fma"))) inline __m256 swiglu8(__m256 g, __m256 u) {
  return _mm256_mul_ps(_mm256_mul_ps(g, sigmoid8(g)), u);
}

__attribute__((target("avx2,fma"))) void swigluForwardAvx2(const float* g, const float* u, float* out, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(out + j, swiglu8(_mm256_loadu_ps(g + j), _mm256_loadu_ps(u + j)));
  if (j < n) {
    Tail tg{{}, n - j}, tu{{}, n - j}, to{{}, n - j};
    to.store(out + j, swiglu8(tg.load(g + j), tu.load(u + j)));
  }
}

__attribute__((target("avx2,fma"))) inline void swigluGrad8(__m256 g, __m256 u, __m256 dy, __m256* dg, __m256* du) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 s = sigmoid8(g);
  const __m256 silu = _mm256_mul_ps(g, s);
  *dg = _mm256_mul_ps(_mm256_mul_ps(dy, u), _mm256_mul_ps(s, _mm256_add_ps(_mm256_sub_ps(g, silu), one)));
  *du = _mm256_mul_ps(dy, silu);
}

__attribute__((target("avx2,fma"))) void swigluBackwardAvx2(const float* g, const float* u, const float* dy, float* dg, float* du, int64_t n) {
  int64_t j = 0;
  __m256 a, b;
  for (; j + 8 <= n; j += 8) {
    swigluGrad8(_mm256_loadu_ps(g + j), _mm256_loadu_ps(u + j), _mm256_loadu_ps(dy + j), &a, &b);
    _mm256_storeu_ps(dg + j, a);
    _mm256_storeu_ps(du + j, b);
  }
  if (j < n) {
    Tail tg{{}, n - j}, tu{{}, n - j}, ty{{}, n - j}, t{{}, n - j};
    swigluGrad8(tg.load(g + j), tu.load(u + j), ty.load(dy + j), &a, &b);
    t.store(dg + j, a);
    t.store(du + j, b);
  }
}

#endif  // RPV_VMATH_X86

}  // namespace

float maxOf(const float* x, int64_t n, Isa isa) {
#ifdef RPV_VMATH_X86
  if (isa == Isa::kAvx2Fma) return maxOfAvx2(x, n);
#endif
  (void)isa;
  float best = x[0];
  for (int64_t j = 1; j < n; ++j) best = std::max(best, x[j]);
  return best;
}

double expShiftSum(float* x, int64_t n, float shift, Isa isa) {
#ifdef RPV_VMATH_X86
  if (isa == Isa::kAvx2Fma) return expShiftSumAvx2(x, n, shift);
#endif
  (void)isa;
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const float e = std::exp(x[j] - shift);
    x[j] = e;
    sum += e;
  }
  return sum;
}

void swigluForward(const float* g, const float* u, float* out, int64_t n, Isa isa) {
#ifdef RPV_VMATH_X86
  if (isa == Isa::kAvx2Fma) return swigluForwardAvx2(g, u, out, n);
#endif
  (void)isa;
  for (int64_t j = 0; j < n; ++j) out[j] = g[j] * sigmoidScalar(g[j]) * u[j];
}

void swigluBackward(const float* g, const float* u, const float* dy, float* dg, float* du, int64_t n, Isa isa) {
#ifdef RPV_VMATH_X86
  if (isa == Isa::kAvx2Fma) return swigluBackwardAvx2(g, u, dy, dg, du, n);
#endif
  (void)isa;
  for (int64_t j = 0; j < n; ++j) {
    const float s = sigmoidScalar(g[j]);
    const float silu = g[j] * s;
    dg[j] = dy[j] * u[j] * (s * ((g[j] - silu) + 1.0f));
    du[j] = dy[j] * silu;
  }
}

}  // namespace rpv
