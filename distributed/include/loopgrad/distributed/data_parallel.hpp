#pragma once
// Data-parallel exact online learning over MPI: S streams spread over the ranks (each rank steps
// its share on its own threads), the parameters replicated, and the gradient summed over every
// stream of every rank in global stream order (ordered_sum.hpp), so that it is the same bits on
// every rank, for any number of ranks and threads, as one process's batch. Each rank then applies
// the same optimizer update to its copy of the parameters, which therefore stay identical.
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "loopgrad/distributed/mpi.hpp"
#include "loopgrad/distributed/ordered_sum.hpp"
#include "loopgrad/distributed/worker_pool.hpp"
#include "loopgrad/runtime/checksum.hpp"

#ifdef __linux__
#include <sched.h>
#endif

namespace loopgrad::distributed {

/// Where one step's time went on this rank.
struct StepTiming {
  double compute_seconds = 0;      ///< stepping this rank's streams (on its threads)
  double communicate_seconds = 0;  ///< agreeing on errors, summing the loss and the gradient
                                   ///< (includes waiting for slower ranks)
};

/// S streams of one exact online learner per stream, spread over the ranks of a communicator.
/// Learner: any learner with a per-stream form and the learner interface (observe, gradient_ready,
/// gradient, steps): runtime::ExactRtrl, runtime::BlockedRtrl, runtime::ExactOnline, on the
/// interpreter or a generated kernel. Every rank builds it with the same arguments; every call
/// but the accessors is collective (every rank makes it, in the same order).
template <class Learner>
class DataParallel {
 public:
  /// The scalar type of the learner's gradient.
  using Scalar = std::remove_cvref_t<decltype(std::declval<const Learner&>().gradient()[0])>;

  /// `streams` global streams over the ranks of `comm` (at least one stream per rank), this rank's
  /// share stepped on `threads` threads; make(b) returns the learner of global stream b (every
  /// learner of the run built alike). Throws DistributedError on every rank for fewer streams
  /// than ranks.
  template <class Make>
  DataParallel(const Communicator& comm, std::size_t streams, unsigned threads, Make make)
      : comm_(comm.duplicate()),
        streams_(streams),
        share_(stream_share(streams, comm_.rank(), comm_.size())),
        pool_(threads) {
    if (streams < static_cast<std::size_t>(comm_.size()))
      throw DistributedError("DataParallel: " + std::to_string(streams) + " streams over " +
                             std::to_string(comm_.size()) + " ranks; give every rank at least one stream");
    warn_if_bound(threads);
    for (std::size_t b = share_.begin; b < share_.end; ++b) learners_.push_back(std::make_unique<Learner>(make(b)));
    losses_.resize(share_.size());
    errors_.resize(share_.size());
    gradient_.assign(learners_.front()->gradient().size(), Scalar(0));
  }

  std::size_t streams() const { return streams_; }  ///< S, over all ranks
  StreamShare share() const { return share_; }  ///< this rank's global streams
  /// The learner of this rank's i-th stream (global stream share().begin + i).
  Learner& learner(std::size_t i) { return *learners_.at(i); }
  /// @copydoc learner(std::size_t)
  const Learner& learner(std::size_t i) const { return *learners_.at(i); }
  const Communicator& communicator() const { return comm_; }  ///< the run's own (duplicated) communicator
  unsigned threads() const { return pool_.threads(); }  ///< threads stepping this rank's streams

  /// One step of every stream with parameters `params` (the same on every rank): this rank's i-th
  /// stream reads inputs[i] and targets[i] (nullptr: no loss this step). Returns the loss summed
  /// over all streams (global stream order; the same on every rank). When gradient_ready(),
  /// gradient() is the sum of the streams' gradients over all ranks. If a stream's step throws on
  /// any rank, every rank throws CollectiveError naming the rank, the global stream and the error;
  /// the other streams have then taken the step, so resume from the last checkpoint.
  Scalar observe(const std::vector<Scalar>& params, std::span<const Scalar* const> inputs,
                 std::span<const Scalar* const> targets) {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const std::int64_t step = steps() + 1;
    std::optional<std::string> error;
    if (params.size() != gradient_.size()) {
      error = "DataParallel::observe: " + std::to_string(params.size()) + " parameters given; the network has " +
              std::to_string(gradient_.size());
    } else if (inputs.size() != share_.size() || targets.size() != share_.size()) {
      error = "DataParallel::observe: rank " + std::to_string(comm_.rank()) + " runs " + std::to_string(share_.size()) +
              " streams but was given " + std::to_string(inputs.size()) + " inputs and " +
              std::to_string(targets.size()) + " targets";
    } else {
      pool_.run(share_.size(), [&](std::size_t i) {
        errors_[i].clear();
        try {
          losses_[i] = learners_[i]->observe(params, inputs[i], targets[i]);
        } catch (const std::exception& e) {
          errors_[i] = e.what();
        } catch (...) {
          errors_[i] = "an unknown exception";
        }
      });
      for (std::size_t i = 0; i < share_.size() && !error; ++i)
        if (!errors_[i].empty()) error = "stream " + std::to_string(share_.begin + i) + ": " + errors_[i];
    }
    const auto t1 = clock::now();
    comm_.agree("DataParallel::observe, step " + std::to_string(step), error);
    const Scalar loss = ordered_sum<Scalar>(comm_, std::span<const Scalar>(losses_), streams_);
    gather_gradient();
    timing_ = {std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(clock::now() - t1).count()};
    return loss;
  }

  /// True when the step just observed completes a gradient (every step, or every m with
  /// accumulation): apply gradient() now, on every rank.
  bool gradient_ready() const { return ready_; }
  /// The gradient summed over all streams of all ranks (valid while gradient_ready()).
  const std::vector<Scalar>& gradient() const { return gradient_; }
  /// Steps observed (those of every stream).
  std::int64_t steps() const { return learners_.front()->steps(); }
  /// Where the last step's time went on this rank.
  StepTiming last_timing() const { return timing_; }

  /// Recomputes gradient() from the streams' learners after their state was restored (checkpoints).
  void restored() { gather_gradient(); }

 private:
  // mpirun binds each rank to one core by default (Open MPI, for up to 2 ranks): threads beyond the
  // cores a rank may use only take turns. Says so once, on stderr.
  void warn_if_bound(unsigned threads) const {
#ifdef __linux__
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return;
    const int cores = CPU_COUNT(&set);
    if (threads > 1 && static_cast<int>(threads) > cores)
      std::fprintf(stderr,
                   "loopgrad warning: rank %d steps its streams on %u threads but may run on %d core(s); mpirun binds "
                   "ranks to cores: start it with --bind-to none, or --map-by slot:PE=%u\n",
                   comm_.rank(), threads, cores, threads);
#else
    (void)threads;
#endif
  }

  // When the streams' learners have a gradient ready, gradient() becomes its sum over all ranks.
  void gather_gradient() {
    ready_ = learners_.front()->gradient_ready();
    if (!ready_) return;
    std::vector<const Scalar*> local;
    for (const auto& l : learners_) local.push_back(l->gradient().data());
    ordered_sum<Scalar>(comm_, local, gradient_.size(), gradient_.data());
  }

  Communicator comm_;
  std::size_t streams_;
  StreamShare share_;
  WorkerPool pool_;
  std::vector<std::unique_ptr<Learner>> learners_;
  std::vector<Scalar> losses_;
  std::vector<std::string> errors_;
  std::vector<Scalar> gradient_;
  bool ready_ = false;
  StepTiming timing_;
};

/// True on every rank when `values` has the same bits on every rank of `comm` (collective): the
/// check that replicated parameters have stayed replicated.
template <class T>
bool replicas_agree(const Communicator& comm, const std::vector<T>& values) {
  const unsigned mine = runtime::crc32c(0, values.data(), values.size() * sizeof(T));
  unsigned low = 0, high = 0;
  detail::check(MPI_Allreduce(&mine, &low, 1, MPI_UNSIGNED, MPI_MIN, comm.get()), "MPI_Allreduce");
  detail::check(MPI_Allreduce(&mine, &high, 1, MPI_UNSIGNED, MPI_MAX, comm.get()), "MPI_Allreduce");
  return low == high;
}

}  // namespace loopgrad::distributed
