// loopgrad_bench: exact RTRL on generated kernels against the limits. For every network of
// bench_networks.hpp, as Google Benchmark counters (--benchmark_format=json carries them all):
//   rtrl/<net>/pruned       one exact RTRL step on the generated kernel: time per step per stream,
//                           macs (performed, counted by the emitter), min_macs (the analysis's
//                           structural count), FLOP/s, and bytes held per stream by RTRL and by BPTT
//                           at T = 1e2..1e5 (computed from the layouts)
//   rtrl/<net>/dense        the same with pruning switched off (every block, dense RTRL)
//   rtrl/<net>/blas         the pruned kernel generated with its large dense products (>= 2^20
//                           flops) as OpenBLAS calls (the --blas-min-flops generation option)
//   rtrl/<net>/interpreter  the reference interpreter
//   rtrl/<net>/portable     the pruned kernel compiled without -march (LOOPGRAD_PORTABLE), where
//                           every other row is compiled for this machine as loopgrad_add_network
//                           compiles by default (bench_portable.cpp)
//   blocked/<net>/accumulate:<m>  the blocked exact algorithm (BlockedRtrl) on the pruned kernel
//                           at the cost model's block length h, a gradient every step (m = 1) or
//                           summed over m = h steps: mean, median and largest step time, the
//                           model's MACs (blocked and RTRL), bytes per stream
//   blocked/<net>/real_time the same, a gradient every step, with the real-time schedule (the
//                           block end's work spread over the next block's steps)
//   blocked/<net>/background the same with the background schedule (the block end on a second
//                           thread while the next block runs; wall-clock time per step) at the
//                           cost model's block length for it (background_block_length)
//   blocked/<net>/background_tuned  the same at the block length tune_background_block_length
//                           measures on this machine (untimed, before the row; trials on stderr),
//                           where the model picks the blocked algorithm, at most 3e8 model MACs per
//                           step (bench_rows.hpp, tuned_row)
//   delta_pass/<net>        one pass over the stored Delta with one adjoint (apply_sensitivity):
//                           bytes read per second, the floor of a step with a gradient every step
//   sweep/<net>             the background schedule's gradient sweep alone: one adjoint column
//                           through 1.5 h stored steps (h its block length), ns per swept step;
//                           with delta_pass, the least its step costs
//   stream/copy             the machine's streaming bandwidth (STREAM copy, 256 MiB, one thread)
//   forward/<net>           the forward pass alone
//   blas/<net>              OpenBLAS dgemm, one thread, on the shapes of the kernel's dense
//                           products (W times a tangent block): the speed limit of that part
//   bptt/<net>/<T>          full BPTT over T steps: the cost of the same exact gradient at step T
//   batch/<net>/B:4/threads:<t>  rtrl_step_batch, 4 streams sharing the parameters, on 1 and 2
//                           threads (wall-clock time; ns_per_step is per stream): networks of at
//                           most 2e9 MACs per step
//   batch/<net>/B:4/pool:2  the same on a BatchPool of 2 threads, started once
// bench_exact.cpp adds the rows rtrl/, blocked/, delta_pass/ and bptt/ for the dense cells in float
// (<net>_float) and for Elman 512 and LSTM 256; bench_openblas_rtrl.cpp the rows rtrl/<elman>/openblas,
// exact RTRL for the Elman networks written by hand on OpenBLAS (one dgemm per step);
// bench_elementwise.cpp the rows forward/ and rtrl/ of the element-wise cells and their stacks.
// The context line openblas_core names the OpenBLAS kernels in use; on a CPU that Debian's
// OpenBLAS takes for an old one the program runs itself again with the right OPENBLAS_CORETYPE.
// Run by hand: build/release/benchmarks/loopgrad_bench [--benchmark_filter=lstm]
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_networks.hpp"
#include "bench_rows.hpp"
#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/runtime/blocked_rtrl.hpp"
#include "loopgrad/runtime/bptt.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/rtrl.hpp"

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);

namespace {

using loopgrad::runtime::Interpreter;
using loopgrad::runtime::Rtrl;
using namespace bench;

// This machine's streaming bandwidth, STREAM's "copy" on 256 MiB arrays (one thread): bytes read
// and written per second.
void stream_copy(benchmark::State& state) {
  const std::size_t n = std::size_t(1) << 25;
  const auto a = random_vector(n, 8);
  std::vector<double> b(n, 0.0);
  for (auto _ : state) {
    std::copy(a.begin(), a.end(), b.begin());
    benchmark::ClobberMemory();
  }
  state.counters["bytes_per_s"] = benchmark::Counter(16.0 * double(n), benchmark::Counter::kIsIterationInvariantRate);
}

struct Gemm {
  int m, n, k;  // C (m x n) += A (m x k) * B (k x n)
};

// The dense products of the sensitivity update: for every block p, every dense connection whose
// source carries a tangent block for p, W (rows x from) times that block (from x |P_p|).
std::vector<Gemm> dense_products(const loopgrad::ir::Network& net, const loopgrad::analysis::Analysis& a) {
  std::vector<Gemm> out;
  for (std::size_t p = 0; p < net.params.size(); ++p)
    for (int g : a.group_order) {
      if (!a.has_tangent(net.groups[static_cast<std::size_t>(g)].value_op(), static_cast<int>(p))) continue;
      for (const auto& leaf : a.leaves[static_cast<std::size_t>(g)]) {
        const auto& op = net.ops[static_cast<std::size_t>(leaf.op)];
        if (op.code != loopgrad::ir::OpCode::connect) continue;
        const auto& c = net.connections[static_cast<std::size_t>(op.connection)];
        if (c.kind != loopgrad::ir::ConnectionKind::dense || !a.has_tangent(op.a, static_cast<int>(p))) continue;
        out.push_back({op.size, net.params[p].size(), net.ops[static_cast<std::size_t>(op.a)].size});
      }
    }
  return out;
}

void blas(benchmark::State& state, const std::vector<Gemm>& shapes) {
  openblas_set_num_threads(1);
  std::size_t biggest = 1;
  for (const auto& g : shapes)
    biggest = std::max({biggest, std::size_t(g.m) * g.k, std::size_t(g.k) * g.n, std::size_t(g.m) * g.n});
  const auto A = random_vector(biggest, 3), B = random_vector(biggest, 4);
  std::vector<double> C(biggest, 0.0);
  double flops = 0;
  for (const auto& g : shapes) flops += 2.0 * g.m * g.n * g.k;
  for (auto _ : state) {
    for (const auto& g : shapes)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.m, g.n, g.k, 1.0, A.data(), g.k, B.data(), g.n, 1.0, C.data(), g.n);
    benchmark::ClobberMemory();
  }
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["products"] = static_cast<double>(shapes.size());
}

// rtrl_step_batch of one generated kernel: B streams with their own inputs and targets.
// With `pool`, the threads are a BatchPool started once; otherwise rtrl_step_batch starts them.
template <class Params, class Stream, class Input, class Target, class Gradient, class Pool, auto Batch>
void batch_step(benchmark::State& state, const std::vector<double>& p, std::size_t B, unsigned threads, bool pool,
                long long macs) {
  Params params;
  std::copy(p.begin(), p.end(), params.flat.begin());
  std::vector<Stream> streams(B);
  std::vector<Input> inputs(B);
  std::vector<Target> targets(B);
  std::vector<const Target*> target_ptrs;
  for (std::size_t b = 0; b < B; ++b) {
    const auto x = random_vector(inputs[b].flat.size(), static_cast<unsigned>(b));
    std::copy(x.begin(), x.end(), inputs[b].flat.begin());
    const auto y = random_vector(targets[b].flat.size(), static_cast<unsigned>(b) + 11);
    std::copy(y.begin(), y.end(), targets[b].flat.begin());
    target_ptrs.push_back(&targets[b]);
  }
  Gradient gradient;
  if (pool) {
    Pool workers(threads);
    for (auto _ : state) benchmark::DoNotOptimize(workers.step(params, streams, inputs, target_ptrs, gradient));
  } else {
    for (auto _ : state) benchmark::DoNotOptimize(Batch(params, streams, inputs, target_ptrs, gradient, threads));
  }
  state.counters["ns_per_step"] =
      benchmark::Counter(1e-9 * double(B), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * double(macs) * double(B), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["streams"] = double(B);
  state.counters["threads"] = threads;
}

// What the registered benchmarks of one network share; kept alive for the whole run.
struct Entry {
  loopgrad::ir::Network net;
  loopgrad::analysis::Analysis analysis;
  std::vector<double> params;
  std::unique_ptr<Interpreter<double>> interpreter;
};

template <class Pruned, class Dense, class Blas, class BatchFn>
void register_network(const std::string& name, const loopgrad::ir::Network& net, long long pruned_macs,
                      long long dense_macs, std::size_t step_values, std::size_t workspace, BatchFn batch) {
  static std::deque<Entry> entries;
  auto& e = entries.emplace_back();
  e.net = net;
  e.analysis = loopgrad::analysis::analyse(net);
  e.params = loopgrad::runtime::initial_params<double>(net, 1, 0.5);
  e.interpreter = std::make_unique<Interpreter<double>>(e.net, e.analysis);
  const Entry* entry = &e;
  const long long min_macs = e.analysis.macs_per_step;
  const Memory memory{8.0 * double(Pruned::state_size() + 2 * Pruned::sensitivity_size() + Pruned::param_count() +
                                   step_values + workspace),
                      8.0 * double(step_values + Pruned::target_size()),
                      8.0 * double(2 * Pruned::state_size() + Pruned::param_count())};
  benchmark::RegisterBenchmark(("rtrl/" + name + "/pruned").c_str(), [=](benchmark::State& s) {
    rtrl_step(s, Pruned{}, entry->params, pruned_macs, min_macs, memory);
  })->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(("rtrl/" + name + "/dense").c_str(), [=](benchmark::State& s) {
    rtrl_step(s, Dense{}, entry->params, dense_macs, min_macs, memory);
  })->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(("rtrl/" + name + "/blas").c_str(), [=](benchmark::State& s) {
    openblas_set_num_threads(1);
    rtrl_step(s, Blas{}, entry->params, pruned_macs, min_macs, memory);
  })->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(("rtrl/" + name + "/interpreter").c_str(), [=](benchmark::State& s) {
    rtrl_step(s, *entry->interpreter, entry->params, min_macs, min_macs, memory);
  })->Unit(benchmark::kMicrosecond);
  const int h = e.analysis.exact_cost.block_length;
  using loopgrad::runtime::BlockSchedule;
  for (const auto& [accumulate, schedule] :
       {std::pair{1, BlockSchedule::block_end}, {h, BlockSchedule::block_end}, {1, BlockSchedule::real_time},
        {1, BlockSchedule::background}})
    benchmark::RegisterBenchmark(("blocked/" + name + "/" + blocked_row(accumulate, schedule)).c_str(),
                                 [=, accumulate = accumulate, schedule = schedule](benchmark::State& s) {
                                   blocked_step(s, Pruned{}, entry->params, entry->analysis,
                                                blocked_row_length(entry->analysis, schedule), accumulate, schedule);
                                 })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime()  // the background schedule's block end runs on another thread
        ->Iterations(blocked_iterations(e.analysis, blocked_row_length(e.analysis, schedule)));
  if (tuned_row(e.analysis))
    benchmark::RegisterBenchmark(("blocked/" + name + "/background_tuned").c_str(),
                                 [=](benchmark::State& s) {
                                   blocked_step(s, Pruned{}, entry->params, entry->analysis,
                                                entry->analysis.exact_cost.background_block_length, 1,
                                                BlockSchedule::background, false, name + "/background_tuned");
                                 })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime()
        ->Iterations(blocked_iterations(e.analysis, e.analysis.exact_cost.background_block_length));
  benchmark::RegisterBenchmark(("delta_pass/" + name).c_str(), [](benchmark::State& s) { delta_pass(s, Pruned{}); })
      ->Unit(benchmark::kMicrosecond);
  const int background_h = e.analysis.exact_cost.background_block_length;
  benchmark::RegisterBenchmark(("sweep/" + name).c_str(),
                               [=](benchmark::State& s) { gradient_sweep(s, Pruned{}, entry->params, background_h); })
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(("update/" + name).c_str(),
                               [=](benchmark::State& s) { update_pass(s, Pruned{}, entry->params, pruned_macs); })
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(("forward/" + name).c_str(), [=](benchmark::State& s) { forward_only(s, Pruned{}, entry->params); })
      ->Unit(benchmark::kMicrosecond);
  const auto shapes = dense_products(e.net, e.analysis);
  if (!shapes.empty())
    benchmark::RegisterBenchmark(("blas/" + name).c_str(), [shapes](benchmark::State& s) { blas(s, shapes); })
        ->Unit(benchmark::kMicrosecond);
  if (pruned_macs <= 2'000'000'000LL)
    for (const auto& [threads, pool] : {std::pair{1u, false}, {2u, false}, {2u, true}})
      benchmark::RegisterBenchmark(
          ("batch/" + name + "/B:4/" + (pool ? "pool:" : "threads:") + std::to_string(threads)).c_str(),
          [=](benchmark::State& s) { batch(s, entry->params, 4, threads, pool, pruned_macs); })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
  for (int T : {10, 100, 1000})
    benchmark::RegisterBenchmark(("bptt/" + name + "/" + std::to_string(T)).c_str(),
                                 [=](benchmark::State& s) { bptt<Pruned>(s, entry->params, T); })
        ->Unit(benchmark::kMicrosecond);
}

}  // namespace

// The kernels' headers (the listed networks are registered in main).
#define LOOPGRAD_BENCH_NETWORK(ns, expression)
#include "bench_networks.inc"
#undef LOOPGRAD_BENCH_NETWORK

// Debian's OpenBLAS (0.3.21) does not recognise every CPU and then runs its generic SSE3 kernels
// (Prescott), at a fraction of the speed: the comparisons with OpenBLAS would flatter loopgrad.
// On a CPU with AVX-512 or AVX2 that OpenBLAS took for an old one, run again with
// OPENBLAS_CORETYPE set to the core it should have picked (unless the user set one).
void run_the_right_openblas_core(char** argv) {
  const std::string core = openblas_get_corename();
  const bool generic = core == "Prescott" || core == "Core2" || core == "Penryn" || core == "Dunnington" ||
                       core == "Nehalem" || core == "Atom" || core == "Katmai" || core == "Northwood" || core == "Banias";
  const char* want = __builtin_cpu_supports("avx512f") ? "SkylakeX" : __builtin_cpu_supports("avx2") ? "Haswell" : nullptr;
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr || !generic || want == nullptr) return;
  std::fprintf(stderr, "loopgrad_bench: OpenBLAS chose its %s kernels on a CPU with %s; running again with OPENBLAS_CORETYPE=%s\n",
               core.c_str(), want == std::string("SkylakeX") ? "AVX-512" : "AVX2", want);
  setenv("OPENBLAS_CORETYPE", want, 1);
  execv("/proc/self/exe", argv);
  std::perror("loopgrad_bench: could not run again");  // go on with the generic kernels
}

void register_portable_rows();  // bench_portable.cpp
void register_exact_rows();     // bench_exact.cpp
void register_elementwise_rows();  // bench_elementwise.cpp
void register_openblas_rtrl_rows();  // bench_openblas_rtrl.cpp

int main(int argc, char** argv) {
  run_the_right_openblas_core(argv);
  benchmark::AddCustomContext("openblas_core", openblas_get_corename());
  benchmark::RegisterBenchmark("stream/copy", stream_copy)->Unit(benchmark::kMicrosecond);
#define LOOPGRAD_BENCH_NETWORK(ns, expression) \
  register_network<ns::Kernel, ns##_dense::Kernel, ns##_blas::Kernel>(                                          \
      #ns, expression, ns::emitted_macs_per_step, ns##_dense::emitted_macs_per_step, ns::n_step_values, ns::n_tangent, \
      &batch_step<ns::Params, ns::Stream, ns::Input, ns::Target, ns::Gradient, ns::BatchPool, &ns::rtrl_step_batch>);
  // clang-format off
  #include "bench_networks.inc"
  // clang-format on
#undef LOOPGRAD_BENCH_NETWORK
  register_portable_rows();
  register_exact_rows();
  register_elementwise_rows();
  register_openblas_rtrl_rows();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
