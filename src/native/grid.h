// grid-v1 frame statistics; see grid.cc.
#pragma once

#include <cstdint>

namespace rpv {

constexpr int kGridForegroundThreshold = 60;

// `out` holds 7 * cells * cells + 9 doubles; `rgb` holds size * size * 3 bytes.
void gridSums(const uint8_t* rgb, int size, int cells, double* out);

}  // namespace rpv
