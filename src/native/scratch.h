// A growable, 64-byte aligned float buffer: thread-local scratch for the fused kernels
// (attention.cc, xent.cc), kept between calls so a step allocates nothing.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace rpv {

struct Scratch {
  float* data = nullptr;
  size_t size = 0;
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(data); }
  // At least n floats; earlier contents are not kept when it grows.
  float* get(size_t n) {
    if (n > size) {
      std::free(data);
      data = static_cast<float*>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64));
      if (!data) {
        size = 0;
        throw std::bad_alloc();
      }
      size = n;
    }
    return data;
  }
};

}  // namespace rpv
