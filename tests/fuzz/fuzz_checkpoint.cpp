// libFuzzer target: loading a checkpoint, for exact RTRL and for the blocked exact algorithm (both
// schedules), into learners of a small Elman network on the reference interpreter. Built and run
// like fuzz_safetensors.cpp, from the seed corpus in tests/fuzz/corpus/checkpoint.
//
// Each input is loaded twice: as it is (the checksum then refuses almost every mutation), and,
// when it parses as safetensors, resealed with the checksum of its mutated contents, so that the
// metadata parsing, the tensor sizes and the blocked learner's replay are reached. The contract
// checked: load_checkpoint either throws SafetensorsError and leaves the parameters, the learner
// and the optimizer as they were, or succeeds. Any other exception, a crash, a leak or undefined
// behaviour is a finding.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "loopgrad/cells.hpp"
#include "loopgrad/runtime/blocked_rtrl.hpp"
#include "loopgrad/runtime/checkpoint.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"

namespace {

using loopgrad::fuzz::scratch;

[[noreturn]] void fail(const char* what) { loopgrad::fuzz::fail("fuzz_checkpoint", what); }

namespace rt = loopgrad::runtime;
namespace st = loopgrad::runtime::safetensors;
using Kernel = rt::Interpreter<double>;

const loopgrad::ir::Network& network() {
  static const auto net = loopgrad::dsl::lower(loopgrad::cells::elman_network<2, 3, 1>());
  return net;
}

const Kernel& kernel() {
  static const Kernel k(network());
  return k;
}

// Loads `path` into fresh learners of every kind; on a refusal nothing may have changed.
void load_everywhere(const std::filesystem::path& path) {
  const auto& net = network();
  const auto initial = rt::initial_params<double>(net, 1);
  {
    auto params = initial;
    rt::ExactRtrl<Kernel, double> learner(kernel(), 2);
    rt::Adam<double> adam;
    try {
      rt::load_checkpoint(path, net.name, params, learner, adam);
    } catch (const st::SafetensorsError&) {
      if (params != initial || learner.rtrl().steps() != 0 || learner.gradient_ready()) fail("a refused load changed RTRL");
    }
  }
  for (const auto schedule : {rt::BlockSchedule::block_end, rt::BlockSchedule::real_time}) {
    auto params = initial;
    rt::BlockedRtrl<Kernel, double> learner(kernel(), 3, 1, {}, schedule);
    rt::Adam<double> adam;
    try {
      rt::load_checkpoint(path, net.name, params, learner, adam);
    } catch (const st::SafetensorsError&) {
      if (params != initial || learner.steps() != 0 || learner.gradient_ready())
        fail("a refused load changed the blocked learner");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = scratch("input.checkpoint.safetensors");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  load_everywhere(path);
  st::File file;
  try {
    file = st::read(path);
  } catch (const st::SafetensorsError&) {
    return 0;
  }
  file.metadata["loopgrad.checksum"] = rt::detail::checksum(file);
  const auto resealed = scratch("resealed.checkpoint.safetensors");
  st::write(resealed, file);
  load_everywhere(resealed);
  return 0;
}
