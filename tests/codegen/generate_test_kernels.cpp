// Build-time tool of the test suite: emits the kernel header of every entry of test_kernels() into
// DIR, and DIR/shard_<i>.inc files that include them and list one check each, spread over the
// shards so the test build compiles them in parallel.
#include <fmt/format.h>

#include <exception>
#include <string>
#include <vector>

#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/emit/kernel.hpp"
#include "loopgrad/emit/write_file.hpp"
#include "test_kernels.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    fmt::print(stderr, "usage: {} DIR SHARDS\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int shards = std::stoi(argv[2]);
  try {
    std::vector<std::string> inc(static_cast<std::size_t>(shards));
    std::string blas_inc;  // kernels that call CBLAS: their own shard, outside the strict test
    const auto kernels = loopgrad::testing::test_kernels();
    for (std::size_t i = 0; i < kernels.size(); ++i) {
      const auto& k = kernels[i];
      const auto net = k.make();
      loopgrad::emit::KernelOptions options;
      options.namespace_name = k.name;
      options.scalar = k.scalar == "float" ? loopgrad::emit::ScalarType::float32 : loopgrad::emit::ScalarType::float64;
      options.regenerate_command = "the test build (tests/codegen/generate_test_kernels.cpp)";
      options.blas_min_flops = k.blas_min_flops;
      if (k.panel_bytes > 0) options.panel_bytes = k.panel_bytes;
      loopgrad::analysis::AnalysisOptions analysis_options;
      analysis_options.layer_local = k.layer_local;
      loopgrad::emit::write_file_atomically(
          dir + "/" + k.name + ".hpp",
          loopgrad::emit::emit_kernel(net, loopgrad::analysis::analyse(net, analysis_options), options));
      // The check analyses the network with the same options.
      std::string check_options;
      if (!k.layer_local.empty())
        check_options = fmt::format(", loopgrad::analysis::AnalysisOptions{{.layer_local = {{\"{}\"}}}}",
                                    fmt::join(k.layer_local, "\", \""));
      (k.blas_min_flops > 0 ? blas_inc : inc[i % inc.size()]) +=
          fmt::format("#include \"{}.hpp\"\nLOOPGRAD_CHECK_KERNEL({}, {}, {}{})\n", k.name, k.name, k.scalar, k.expression,
                      check_options);
    }
    loopgrad::emit::write_file_atomically(dir + "/shard_blas.inc", blas_inc);
    for (int s = 0; s < shards; ++s)
      loopgrad::emit::write_file_atomically(fmt::format("{}/shard_{}.inc", dir, s), inc[static_cast<std::size_t>(s)]);
    fmt::print("wrote {} kernels into {}\n", kernels.size(), dir);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", argv[0], e.what());
    return 1;
  }
  return 0;
}
