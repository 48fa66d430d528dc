// embed: the smallest app. It includes one generated header and loopgrad's file I/O for apps
// (loopgrad/runtime/kernel_io.hpp, standard library only; its target links the header's directory
// and loopgrad::kernel_io, include directories both, nothing to link), and learns online, one exact
// step at a time, to predict the next sample of a signal. Halfway it saves a checkpoint; at the end
// it saves its parameters, then resumes from the checkpoint and checks that the second half
// replays bit for bit.
//   embed [DIR]   (the files go to DIR, default ./embed_files)
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>

#include "embed_kernel.hpp"
#include "loopgrad/runtime/kernel_io.hpp"

namespace io = loopgrad::runtime::kernel_io;
using K = embed_kernel::Kernel;

namespace {

float signal(int t) { return std::sin(0.2f * static_cast<float>(t)) * std::cos(0.031f * static_cast<float>(t)); }

// Steps [from, to) of online learning: an exact step, then SGD on its gradient. Prints the mean
// squared error every 1000 steps when `report`.
void learn(embed_kernel::Params& params, embed_kernel::State& state, embed_kernel::Sensitivity& sensitivity, int from,
           int to, bool report) {
  embed_kernel::Gradient gradient;
  embed_kernel::Step step;
  embed_kernel::Input input;
  embed_kernel::Target target;
  float window = 0;
  for (int t = from; t < to; ++t) {
    input.x()[0] = signal(t);
    target.y()[0] = signal(t + 1);
    window += embed_kernel::rtrl_step(params, state, sensitivity, input, &target, gradient, step);
    for (std::size_t i = 0; i < params.flat.size(); ++i) params.flat[i] -= 0.05f * gradient.flat[i];
    if (report && (t + 1) % 1000 == 0) {
      std::printf("step %5d: mean squared error %.6f\n", t + 1, static_cast<double>(window / 1000));
      window = 0;
    }
  }
}

}  // namespace

int main(int argc, char** argv) try {
  const std::filesystem::path dir = argc > 1 ? argv[1] : "embed_files";
  embed_kernel::Params params;
  for (std::size_t i = 0; i < params.flat.size(); ++i) params.flat[i] = 0.3f * std::sin(1.7f * static_cast<float>(i));
  embed_kernel::State state;
  embed_kernel::Sensitivity sensitivity;
  learn(params, state, sensitivity, 0, 3000, true);
  const auto checkpoint = dir / "embed.checkpoint.safetensors";
  io::save_checkpoint<K>(checkpoint, params.flat, state.flat, sensitivity.flat, 3000);
  learn(params, state, sensitivity, 3000, 6000, true);
  io::save<K>(dir / "embed_params.safetensors", params.flat);
  std::printf("saved %s and %s\n", checkpoint.c_str(), (dir / "embed_params.safetensors").c_str());

  // Resume from the checkpoint in fresh arrays and learn the second half again.
  embed_kernel::Params resumed;
  embed_kernel::State resumed_state;
  embed_kernel::Sensitivity resumed_sensitivity;
  const auto steps = io::load_checkpoint<K>(checkpoint, resumed.flat, resumed_state.flat, resumed_sensitivity.flat);
  learn(resumed, resumed_state, resumed_sensitivity, static_cast<int>(steps), 6000, false);
  embed_kernel::Params saved;
  io::load<K>(dir / "embed_params.safetensors", saved.flat);
  if (resumed.flat != params.flat || saved.flat != params.flat) {
    std::fprintf(stderr, "embed: the run resumed from step %lld does not reproduce the parameters\n", static_cast<long long>(steps));
    return 1;
  }
  std::printf("resumed from the checkpoint of step %lld: the same %zu parameters at step 6000, bit for bit\n",
              static_cast<long long>(steps), params.flat.size());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "embed: %s\n", e.what());
  return 1;
}
