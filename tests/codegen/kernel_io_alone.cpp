// Compiled by the test "kernel_io: an app needs nothing but the standard library" (tests/CMakeLists.txt)
// with the compiler's list of included headers: a generated header and loopgrad/runtime/kernel_io.hpp
// must pull in no Boost, fmt or JSON library, and compile under strict warnings.
#include "k_torch_lstm.hpp"
#include "loopgrad/runtime/kernel_io.hpp"

namespace io = loopgrad::runtime::kernel_io;
using K = k_torch_lstm::Kernel;

// Every entry point, instantiated.
void app_io(k_torch_lstm::Params& params, k_torch_lstm::State& state, k_torch_lstm::Sensitivity& sensitivity,
            const k_torch_lstm::Gradient& gradient) {
  io::import_torch<K>("model.safetensors", params.flat);
  io::export_torch<K>("model_out.safetensors", params.flat);
  io::export_torch_gradient<K>("grad.safetensors", gradient.flat);
  io::save<K>("params.safetensors", params.flat);
  io::load<K>("params.safetensors", params.flat);
  io::save_checkpoint<K>("run.safetensors", params.flat, state.flat, sensitivity.flat, 1);
  io::load_checkpoint<K>("run.safetensors", params.flat, state.flat, sensitivity.flat);
}
