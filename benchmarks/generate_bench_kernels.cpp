// Build-time tool of the benchmark: emits every benchmarked network's kernel four times: pruned
// (<name>.hpp), with nothing pruned (<name>_dense.hpp), pruned with its dense products of at
// least 2^20 flops through CBLAS (<name>_blas.hpp), and pruned again in a namespace of its own
// (<name>_portable.hpp) for the translation unit compiled without -march; then the pruned kernel
// of every network of exact_networks() in its scalar type, and of every elementwise_networks().
// bench_networks.inc, bench_portable.inc, bench_exact.inc and bench_elementwise.inc list them for
// the benchmark program.
#include <fmt/format.h>

#include <exception>
#include <string>

#include "bench_networks.hpp"
#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/emit/kernel.hpp"
#include "loopgrad/emit/write_file.hpp"

int main(int argc, char** argv) {
  // One argument, the output folder: an option (--help) is not taken for one.
  if (argc != 2 || argv[1][0] == '-') {
    fmt::print(stderr, "usage: {} DIR\n  writes the benchmark's kernels and their lists into DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  try {
    std::string inc, portable;
    for (const auto& n : bench::networks()) {
      const auto net = n.make();
      for (const char* variant : {"", "_dense", "_blas", "_portable"}) {
        const bool prune = std::string(variant) != "_dense";
        loopgrad::emit::KernelOptions options;
        options.namespace_name = n.name + variant;
        if (std::string(variant) == "_blas") options.blas_min_flops = 1 << 20;
        options.regenerate_command = "the benchmark build (benchmarks/generate_bench_kernels.cpp)";
        loopgrad::analysis::AnalysisOptions analysis_options;
        analysis_options.prune = prune;
        loopgrad::emit::write_file_atomically(
            dir + "/" + options.namespace_name + ".hpp",
            loopgrad::emit::emit_kernel(net, loopgrad::analysis::analyse(net, analysis_options), options));
        (std::string(variant) == "_portable" ? portable : inc) += fmt::format("#include \"{}.hpp\"\n", options.namespace_name);
      }
      inc += fmt::format("LOOPGRAD_BENCH_NETWORK({}, {})\n", n.name, n.expression);
      portable += fmt::format("LOOPGRAD_BENCH_PORTABLE({})\n", n.name);
    }
    std::string exact;
    for (const auto& n : bench::exact_networks()) {
      const auto net = n.make();
      loopgrad::emit::KernelOptions options;
      options.namespace_name = n.name;
      if (n.single_precision) options.scalar = loopgrad::emit::ScalarType::float32;
      options.regenerate_command = "the benchmark build (benchmarks/generate_bench_kernels.cpp)";
      loopgrad::emit::write_file_atomically(dir + "/" + n.name + ".hpp",
                                            loopgrad::emit::emit_kernel(net, loopgrad::analysis::analyse(net), options));
      exact += fmt::format("#include \"{}.hpp\"\nLOOPGRAD_BENCH_EXACT({}, {})\n", n.name, n.name, n.expression);
    }
    std::string elementwise;
    for (const auto& n : bench::elementwise_networks()) {
      const auto net = n.make();
      loopgrad::emit::KernelOptions options;
      options.namespace_name = n.name;
      options.regenerate_command = "the benchmark build (benchmarks/generate_bench_kernels.cpp)";
      loopgrad::emit::write_file_atomically(dir + "/" + n.name + ".hpp",
                                            loopgrad::emit::emit_kernel(net, loopgrad::analysis::analyse(net), options));
      elementwise += fmt::format("#include \"{}.hpp\"\nLOOPGRAD_BENCH_ELEMENTWISE({}, {})\n", n.name, n.name, n.expression);
    }
    loopgrad::emit::write_files_atomically({{dir + "/bench_networks.inc", inc},
                                            {dir + "/bench_portable.inc", portable},
                                            {dir + "/bench_exact.inc", exact},
                                            {dir + "/bench_elementwise.inc", elementwise}});
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", argv[0], e.what());
    return 1;
  }
  return 0;
}
