#pragma once
// Streams spread over ranks, and their sum in global stream order.
//
// Stream b of S belongs to rank r when S*r/R <= b < S*(r+1)/R (contiguous shares, sizes differing
// by at most one). The sum of the streams' vectors is defined as one process's batch defines it:
// starting from zeros, add stream 0's, then stream 1's, ... in floating point. Rank r receives
// the partial sum over the streams before its share from rank r-1, adds its streams' vectors in
// order and passes the result on to rank r+1; the last rank broadcasts the total. The bits are
// therefore those of the single-process sum whatever the number of ranks or threads. The vector
// travels in chunks, so the chain is a pipeline: each rank sends and receives the |P| values once
// (plus the broadcast), and the ranks' latencies add up once per step, not once per chunk.
#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "loopgrad/distributed/mpi.hpp"

namespace loopgrad::distributed {

/// The global streams [begin, end) of one rank.
struct StreamShare {
  std::size_t begin = 0;  ///< the first global stream of the rank
  std::size_t end = 0;    ///< one past its last
  std::size_t size() const { return end - begin; }  ///< how many streams the rank runs
};

/// The share of `rank` among `ranks` of `streams` global streams: contiguous, in rank order.
inline StreamShare stream_share(std::size_t streams, int rank, int ranks) {
  const auto r = static_cast<std::size_t>(rank), n = static_cast<std::size_t>(ranks);
  return {streams * r / n, streams * (r + 1) / n};
}

/// Every rank calls it with its streams' vectors (`local[i]` is the vector of its i-th stream, n
/// values each) in stream order; every rank receives in `out` (n values) the sum over all streams
/// of all ranks, added in global stream order from zero: the same bits on every rank, and the same
/// as the single-process sum. `chunk` values travel per message.
template <class T>
void ordered_sum(const Communicator& comm, std::span<const T* const> local, std::size_t n, T* out,
                 std::size_t chunk = 16384) {
  const int rank = comm.rank(), size = comm.size();
  const MPI_Datatype type = detail::datatype<T>();
  for (std::size_t lo = 0; lo < n; lo += chunk) {
    const std::size_t hi = std::min(n, lo + chunk);
    const int count = static_cast<int>(hi - lo);
    if (rank == 0)
      std::fill(out + lo, out + hi, T(0));
    else
      detail::check(MPI_Recv(out + lo, count, type, rank - 1, 0, comm.get(), MPI_STATUS_IGNORE), "MPI_Recv");
    for (const T* v : local)
      for (std::size_t i = lo; i < hi; ++i) out[i] += v[i];
    if (rank + 1 < size) detail::check(MPI_Send(out + lo, count, type, rank + 1, 0, comm.get()), "MPI_Send");
  }
  // MPI counts are int: broadcast in pieces that fit one.
  for (std::size_t lo = 0; lo < n; lo += std::size_t(1) << 30) {
    const int count = static_cast<int>(std::min(n - lo, std::size_t(1) << 30));
    detail::check(MPI_Bcast(out + lo, count, type, size - 1, comm.get()), "MPI_Bcast");
  }
}

/// The scalars of all streams of all ranks (`local`: this rank's, in stream order), added in global
/// stream order from zero; the same value on every rank.
template <class T>
T ordered_sum(const Communicator& comm, std::span<const T> local, std::size_t streams) {
  std::vector<int> counts(static_cast<std::size_t>(comm.size())), offsets(counts.size());
  for (int r = 0; r < comm.size(); ++r) {
    const auto share = stream_share(streams, r, comm.size());
    counts[static_cast<std::size_t>(r)] = static_cast<int>(share.size());
    offsets[static_cast<std::size_t>(r)] = static_cast<int>(share.begin);
  }
  std::vector<T> all(streams);
  detail::check(MPI_Allgatherv(local.data(), static_cast<int>(local.size()), detail::datatype<T>(), all.data(),
                               counts.data(), offsets.data(), detail::datatype<T>(), comm.get()),
                "MPI_Allgatherv");
  T sum = 0;
  for (T v : all) sum += v;
  return sum;
}

}  // namespace loopgrad::distributed
