// IEEE half and bfloat16 to float32, exact (every half and bfloat16 value is a float32 value).
#pragma once

#include <cstdint>
#include <cstring>

namespace rpv {

inline float bf16ToF32(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float f16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0x1fu) {
    u = sign | 0x7f800000u | (mant << 13);  // inf or NaN (payload kept)
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (mant << 13);  // normal: rebias 15 -> 127
  } else if (mant == 0) {
    u = sign;  // signed zero
  } else {
    // Subnormal half: normalise the mantissa into a float32 normal.
    int shift = 0;
    while (!(mant & 0x400u)) {
      mant <<= 1;
      ++shift;
    }
    mant &= 0x3ffu;
    u = sign | ((113u - shift) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Element readers used by templated packing: Elem<T>::get(p, i) is element i as float32.
struct F32Elem {
  using Storage = float;
  static float get(const float* p, int64_t i) { return p[i]; }
};
struct F16Elem {
  using Storage = uint16_t;
  static float get(const uint16_t* p, int64_t i) { return f16ToF32(p[i]); }
};
struct BF16Elem {
  using Storage = uint16_t;
  static float get(const uint16_t* p, int64_t i) { return bf16ToF32(p[i]); }
};

}  // namespace rpv
