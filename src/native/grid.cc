// grid-v1 frame statistics (src/features/grid.ts, spec in src/features/README.md): the integer
// sums the encoder's features are formed from, computed exactly. The JS fallback in grid.ts
// computes the same sums in doubles, exact below 2^53, so both paths give the same features.
// Layout of `out` (doubles), G = cells:
//   per cell, row-major: sum R, sum G, sum B, sum L, sum L^2, sum |dL/dx|, sum |dL/dy|
//     (L = 299 R + 587 G + 114 B = 1000 x luma; differences between neighbours inside the cell)
//   then the foreground: count, sum x, sum y, sum R, sum G, sum B
//   then the median colour: mR, mG, mB
//
// Written for the compiler's vectoriser: the frame is first split into planes (R, G, B, L), then
// every per-row loop is branch-free over contiguous arrays. Row partial sums fit their types
// (a row of at most 4096 pixels: L sums < 2^31); sums of L^2 are 64-bit integers.
#include "grid.h"

#include <cstdlib>
#include <vector>

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

struct Planes {
  std::vector<uint8_t> r, g, b;
  std::vector<int32_t> l;
  void resize(size_t n) {
    if (l.size() != n) {
      r.resize(n);
      g.resize(n);
      b.resize(n);
      l.resize(n);
    }
  }
};

// Foreground and plain sums of one row segment [x0, x1) of row y.
struct RowSums {
  int64_t r = 0, g = 0, b = 0, l = 0, ex = 0, ey = 0;
  double l2 = 0;
  int64_t fgN = 0, fgX = 0, fgR = 0, fgG = 0, fgB = 0;
};

}  // namespace

void gridSums(const uint8_t* __restrict rgb, int size, int cells, double* __restrict out) {
  const int64_t n = static_cast<int64_t>(size) * size;
  thread_local Planes planes;
  planes.resize(static_cast<size_t>(n));
  uint8_t* __restrict R = planes.r.data();
  uint8_t* __restrict Gp = planes.g.data();
  uint8_t* __restrict B = planes.b.data();
  int32_t* __restrict Y = planes.l.data();
  for (int64_t i = 0; i < n; i++) {
    R[i] = rgb[3 * i];
    Gp[i] = rgb[3 * i + 1];
    B[i] = rgb[3 * i + 2];
  }
  for (int64_t i = 0; i < n; i++) Y[i] = 299 * R[i] + 587 * Gp[i] + 114 * B[i];
  // Four interleaved histograms: runs of equal values (a flat background) would otherwise chain
  // every increment on the one before it.
  uint32_t hist[4][768] = {{0}};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int k = 0; k < 4; k++) {
      hist[k][R[i + k]]++;
      hist[k][256 + Gp[i + k]]++;
      hist[k][512 + B[i + k]]++;
    }
  }
  for (; i < n; i++) {
    hist[0][R[i]]++;
    hist[0][256 + Gp[i]]++;
    hist[0][512 + B[i]]++;
  }
  for (int v = 0; v < 768; v++) hist[0][v] += hist[1][v] + hist[2][v] + hist[3][v];
  const int mr = medianOf(hist[0], n), mg = medianOf(hist[0] + 256, n), mb = medianOf(hist[0] + 512, n);

  const int G = cells;
  const bool tiled = size >= G;
  int64_t fgN = 0, fgX = 0, fgY = 0, fgR = 0, fgG = 0, fgB = 0;
  auto foreground = [&](const uint8_t* r, const uint8_t* g, const uint8_t* b, int x0, int x1, int64_t y) {
    int32_t cn = 0, cx = 0, cr = 0, cg = 0, cb = 0;  // one row: < 2^31
    for (int x = x0; x < x1; x++) {
      const int32_t d = std::abs(r[x] - mr) + std::abs(g[x] - mg) + std::abs(b[x] - mb);
      const int32_t m = -static_cast<int32_t>(d > kGridForegroundThreshold);  // all ones or zero
      cn -= m;
      cx += m & x;
      cr += m & r[x];
      cg += m & g[x];
      cb += m & b[x];
    }
    fgN += cn;
    fgX += cx;
    fgY += static_cast<int64_t>(cn) * y;
    fgR += cr;
    fgG += cg;
    fgB += cb;
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
        const uint8_t* r = R + row;
        const uint8_t* g = Gp + row;
        const uint8_t* b = B + row;
        const int32_t* l = Y + row;
        int32_t rr = 0, rg = 0, rb = 0, rl = 0, rex = 0, rey = 0;
        uint64_t rl2 = 0;
        for (int x = x0; x < x1; x++) {
          rr += r[x];
          rg += g[x];
          rb += b[x];
          rl += l[x];
        }
        for (int x = x0; x < x1; x++) {
          const uint64_t lx = static_cast<uint32_t>(l[x]);
          rl2 += lx * lx;
        }
        for (int x = x0; x + 1 < x1; x++) rex += std::abs(l[x + 1] - l[x]);
        if (y + 1 < y1) {
          for (int x = x0; x < x1; x++) rey += std::abs(l[x + size] - l[x]);
        }
        if (tiled) foreground(r, g, b, x0, x1, y);
        sr += rr;
        sg += rg;
        sb += rb;
        sl += rl;
        sl2 += rl2;
        ex += rex;
        ey += rey;
      }
      double* o = out + 7 * (cy * G + cx);
      o[0] = static_cast<double>(sr);
      o[1] = static_cast<double>(sg);
      o[2] = static_cast<double>(sb);
      o[3] = static_cast<double>(sl);
      o[4] = static_cast<double>(sl2);
      o[5] = static_cast<double>(ex);
      o[6] = static_cast<double>(ey);
    }
  }
  if (!tiled) {
    for (int y = 0; y < size; y++) {
      const int64_t row = static_cast<int64_t>(y) * size;
      foreground(R + row, Gp + row, B + row, 0, size, y);
    }
  }
  double* f = out + 7 * G * G;
  f[0] = static_cast<double>(fgN);
  f[1] = static_cast<double>(fgX);
  f[2] = static_cast<double>(fgY);
  f[3] = static_cast<double>(fgR);
  f[4] = static_cast<double>(fgG);
  f[5] = static_cast<double>(fgB);
  f[6] = mr;
  f[7] = mg;
  f[8] = mb;
}

}  // namespace rpv
