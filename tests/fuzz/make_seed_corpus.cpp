// Writes the fuzzers' seed corpus (tests/fuzz/corpus): checkpoints of exact RTRL and of the blocked
// learner mid-block with either schedule, for the network fuzz_checkpoint.cpp loads, and parameter
// files of it in float and double. Run by hand when the file formats change:
//   build/clang/tests/fuzz/make_seed_corpus tests/fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "loopgrad/cells.hpp"
#include "loopgrad/runtime/blocked_rtrl.hpp"
#include "loopgrad/runtime/checkpoint.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"
#include "loopgrad/runtime/parameter_io.hpp"

int main(int argc, char** argv) {
  namespace rt = loopgrad::runtime;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir / "checkpoint");
  std::filesystem::create_directories(dir / "safetensors");
  const auto net = loopgrad::dsl::lower(loopgrad::cells::elman_network<2, 3, 1>());
  const rt::Interpreter<double> k(net);
  const std::vector<double> input{0.5, -0.25}, target{0.125};
  {
    auto params = rt::initial_params<double>(net, 1);
    rt::ExactRtrl<rt::Interpreter<double>, double> learner(k, 2);
    rt::Adam<double> adam;
    for (int t = 0; t < 3; ++t) {
      learner.observe(params, input.data(), target.data());
      if (learner.gradient_ready()) adam.apply(params, learner.gradient());
    }
    rt::save_checkpoint(dir / "checkpoint" / "rtrl.safetensors", net.name, params, learner, adam, {{"note", "seed"}});
    const auto layout = rt::default_layout(net);
    rt::export_parameters(net, params, dir / "safetensors" / "params_f64.safetensors", layout);
    rt::export_parameters(net, std::vector<float>(params.begin(), params.end()), dir / "safetensors" / "params_f32.safetensors",
                          layout);
  }
  for (const auto schedule : {rt::BlockSchedule::block_end, rt::BlockSchedule::real_time}) {
    auto params = rt::initial_params<double>(net, 1);
    rt::BlockedRtrl<rt::Interpreter<double>, double> learner(k, 3, 1, {}, schedule);
    rt::Sgd<double> sgd;
    for (int t = 0; t < 5; ++t) {
      learner.observe(params, input.data(), target.data());
      if (learner.gradient_ready()) sgd.apply(params, learner.gradient());
    }
    const std::string name = schedule == rt::BlockSchedule::real_time ? "blocked_real_time" : "blocked_block_end";
    rt::save_checkpoint(dir / "checkpoint" / (name + ".safetensors"), net.name, params, learner, sgd);
  }
  return 0;
}
