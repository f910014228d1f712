#include "thread_pool.h"

#include <string>
#include <system_error>

#include "napi_exports.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RPV_PAUSE() _mm_pause()
#else
#define RPV_PAUSE() std::this_thread::yield()
#endif

namespace rpv {

namespace {
// Spinning before a worker sleeps: ~0.1-0.5 ms (pause is 10-140 cycles depending on the core),
// enough to bridge the elementwise ops between two matmuls of a step without burning a core.
constexpr int kSpinIterations = 4000;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads < 1) threads = 1;
  workers_.reserve(threads - 1);
  for (int i = 1; i < threads; ++i) {
    try {
      workers_.emplace_back([this, i] { workerLoop(i); });
    } catch (const std::system_error& e) {
      // The destructor does not run for a constructor that throws: join the started ones here
      // (a joinable std::thread destroyed would end the process).
      stopWorkers();
      throw NativeError("cannot start thread " + std::to_string(i + 1) + " of " + std::to_string(threads) + " (" + e.what() +
                        "); lower model.threads or RPV_MATMUL_THREADS");
    }
  }
}

ThreadPool::~ThreadPool() { stopWorkers(); }

void ThreadPool::stopWorkers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    // A new generation with no tasks wakes spinners as well as sleepers.
    ticket_.store((static_cast<uint64_t>((ticket_.load() >> 32) + 1) << 32));
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

bool ThreadPool::claim(uint32_t gen, int64_t* task) {
  uint64_t t = ticket_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(t >> 32) != gen) return false;
    const int64_t index = static_cast<int64_t>(t & 0xffffffffu);
    // Slot gen & 1 is not rewritten before generation gen + 1 has finished, and that cannot
    // happen while this ticket (generation gen) is still current.
    if (index >= jobs_[gen & 1].tasks.load(std::memory_order_relaxed)) return false;
    if (ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) {
      *task = index;
      return true;
    }
  }
}

void ThreadPool::work(uint32_t gen, int threadIndex) {
  int64_t task;
  Job& job = jobs_[gen & 1];
  while (claim(gen, &task)) {
    // Read after a successful claim: the job cannot finish (and its slot cannot be reused)
    // before this task is done.
    if (!job.failed.load(std::memory_order_relaxed)) {
      try {
        (*job.fn.load(std::memory_order_relaxed))(task, threadIndex);
      } catch (...) {
        std::lock_guard<std::mutex> lock(errorMutex_);
        if (!error_) error_ = std::current_exception();
        job.failed.store(true, std::memory_order_relaxed);
      }
    }
    done_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::workerLoop(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen = static_cast<uint32_t>(ticket_.load(std::memory_order_acquire) >> 32);
    for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
      RPV_PAUSE();
      gen = static_cast<uint32_t>(ticket_.load(std::memory_order_acquire) >> 32);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1);
      wake_.wait(lock, [&] {
        return stop_ || static_cast<uint32_t>(ticket_.load() >> 32) != seen;
      });
      sleepers_.fetch_sub(1);
      if (stop_) return;
      gen = static_cast<uint32_t>(ticket_.load() >> 32);
    }
    if (stop_.load()) return;
    seen = gen;
    work(gen, index);
  }
}

void ThreadPool::run(int64_t tasks, const std::function<void(int64_t, int)>& fn) {
  if (tasks <= 0) return;
  if (workers_.empty() || tasks == 1) {
    for (int64_t i = 0; i < tasks; ++i) fn(i, 0);
    return;
  }
  uint32_t gen;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    gen = static_cast<uint32_t>(ticket_.load() >> 32) + 1;
    jobs_[gen & 1].fn.store(&fn, std::memory_order_relaxed);
    jobs_[gen & 1].tasks.store(tasks, std::memory_order_relaxed);
    jobs_[gen & 1].failed.store(false, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    ticket_.store(static_cast<uint64_t>(gen) << 32, std::memory_order_release);
  }
  if (sleepers_.load() > 0) wake_.notify_all();
  work(gen, 0);
  for (int spin = 0; done_.load(std::memory_order_acquire) < tasks; ++spin) {
    if (spin < kSpinIterations) {
      RPV_PAUSE();
    } else {
      std::this_thread::yield();
    }
  }
  // Every task is done, so no thread writes error_ any more.
  if (error_) {
    std::exception_ptr error;
    std::swap(error, error_);
    std::rethrow_exception(error);
  }
}

}  // namespace rpv
