// Kernel scratch memory: growable, 64-byte aligned float buffers (thread-local scratch of the
// GEMM's packing and the fused kernels, attention.cc and xent.cc, kept between calls so a step
// allocates nothing) and an allocator for the per-call vectors. Every byte is counted
// (scratchHeldBytes, exported as `scratchBytes()` so tests can hold the memory plan against it),
// and a failed allocation throws ScratchError with the bytes asked for, which the N-API boundary
// (napi_exports.h) turns into a JavaScript error naming the kernel.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <new>
#include <vector>

namespace rpv {

// Bytes held by every Scratch and ScratchAllocator of the process now.
inline std::atomic<int64_t> scratchHeldBytes{0};
// Allocations above this many bytes fail as if the memory were not there: a test hook
// (`setScratchLimit()`), unlimited by default. A buffer that already holds enough allocates nothing.
inline std::atomic<size_t> scratchLimitBytes{std::numeric_limits<size_t>::max()};

// An allocation of kernel scratch that failed (or went over the test limit).
class ScratchError : public std::bad_alloc {
 public:
  explicit ScratchError(size_t bytes) : bytes_(bytes) {
    const double b = static_cast<double>(bytes);
    const bool gib = b >= 1024.0 * 1024.0 * 1024.0, mib = b >= 1024.0 * 1024.0;
    std::snprintf(what_, sizeof(what_), "cannot allocate %zu bytes (%.1f %s) of scratch", bytes,
                  gib ? b / (1024.0 * 1024.0 * 1024.0) : mib ? b / (1024.0 * 1024.0) : b / 1024.0, gib ? "GiB" : mib ? "MiB" : "KiB");
  }
  size_t bytes() const { return bytes_; }
  const char* what() const noexcept override { return what_; }

 private:
  size_t bytes_;
  char what_[96];
};

// Bytes of n elements of `size` bytes, or a ScratchError when that overflows.
inline size_t scratchBytesOf(size_t n, size_t size) {
  if (n > std::numeric_limits<size_t>::max() / size) throw ScratchError(std::numeric_limits<size_t>::max());
  return n * size;
}

// `bytes` from the heap, or a ScratchError naming them (also above the test limit).
inline void* scratchAllocate(size_t bytes, size_t alignment) {
  if (bytes > scratchLimitBytes.load(std::memory_order_relaxed)) throw ScratchError(bytes);
  void* p = alignment > 0 ? std::aligned_alloc(alignment, (bytes + alignment - 1) / alignment * alignment) : ::operator new(bytes, std::nothrow);
  if (!p) throw ScratchError(bytes);
  return p;
}

struct Scratch {
  float* data = nullptr;
  size_t size = 0;
  size_t bytes = 0;  // allocated (size rounded up to 64 bytes)
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { release(); }
  // At least n floats; earlier contents are not kept when it grows.
  float* get(size_t n) {
    if (n > size) {
      const size_t asked = scratchBytesOf(n, sizeof(float));
      release();
      data = static_cast<float*>(scratchAllocate(asked, 64));
      size = n;
      bytes = (asked + 63) / 64 * 64;
      scratchHeldBytes.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed);
    }
    return data;
  }
  void release() {
    std::free(data);
    scratchHeldBytes.fetch_sub(static_cast<int64_t>(bytes), std::memory_order_relaxed);
    data = nullptr;
    size = 0;
    bytes = 0;
  }
};

// std::allocator with the accounting and the sized error of Scratch, for per-call vectors.
template <class T>
struct ScratchAllocator {
  using value_type = T;
  ScratchAllocator() = default;
  template <class U>
  ScratchAllocator(const ScratchAllocator<U>&) {}
  T* allocate(size_t n) {
    const size_t bytes = scratchBytesOf(n, sizeof(T));
    T* p = static_cast<T*>(scratchAllocate(bytes, 0));
    scratchHeldBytes.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed);
    return p;
  }
  void deallocate(T* p, size_t n) {
    scratchHeldBytes.fetch_sub(static_cast<int64_t>(n * sizeof(T)), std::memory_order_relaxed);
    ::operator delete(p);
  }
  template <class U>
  bool operator==(const ScratchAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const ScratchAllocator<U>&) const { return false; }
};

template <class T>
using ScratchVector = std::vector<T, ScratchAllocator<T>>;

}  // namespace rpv
