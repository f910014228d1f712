// Read-only memory maps of weight files (safetensors), shared by every environment of the
// process. A frozen weight is then used where it lies: the GEMM converts half/bfloat16 elements
// while packing, so nothing is copied or expanded up front (llama.cpp's approach to model files).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace rpv {

struct Mapping {
  const uint8_t* data = nullptr;
  int64_t bytes = 0;
  std::string path;
  ~Mapping();
};

// Whether this platform maps files (POSIX mmap); elsewhere callers keep weights in tfjs tensors.
bool mappingSupported();

// Maps `path` read-only; returns an id > 0, or 0 with `error` set (naming the file and errno).
int64_t mapFile(const std::string& path, std::string* error);

// The mapping with this id (kept alive by the returned pointer), or null when unknown or closed.
std::shared_ptr<const Mapping> findMapping(int64_t id);

// Drops the registry's reference; the pages go when the last user is done. False if unknown.
bool unmapFile(int64_t id);

// Bytes of mapped files currently resident in memory (mincore), for memory reports.
int64_t residentBytes(int64_t id);

}  // namespace rpv
