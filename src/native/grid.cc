// grid-v1 frame statistics (src/features/grid.ts, spec in src/features/README.md): the integer
// sums the encoder's features are formed from, computed exactly. The JS fallback in grid.ts
// computes the same sums in doubles, exact below 2^53, so both paths give the same features.
// Layout of `out` (doubles), G = cells:
//   per cell, row-major: sum R, sum G, sum B, sum L, sum L^2, sum |dL/dx|, sum |dL/dy|
//     (L = 299 R + 587 G + 114 B = 1000 x luma; differences between neighbours inside the cell)
//   then the foreground: count, sum x, sum y, sum R, sum G, sum B
//   then the median colour: mR, mG, mB
//
// Two passes: luma and histograms (scalar: the histogram increments are the floor), then per cell
// and row, loads only, branch-free loops the compiler vectorises where it can.
#include "grid.h"

#include <cstdlib>
#include <initializer_list>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace rpv {

namespace {

int medianOf(const uint32_t* hist, int64_t n) {
  int64_t acc = 0;
  for (int v = 0; v < 256; v++) {
    acc += hist[v];
    if (acc * 2 >= n) return v;
  }
  return 255;
}

// Sums over one row segment of interleaved RGB: the channel sums and the foreground (pixels
// whose |R-mR|+|G-mG|+|B-mB| exceeds the threshold: count, sum of x, sums of R, G, B). Every
// field fits 32 bits for a row of at most 4096 pixels.
struct RgbRow {
  int32_t r = 0, g = 0, b = 0, fgN = 0, fgX = 0, fgR = 0, fgG = 0, fgB = 0;
};

void rgbRowScalar(const uint8_t* __restrict px, int x0, int w, int mr, int mg, int mb, RgbRow& a) {
  for (int i = 0; i < w; i++) {
    const int32_t r = px[3 * i], g = px[3 * i + 1], b = px[3 * i + 2];
    a.r += r;
    a.g += g;
    a.b += b;
    const int32_t d = std::abs(r - mr) + std::abs(g - mg) + std::abs(b - mb);
    const int32_t m = d > kGridForegroundThreshold ? -1 : 0;
    a.fgN -= m;
    a.fgX += m & (x0 + i);
    a.fgR += m & r;
    a.fgG += m & g;
    a.fgB += m & b;
  }
}

using RgbRowFn = void (*)(const uint8_t*, int, int, int, int, int, RgbRow&);

#if defined(__x86_64__) || defined(__i386__)
// 16 pixels per step: the 48 bytes split into R, G, B with pshufb, byte sums with psadbw, the
// distance to the median in 16-bit lanes; the last w % 16 pixels go through rgbRowScalar.
__attribute__((target("ssse3"))) void rgbRowSsse3(const uint8_t* __restrict px, int x0, int w, int mr, int mg, int mb, RgbRow& a) {
  const int blocks = w / 16;
  if (blocks > 0) {
    const __m128i zero = _mm_setzero_si128();
    const __m128i ones = _mm_set1_epi16(1);
    const __m128i thr = _mm_set1_epi16(kGridForegroundThreshold);
    const __m128i vmr = _mm_set1_epi8(static_cast<char>(mr)), vmg = _mm_set1_epi8(static_cast<char>(mg)), vmb = _mm_set1_epi8(static_cast<char>(mb));
    // Byte k of channel c sits at 3k + c of the 48; each mask picks those of one 16-byte load.
    alignas(16) int8_t masks[3][3][16];
    for (int c = 0; c < 3; c++) {
      for (int part = 0; part < 3; part++) {
        for (int k = 0; k < 16; k++) {
          const int src = 3 * k + c - 16 * part;
          masks[c][part][k] = src >= 0 && src < 16 ? static_cast<int8_t>(src) : static_cast<int8_t>(-128);
        }
      }
    }
    __m128i sad = zero, sadG = zero, sadB = zero;
    __m128i cnt = zero, sx = zero, sr = zero, sg = zero, sb = zero;  // 32-bit lanes
    const __m128i lane = _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7);
    for (int blk = 0; blk < blocks; blk++) {
      const uint8_t* p = px + 48 * blk;
      const __m128i a0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      const __m128i a1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
      const __m128i a2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32));
      __m128i ch[3];
      for (int c = 0; c < 3; c++) {
        ch[c] = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a0, _mm_load_si128(reinterpret_cast<const __m128i*>(masks[c][0]))),
                                          _mm_shuffle_epi8(a1, _mm_load_si128(reinterpret_cast<const __m128i*>(masks[c][1])))),
                             _mm_shuffle_epi8(a2, _mm_load_si128(reinterpret_cast<const __m128i*>(masks[c][2]))));
      }
      sad = _mm_add_epi64(sad, _mm_sad_epu8(ch[0], zero));
      sadG = _mm_add_epi64(sadG, _mm_sad_epu8(ch[1], zero));
      sadB = _mm_add_epi64(sadB, _mm_sad_epu8(ch[2], zero));
      const __m128i dr = _mm_or_si128(_mm_subs_epu8(ch[0], vmr), _mm_subs_epu8(vmr, ch[0]));
      const __m128i dg = _mm_or_si128(_mm_subs_epu8(ch[1], vmg), _mm_subs_epu8(vmg, ch[1]));
      const __m128i db = _mm_or_si128(_mm_subs_epu8(ch[2], vmb), _mm_subs_epu8(vmb, ch[2]));
      const __m128i xbase = _mm_set1_epi16(static_cast<int16_t>(x0 + 16 * blk));
      for (int half = 0; half < 2; half++) {
        const auto widen = [&](__m128i v) { return half ? _mm_unpackhi_epi8(v, zero) : _mm_unpacklo_epi8(v, zero); };
        const __m128i d = _mm_add_epi16(_mm_add_epi16(widen(dr), widen(dg)), widen(db));
        const __m128i m = _mm_cmpgt_epi16(d, thr);  // all ones where foreground
        const __m128i x = _mm_add_epi16(xbase, _mm_add_epi16(lane, _mm_set1_epi16(static_cast<int16_t>(8 * half))));
        cnt = _mm_add_epi32(cnt, _mm_madd_epi16(_mm_and_si128(m, ones), ones));
        sx = _mm_add_epi32(sx, _mm_madd_epi16(_mm_and_si128(m, x), ones));
        sr = _mm_add_epi32(sr, _mm_madd_epi16(_mm_and_si128(m, widen(ch[0])), ones));
        sg = _mm_add_epi32(sg, _mm_madd_epi16(_mm_and_si128(m, widen(ch[1])), ones));
        sb = _mm_add_epi32(sb, _mm_madd_epi16(_mm_and_si128(m, widen(ch[2])), ones));
      }
    }
    const auto sum64 = [](__m128i v) { return static_cast<int32_t>(_mm_cvtsi128_si64(v) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(v, v))); };
    const auto sum32 = [](__m128i v) {
      alignas(16) int32_t t[4];
      _mm_store_si128(reinterpret_cast<__m128i*>(t), v);
      return t[0] + t[1] + t[2] + t[3];
    };
    a.r += sum64(sad);
    a.g += sum64(sadG);
    a.b += sum64(sadB);
    a.fgN += sum32(cnt);
    a.fgX += sum32(sx);
    a.fgR += sum32(sr);
    a.fgG += sum32(sg);
    a.fgB += sum32(sb);
  }
  rgbRowScalar(px + 48 * blocks, x0 + 16 * blocks, w - 16 * blocks, mr, mg, mb, a);
}
#endif

/** Writes `values` to `out` as doubles (exact: every sum is below 2^53 for frames rpv accepts). */
void store(double* out, std::initializer_list<int64_t> values) {
  for (const int64_t v : values) *out++ = static_cast<double>(v);
}

RgbRowFn pickRgbRow() {
#if defined(__x86_64__) || defined(__i386__)
  if (std::getenv("RPV_GRID_SCALAR") == nullptr && __builtin_cpu_supports("ssse3")) return rgbRowSsse3;
#endif
  return rgbRowScalar;
}

}  // namespace

void gridSums(const uint8_t* __restrict rgb, int size, int cells, double* __restrict out) {
  const int64_t n = static_cast<int64_t>(size) * size;
  thread_local std::vector<int32_t> luma;
  if (luma.size() != static_cast<size_t>(n)) luma.resize(static_cast<size_t>(n));
  int32_t* __restrict Y = luma.data();
  // Pass 1 (scalar): luma and the channel histograms. Four interleaved histograms: runs of equal
  // values (a flat background) would otherwise chain every increment on the one before it.
  uint32_t hist[4][768] = {{0}};
  {
    const uint8_t* __restrict px = rgb;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4, px += 12) {
      for (int k = 0; k < 4; k++) {
        const uint32_t r = px[3 * k], g = px[3 * k + 1], b = px[3 * k + 2];
        Y[i + k] = static_cast<int32_t>(299 * r + 587 * g + 114 * b);
        hist[k][r]++;
        hist[k][256 + g]++;
        hist[k][512 + b]++;
      }
    }
    for (; i < n; i++, px += 3) {
      Y[i] = 299 * px[0] + 587 * px[1] + 114 * px[2];
      hist[0][px[0]]++;
      hist[0][256 + px[1]]++;
      hist[0][512 + px[2]]++;
    }
  }
  for (int v = 0; v < 768; v++) hist[0][v] += hist[1][v] + hist[2][v] + hist[3][v];
  const int mr = medianOf(hist[0], n), mg = medianOf(hist[0] + 256, n), mb = medianOf(hist[0] + 512, n);

  // Pass 2: per cell and row, loads only. Row partial sums fit 32 bits (rows of <= 4096 pixels).
  static const RgbRowFn rgbRow = pickRgbRow();
  const int G = cells;
  const bool tiled = size >= G;
  int64_t fgN = 0, fgX = 0, fgY = 0, fgR = 0, fgG = 0, fgB = 0;
  const auto addForeground = [&](const RgbRow& a, int64_t y) {
    fgN += a.fgN;
    fgX += a.fgX;
    fgY += static_cast<int64_t>(a.fgN) * y;
    fgR += a.fgR;
    fgG += a.fgG;
    fgB += a.fgB;
  };
  for (int cy = 0; cy < G; cy++) {
    const int y0 = static_cast<int>((static_cast<int64_t>(cy) * size) / G);
    int y1 = static_cast<int>((static_cast<int64_t>(cy + 1) * size) / G);
    if (y1 < y0 + 1) y1 = y0 + 1;
    if (y1 > size) y1 = size;
    for (int cx = 0; cx < G; cx++) {
      const int x0 = static_cast<int>((static_cast<int64_t>(cx) * size) / G);
      int x1 = static_cast<int>((static_cast<int64_t>(cx + 1) * size) / G);
      if (x1 < x0 + 1) x1 = x0 + 1;
      if (x1 > size) x1 = size;
      int64_t sr = 0, sg = 0, sb = 0, sl = 0, ex = 0, ey = 0;
      uint64_t sl2 = 0;
      for (int y = y0; y < y1; y++) {
        const int64_t row = static_cast<int64_t>(y) * size;
        RgbRow a;
        rgbRow(rgb + 3 * (row + x0), x0, x1 - x0, mr, mg, mb, a);
        if (tiled) addForeground(a, y);
        const int32_t* __restrict l = Y + row;
        int32_t rl = 0, rex = 0, rey = 0;
        uint64_t rl2 = 0;
        for (int x = x0; x < x1; x++) {
          rl += l[x];
          const uint64_t lx = static_cast<uint32_t>(l[x]);
          rl2 += lx * lx;
        }
        for (int x = x0; x + 1 < x1; x++) rex += std::abs(l[x + 1] - l[x]);
        if (y + 1 < y1) {
          for (int x = x0; x < x1; x++) rey += std::abs(l[x + size] - l[x]);
        }
        sr += a.r;
        sg += a.g;
        sb += a.b;
        sl += rl;
        sl2 += rl2;
        ex += rex;
        ey += rey;
      }
      store(out + 7 * (cy * G + cx), {sr, sg, sb, sl, static_cast<int64_t>(sl2), ex, ey});
    }
  }
  if (!tiled) {
    for (int y = 0; y < size; y++) {
      RgbRow a;
      rgbRow(rgb + 3 * static_cast<int64_t>(y) * size, 0, size, mr, mg, mb, a);
      addForeground(a, y);
    }
  }
  store(out + 7 * G * G, {fgN, fgX, fgY, fgR, fgG, fgB, mr, mg, mb});
}

}  // namespace rpv
