// The communication of loopgrad::distributed alone: one ordered_sum of |P| values per step (the
// gradient summed over the ranks in global stream order, then broadcast), for |P| from 10^3 to
// 10^7 doubles, with one stream per rank. Prints the median time per sum and the bytes each rank
// sends and receives per second. Run under mpirun: mpirun -np 2 ./loopgrad_bench_ordered_sum
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "loopgrad/distributed/ordered_sum.hpp"

int main(int argc, char** argv) {
  namespace dist = loopgrad::distributed;
  dist::Environment mpi(argc, argv);
  return dist::run_guarded([] {
    const dist::Communicator world;
    if (world.rank() == 0)
      std::printf("%d ranks; per sum: median of 21 (after 3 warm-up), each rank sends and receives |P| doubles once\n"
                  "%12s %14s %16s\n",
                  world.size(), "|P|", "us per sum", "8|P| bytes / s");
    for (std::size_t n = 1000; n <= 10'000'000; n *= 10) {
      std::vector<double> mine(n, 1.0 + world.rank()), out(n);
      const double* local[] = {mine.data()};
      std::vector<double> times;
      for (int i = 0; i < 24; ++i) {
        world.barrier();
        const auto t0 = std::chrono::steady_clock::now();
        dist::ordered_sum<double>(world, local, n, out.data());
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (i >= 3) times.push_back(s);
      }
      std::nth_element(times.begin(), times.begin() + 10, times.end());
      const double median = times[10];
      if (world.rank() == 0)
        std::printf("%12zu %14.1f %13.2f GB/s\n", n, 1e6 * median, 8.0 * static_cast<double>(n) / median / 1e9);
    }
  });
}
