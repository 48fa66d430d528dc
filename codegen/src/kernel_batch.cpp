// Kernel section: batched streams. The same for every network (it calls rtrl_step and names the
// header's own types), so it is one block of C++ rather than generated line by line.
#include "kernel_plan.hpp"

namespace loopgrad::emit::detail {

namespace {

constexpr const char* batch_section = R"(
// One stream of a batch: its own recurrent state, sensitivity, step values and gradient.
struct Stream {
  State state;
  Sensitivity sensitivity;
  Step step;
  Gradient gradient;  // dC_N/dP of the stream's last step
  Scalar loss = 0;    // C_N of the stream's last step
};

namespace batch_detail {

inline void check_sizes(std::size_t streams, std::size_t inputs, std::size_t targets) {
  if (inputs != streams || targets != streams)
    throw std::invalid_argument("rtrl_step_batch: give one input and one target pointer per stream");
}

// Sizes every stream's buffers for its step: the only allocations rtrl_step makes. A batch
// therefore fails, if at all, here, before any stream has advanced.
inline void prepare(std::span<Stream> streams) {
  for (Stream& s : streams) {
    s.step.values.resize(n_step_values);
    if (s.step.tangent.size() != n_tangent) s.step.tangent.assign(n_tangent, Scalar(0));
    s.step.next_sensitivity.resize(n_sensitivity);
  }
}

// rtrl_step up to its commit for streams [begin, end): no stream's state or sensitivity changes.
inline void run(const Params& params, std::span<Stream> streams, std::span<const Input> inputs,
                std::span<const Target* const> targets, std::size_t begin, std::size_t end) {
  for (std::size_t b = begin; b < end; ++b)
    streams[b].loss = step_detail::compute(params, streams[b].state, streams[b].sensitivity, inputs[b], targets[b],
                                           streams[b].gradient, streams[b].step);
}

// Every stream's step made current, once every stream's step has been computed and checked.
inline void commit(std::span<Stream> streams) {
  for (Stream& s : streams) step_detail::commit(s.state, s.sensitivity, s.step);
}

// The streams' gradients summed in stream order into `gradient`; returns the summed loss.
inline Scalar sum(std::span<const Stream> streams, Gradient& gradient) {
  Scalar loss = 0;
  for (auto& g : gradient.flat) g = 0;
  for (const Stream& stream : streams) {
    loss += stream.loss;
    for (std::size_t i = 0; i < n_params; ++i) gradient.flat[i] += stream.gradient.flat[i];
  }
  return loss;
}

}  // namespace batch_detail

// One exact RTRL step of every stream of a batch, the parameters shared: streams[b] advances with
// inputs[b] and targets[b] (nullptr: no target). `gradient` receives the sum over the streams of
// their dC_N/dP, added in stream order, so the result does not depend on `threads`; returns the
// summed loss. threads > 1 runs contiguous chunks of streams on that many threads (the calling one
// included), started for this call (BatchPool keeps them); the default, 1, starts none; where the
// system gives no thread, the calling thread runs that chunk. All or nothing: every buffer is sized
// before any stream steps, and every stream's step is computed and checked (rtrl_step's
// std::domain_error for values that are not finite) before any is made current, so if the call
// throws, no stream has advanced.
inline Scalar rtrl_step_batch(const Params& params, std::span<Stream> streams, std::span<const Input> inputs,
                              std::span<const Target* const> targets, Gradient& gradient, unsigned threads = 1) {
  const std::size_t n = streams.size();
  batch_detail::check_sizes(n, inputs.size(), targets.size());
  batch_detail::prepare(streams);
  const std::size_t workers = threads < 1 ? 1 : (threads < n ? threads : (n > 0 ? n : 1));
  std::vector<std::exception_ptr> errors(workers);
  auto chunk = [&](std::size_t t) {
    try {
      batch_detail::run(params, streams, inputs, targets, n * t / workers, n * (t + 1) / workers);
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  std::size_t started = 1;
  try {
    pool.reserve(workers - 1);
    for (; started < workers; ++started) pool.emplace_back(chunk, started);
  } catch (...) {
    // No (more) threads to be had: the chunks without one run below.
  }
  chunk(0);
  for (std::size_t t = started; t < workers; ++t) chunk(t);
  for (auto& thread : pool) thread.join();
  for (const auto& error : errors)
    if (error) std::rethrow_exception(error);
  batch_detail::commit(streams);
  return batch_detail::sum(streams, gradient);
}

// Threads for batches, started once and reused by every step(): starting threads costs tens of
// microseconds, more than a small network's step. threads - 1 workers wait for a batch; the
// calling thread runs the first chunk of streams. Waiting threads first spin (yielding) for up to
// `spin` rounds, so back-to-back steps hand over without a sleep and wake-up, then sleep on a
// condition variable. One batch at a time: step() is not reentrant. All or nothing, as
// rtrl_step_batch.
class BatchPool {
 public:
  // Throws std::system_error if the system gives fewer threads (the ones started are stopped).
  explicit BatchPool(unsigned threads, unsigned spin = 20000) : spin_(spin) {
    try {
      for (unsigned t = 1; t < threads; ++t) workers_.emplace_back([this, t] { work(t); });
    } catch (...) {
      stop();
      throw;
    }
  }
  ~BatchPool() { stop(); }
  BatchPool(const BatchPool&) = delete;
  BatchPool& operator=(const BatchPool&) = delete;

  unsigned threads() const { return static_cast<unsigned>(workers_.size() + 1); }

  // rtrl_step_batch on the pool's threads: the same result, bit for bit.
  Scalar step(const Params& params, std::span<Stream> streams, std::span<const Input> inputs,
              std::span<const Target* const> targets, Gradient& gradient) {
    batch_detail::check_sizes(streams.size(), inputs.size(), targets.size());
    batch_detail::prepare(streams);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      params_ = &params;
      streams_ = streams;
      inputs_ = inputs;
      targets_ = targets;
      error_ = nullptr;
      pending_.store(workers_.size());
      generation_.fetch_add(1, std::memory_order_release);
    }
    start_.notify_all();
    std::exception_ptr error;
    try {
      batch_detail::run(params, streams, inputs, targets, 0, streams.size() / threads());
    } catch (...) {
      error = std::current_exception();
    }
    for (unsigned i = 0; i < spin_ && pending_.load(std::memory_order_acquire) != 0; ++i) std::this_thread::yield();
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
      if (!error) error = error_;
    }
    if (error) std::rethrow_exception(error);
    batch_detail::commit(streams);
    return batch_detail::sum(streams, gradient);
  }

 private:
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_.store(true);
    }
    start_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  void work(unsigned index) {
    std::size_t seen = 0;
    for (;;) {
      for (unsigned i = 0; i < spin_ && generation_.load(std::memory_order_acquire) == seen && !stop_.load(); ++i)
        std::this_thread::yield();
      std::unique_lock<std::mutex> lock(mutex_);
      start_.wait(lock, [&] { return stop_.load() || generation_.load(std::memory_order_acquire) != seen; });
      if (stop_.load()) return;
      seen = generation_.load(std::memory_order_acquire);
      const std::size_t n = streams_.size(), parts = workers_.size() + 1;
      lock.unlock();
      std::exception_ptr error;
      try {
        batch_detail::run(*params_, streams_, inputs_, targets_, n * index / parts, n * (index + 1) / parts);
      } catch (...) {
        error = std::current_exception();
      }
      lock.lock();
      if (error && !error_) error_ = error;
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_.notify_one();
    }
  }

  unsigned spin_;
  std::mutex mutex_;
  std::condition_variable start_, done_;
  const Params* params_ = nullptr;
  std::span<Stream> streams_;
  std::span<const Input> inputs_;
  std::span<const Target* const> targets_;
  std::atomic<std::size_t> generation_{0}, pending_{0};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
  std::vector<std::thread> workers_;
};
)";

}  // namespace

void emit_batch(std::string& out) { out += batch_section; }

}  // namespace loopgrad::emit::detail
