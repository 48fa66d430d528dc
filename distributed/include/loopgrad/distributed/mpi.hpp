#pragma once
// MPI underneath loopgrad::distributed: the process's MPI environment, a communicator, and the
// collective error path. A phase that may fail on some ranks (stepping streams, writing files)
// ends with Communicator::agree(): every rank reaches it whether its part failed or not, and if
// any failed, every rank throws the same CollectiveError naming the first failing rank and its
// message. No rank is left waiting in a collective for one that gave up. An exception that
// escapes elsewhere is turned into MPI_Abort by run_guarded(), which ends every rank of the job.
#include <mpi.h>

#include <cstdio>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace loopgrad::distributed {

/// An MPI call that failed, or a misuse of loopgrad::distributed found on one rank.
class DistributedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Thrown on every rank at once by Communicator::agree() when a phase failed on some rank: the
/// message names the phase, the first failing rank and what it reported.
class CollectiveError : public DistributedError {
 public:
  using DistributedError::DistributedError;
};

namespace detail {

inline void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw DistributedError(std::string(call) + " failed: " + std::string(text, static_cast<std::size_t>(length)));
}

template <class T>
MPI_Datatype datatype() {
  static_assert(std::is_same_v<T, double> || std::is_same_v<T, float>, "loopgrad::distributed: scalars are float or double");
  return std::is_same_v<T, double> ? MPI_DOUBLE : MPI_FLOAT;
}

}  // namespace detail

/// The process's MPI environment: initialises MPI (threads: MPI_THREAD_FUNNELED, i.e. only the thread
/// that made it calls MPI; a rank's worker threads compute, never communicate) unless the program
/// already did, makes MPI_COMM_WORLD return errors instead of aborting, and finalises MPI when it
/// goes if it initialised it. One per process, made first thing in main().
class Environment {
 public:
  /// Initialises MPI with the program's arguments (mpirun's are taken out of them).
  Environment(int& argc, char**& argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized == 0) {
      int provided = 0;
      detail::check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      owner_ = true;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  ~Environment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owner_ && finalized == 0) MPI_Finalize();
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

 private:
  bool owner_ = false;
};

/// A group of ranks: MPI_COMM_WORLD by default, or a duplicate (duplicate()) so that a library's
/// messages never meet the program's own. Move-only; a duplicate is freed when it goes.
class Communicator {
 public:
  /// The ranks of `comm` (not owned).
  explicit Communicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized == 0 || finalized != 0)
      throw DistributedError(initialized == 0 ? "MPI is not initialised: make a loopgrad::distributed::Environment first "
                                                "thing in main(), before any Communicator"
                                              : "MPI has been finalised: a Communicator must not outlive the Environment");
    detail::check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    detail::check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  /// Takes over `other`'s ranks (and its duplicate, if it owns one).
  Communicator(Communicator&& other) noexcept
      : comm_(std::exchange(other.comm_, MPI_COMM_NULL)), rank_(other.rank_), size_(other.size_),
        owned_(std::exchange(other.owned_, false)) {}
  /// Frees this communicator's duplicate, if it owns one, and takes over `other`'s.
  Communicator& operator=(Communicator&& other) noexcept {
    if (this != &other) {
      release();
      comm_ = std::exchange(other.comm_, MPI_COMM_NULL);
      rank_ = other.rank_;
      size_ = other.size_;
      owned_ = std::exchange(other.owned_, false);
    }
    return *this;
  }
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator() { release(); }

  /// A communicator of the same ranks whose messages are its own (MPI_Comm_dup; collective).
  Communicator duplicate() const {
    MPI_Comm copy = MPI_COMM_NULL;
    detail::check(MPI_Comm_dup(comm_, &copy), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(copy, MPI_ERRORS_RETURN);
    Communicator c(copy);
    c.owned_ = true;
    return c;
  }
  /// The ranks whose `colour` is the same, ordered as here; colour MPI_UNDEFINED gives none
  /// (std::nullopt). Collective: every rank calls it.
  std::optional<Communicator> split(int colour) const {
    MPI_Comm part = MPI_COMM_NULL;
    detail::check(MPI_Comm_split(comm_, colour, rank_, &part), "MPI_Comm_split");
    if (part == MPI_COMM_NULL) return std::nullopt;
    MPI_Comm_set_errhandler(part, MPI_ERRORS_RETURN);
    Communicator c(part);
    c.owned_ = true;
    return c;
  }

  int rank() const { return rank_; }  ///< this process's rank, 0 .. size() - 1
  int size() const { return size_; }  ///< the number of ranks
  MPI_Comm get() const { return comm_; }  ///< the MPI handle, for calls of the program's own

  /// Ends a phase that may have failed on some ranks: every rank calls it, with the error its part
  /// of `phase` met or std::nullopt. Returns when no rank failed; otherwise every rank throws
  /// CollectiveError "<phase>: rank R failed (and K more): <R's message>".
  void agree(const std::string& phase, const std::optional<std::string>& error) const {
    const int mine[2] = {error ? rank_ : size_, error ? 1 : 0};
    int first = 0, failed = 0;
    detail::check(MPI_Allreduce(&mine[0], &first, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
    detail::check(MPI_Allreduce(&mine[1], &failed, 1, MPI_INT, MPI_SUM, comm_), "MPI_Allreduce");
    if (failed == 0) return;
    std::string text = rank_ == first ? *error : std::string();
    int length = static_cast<int>(text.size());
    detail::check(MPI_Bcast(&length, 1, MPI_INT, first, comm_), "MPI_Bcast");
    text.resize(static_cast<std::size_t>(length));
    detail::check(MPI_Bcast(text.data(), length, MPI_CHAR, first, comm_), "MPI_Bcast");
    std::string message = phase + ": rank " + std::to_string(first) + " failed";
    if (failed > 1) message += " (and " + std::to_string(failed - 1) + " more)";
    throw CollectiveError(message + ": " + text);
  }

  /// Blocks until every rank has called it.
  void barrier() const { detail::check(MPI_Barrier(comm_), "MPI_Barrier"); }

 private:
  void release() noexcept {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && comm_ != MPI_COMM_NULL && finalized == 0) MPI_Comm_free(&comm_);
    owned_ = false;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  bool owned_ = false;
};

/// Runs `body` (returning int or void) on this rank and ends the job cleanly on every path:
/// - it returns: its exit code (0 for void);
/// - it throws CollectiveError (thrown on every rank at once by agree()): rank 0 prints the error
///   on stderr and every rank returns 1, so mpirun exits with an error;
/// - it throws anything else (this rank alone): the rank prints "loopgrad: rank R: <what>" and calls
///   MPI_Abort, which ends every rank of the job instead of leaving them waiting for this one.
template <class Body>
int run_guarded(Body&& body) noexcept {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  try {
    if constexpr (std::is_void_v<decltype(body())>) {
      body();
      return 0;
    } else {
      return body();
    }
  } catch (const CollectiveError& e) {
    if (rank == 0) std::fprintf(stderr, "loopgrad: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loopgrad: rank %d: %s; aborting every rank\n", rank, e.what());
  } catch (...) {
    std::fprintf(stderr, "loopgrad: rank %d: unknown exception; aborting every rank\n", rank);
  }
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}

}  // namespace loopgrad::distributed
