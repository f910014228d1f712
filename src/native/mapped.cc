#include "mapped.h"

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#define RPV_HAVE_MMAP 1
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace rpv {

namespace {

struct Registry {
  std::mutex mutex;
  std::map<int64_t, std::shared_ptr<const Mapping>> maps;
  int64_t next = 1;
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: mappings may outlive static teardown
  return *r;
}

}  // namespace

Mapping::~Mapping() {
#ifdef RPV_HAVE_MMAP
  if (data && bytes > 0) munmap(const_cast<uint8_t*>(data), static_cast<size_t>(bytes));
#endif
}

bool mappingSupported() {
#ifdef RPV_HAVE_MMAP
  return true;
#else
  return false;
#endif
}

int64_t mapFile(const std::string& path, std::string* error) {
#ifdef RPV_HAVE_MMAP
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = path + ": cannot open (" + std::strerror(errno) + ")";
    return 0;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    *error = path + ": cannot stat (" + std::strerror(errno) + ")";
    close(fd);
    return 0;
  }
  if (st.st_size <= 0) {
    *error = path + ": empty file";
    close(fd);
    return 0;
  }
  void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
  const int mapErrno = errno;
  close(fd);  // the mapping keeps the file open
  if (p == MAP_FAILED) {
    *error = path + ": mmap failed (" + std::strerror(mapErrno) + ")";
    return 0;
  }
  auto m = std::make_shared<Mapping>();
  m->data = static_cast<const uint8_t*>(p);
  m->bytes = static_cast<int64_t>(st.st_size);
  m->path = path;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  const int64_t id = r.next++;
  r.maps[id] = std::move(m);
  return id;
#else
  *error = path + ": memory-mapping files is not supported on this platform";
  return 0;
#endif
}

std::shared_ptr<const Mapping> findMapping(int64_t id) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.maps.find(id);
  return it == r.maps.end() ? nullptr : it->second;
}

bool unmapFile(int64_t id) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.maps.erase(id) > 0;
}

int64_t residentBytes(int64_t id) {
#ifdef RPV_HAVE_MMAP
  auto m = findMapping(id);
  if (!m) return -1;
  const long page = sysconf(_SC_PAGESIZE);
  const size_t pages = (static_cast<size_t>(m->bytes) + page - 1) / page;
  std::vector<unsigned char> vec(pages);
  if (mincore(const_cast<uint8_t*>(m->data), static_cast<size_t>(m->bytes), reinterpret_cast<decltype(&vec[0])>(vec.data())) != 0) return -1;
  int64_t resident = 0;
  for (unsigned char v : vec) resident += (v & 1) ? page : 0;
  return resident;
#else
  (void)id;
  return -1;
#endif
}

}  // namespace rpv
