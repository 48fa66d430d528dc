#pragma once
// Threads that a rank keeps for stepping its streams: started once, reused by every step (starting
// threads costs tens of microseconds, more than a small network's step). Waiting threads first spin
// (yielding) for a while, so that back-to-back steps hand over without a sleep and a wake-up, then
// sleep on a condition variable, as the generated header's BatchPool does.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace loopgrad::distributed {

/// threads - 1 workers and the calling thread run task(i) for i in [0, count) in contiguous
/// chunks, one per thread. One run at a time; the task must not throw (catch inside it).
class WorkerPool {
 public:
  /// A pool of `threads` threads, the calling one included (0 counts as 1); waiting threads spin
  /// for up to `spin` rounds before they sleep.
  explicit WorkerPool(unsigned threads, unsigned spin = 20000) : spin_(spin) {
    try {
      for (unsigned t = 1; t < threads; ++t) workers_.emplace_back([this, t] { work(t); });
    } catch (...) {
      stop();
      throw;
    }
  }
  ~WorkerPool() { stop(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  unsigned threads() const { return static_cast<unsigned>(workers_.size() + 1); }  ///< the calling one included

  /// Calls task(i) for every i in [0, count); returns when every call has returned.
  void run(std::size_t count, const std::function<void(std::size_t)>& task) {
    if (workers_.empty()) {
      chunk(0, count, task);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      count_ = count;
      pending_.store(workers_.size(), std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    start_.notify_all();
    chunk(0, count, task);
    for (unsigned i = 0; i < spin_ && pending_.load(std::memory_order_acquire) != 0; ++i) std::this_thread::yield();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
  }

 private:
  void chunk(unsigned index, std::size_t count, const std::function<void(std::size_t)>& task) const {
    const std::size_t parts = workers_.size() + 1;
    for (std::size_t i = count * index / parts; i < count * (index + 1) / parts; ++i) task(i);
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_.store(true);
    }
    start_.notify_all();
    for (auto& w : workers_) w.join();
  }
  void work(unsigned index) {
    std::size_t seen = 0;
    for (;;) {
      for (unsigned i = 0; i < spin_ && generation_.load(std::memory_order_acquire) == seen && !stopping_.load(); ++i)
        std::this_thread::yield();
      std::unique_lock<std::mutex> lock(mutex_);
      start_.wait(lock, [&] { return stopping_.load() || generation_.load(std::memory_order_acquire) != seen; });
      if (stopping_.load()) return;
      seen = generation_.load(std::memory_order_acquire);
      const auto* task = task_;
      const std::size_t count = count_;
      lock.unlock();
      chunk(index, count, *task);
      lock.lock();
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_.notify_one();
    }
  }

  unsigned spin_;
  std::mutex mutex_;
  std::condition_variable start_, done_;
  const std::function<void(std::size_t)>* task_ = nullptr;
  std::size_t count_ = 0;
  std::atomic<std::size_t> pending_{0}, generation_{0};
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> workers_;
};

}  // namespace loopgrad::distributed
