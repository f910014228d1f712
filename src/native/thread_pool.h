// A small persistent thread pool for the GEMM: the calling thread plus `threads - 1` workers.
// Workers spin briefly after each job (matmuls in a training step come in quick succession), then
// sleep on a condition variable so an idle process costs nothing. An exception thrown by a task,
// on whichever thread, is caught there, the job's remaining tasks are skipped, and run() rethrows
// it on the calling thread once every task has finished.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace rpv {

class ThreadPool {
 public:
  // Throws NativeError (napi_exports.h) naming the thread that could not be started.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads that take part in run(), the caller included.
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(task, threadIndex) once for every task in [0, tasks); the caller works too and
  // returns when all tasks are done, rethrowing the first exception a task threw. Not reentrant:
  // one run() at a time (the caller serialises).
  void run(int64_t tasks, const std::function<void(int64_t, int)>& fn);

 private:
  void workerLoop(int index);
  // Claims the next task of generation `gen`; false when that generation has none left.
  bool claim(uint32_t gen, int64_t* task);
  void work(uint32_t gen, int threadIndex);
  void stopWorkers();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  // High 32 bits: generation of the current job; low 32 bits: next unclaimed task.
  std::atomic<uint64_t> ticket_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> sleepers_{0};
  // Jobs alternate between two slots (generation & 1): a worker that saw generation g can still
  // be reading slot g while the caller fills slot g + 1 for the next job.
  struct Job {
    std::atomic<const std::function<void(int64_t, int)>*> fn{nullptr};
    std::atomic<int64_t> tasks{0};
    std::atomic<bool> failed{false};  // a task threw: the rest are counted, not run
  };
  Job jobs_[2];
  std::mutex errorMutex_;
  std::exception_ptr error_;  // the current job's first exception
  std::atomic<bool> stop_{false};
};

}  // namespace rpv
