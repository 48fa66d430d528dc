// An app's file I/O with nothing but a generated header and loopgrad/runtime/kernel_io.hpp:
// PyTorch's weights in, hidden states and gradients against torch autograd (the oracle), the
// gradient out in PyTorch's names, checkpoints that resume bit for bit, and the same files as the
// runtime's parameter I/O on the DSL network.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../compare.hpp"
#include "k_elman.hpp"
#include "k_torch_gru.hpp"
#include "k_torch_lstm.hpp"
#include "k_torch_rnn.hpp"
#include "loopgrad/runtime/kernel_io.hpp"
#include "loopgrad/runtime/parameter_io.hpp"
#include "test_kernels.hpp"
#include "../scratch.hpp"

using namespace loopgrad;
namespace fs = std::filesystem;
namespace io = loopgrad::runtime::kernel_io;

namespace {

fs::path scratch(const std::string& name) { return testing::scratch_file("kernel_io_test", name); }

bool have_torch() { return std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") == 0; }

// The oracle's files (tests/interop/torch_reference.py), written once per test run.
fs::path torch_files() {
  static const fs::path dir = [] {
    const auto d = scratch("torch");
    fs::create_directories(d);
    REQUIRE(std::system(("/usr/bin/python3 " LOOPGRAD_TORCH_REFERENCE " " + d.string()).c_str()) == 0);
    return d;
  }();
  return dir;
}

// The test network of this name (its IR, for the runtime's side of the comparisons).
ir::Network network(const std::string& name) {
  for (const auto& k : testing::test_kernels())
    if (k.name == name) return k.make();
  FAIL("no test kernel " << name);
  return {};
}

// One generated kernel's types, by its namespace.
#define LOOPGRAD_KERNEL_TYPES(ns)                                                                                 \
  struct ns##_types {                                                                                             \
    using Kernel = ns::Kernel;                                                                                    \
    using Params = ns::Params;                                                                                    \
    using Gradient = ns::Gradient;                                                                                \
    using State = ns::State;                                                                                      \
    using Sensitivity = ns::Sensitivity;                                                                          \
    using Input = ns::Input;                                                                                      \
    using Target = ns::Target;                                                                                    \
    using Step = ns::Step;                                                                                        \
    static constexpr const char* name = #ns;                                                                      \
  };
LOOPGRAD_KERNEL_TYPES(k_torch_rnn)
LOOPGRAD_KERNEL_TYPES(k_torch_lstm)
LOOPGRAD_KERNEL_TYPES(k_torch_gru)
#undef LOOPGRAD_KERNEL_TYPES

// Runs the kernel over the oracle's sequence from PyTorch's weights: the largest difference of the
// hidden state `hidden_group` from torch's, and the gradient summed over the steps.
template <class K>
std::pair<double, typename K::Gradient> run_torch_sequence(const std::string& cell, const std::string& hidden_group,
                                                           const ir::Network& net) {
  typename K::Params params;
  io::import_torch<typename K::Kernel>(torch_files() / (cell + "_weights.safetensors"), params.flat);
  const auto run = runtime::safetensors::read(torch_files() / (cell + "_run.safetensors"));
  const auto x = run.tensors.at("x").values<double>("x");
  const auto y = run.tensors.at("y").values<double>("y");
  const auto h = run.tensors.at("h").values<double>("h");
  const auto steps = static_cast<std::size_t>(run.tensors.at("x").shape[0]);
  typename K::State state;
  typename K::Sensitivity sensitivity;
  typename K::Gradient gradient, sum;
  typename K::Step step;
  typename K::Input input;
  typename K::Target target;
  const auto offset = K::Kernel::value_offset(net.find_group(hidden_group));
  double worst = 0;
  for (std::size_t t = 0; t < steps; ++t) {
    for (std::size_t i = 0; i < 3; ++i) input.flat[i] = x[3 * t + i];
    target.flat[0] = y[t];
    rtrl_step(params, state, sensitivity, input, &target, gradient, step);
    for (std::size_t i = 0; i < 4; ++i) worst = std::max(worst, std::abs(step.values[offset + i] - h[4 * t + i]));
    for (std::size_t i = 0; i < sum.flat.size(); ++i) sum.flat[i] += gradient.flat[i];
  }
  return {worst, sum};
}

template <class K>
void check_against_torch(const std::string& cell) {
  INFO("torch.nn." << cell << " through " << std::string(K::name));
  const auto net = network(K::name);
  const auto [worst, gradient] = run_torch_sequence<K>(cell, cell + "_h", net);
  MESSAGE(std::string(K::name) << ": largest difference in the hidden state from torch's: " << worst);
  CHECK(worst <= 1e-12);
  // The gradient in PyTorch's names, tensor by tensor against autograd's (the RNN's two biases
  // each get the whole bias gradient, as in PyTorch).
  const auto ours_path = scratch(cell + "_kernel_io_grads.safetensors");
  io::export_torch_gradient<typename K::Kernel>(ours_path, gradient.flat);
  const auto ours = runtime::safetensors::read(ours_path);
  const auto torch = runtime::safetensors::read(torch_files() / (cell + "_grads.safetensors"));
  REQUIRE(ours.tensors.size() == torch.tensors.size());
  double worst_relative = 0;
  for (const auto& entry : torch.tensors) {
    // Not a structured binding: clang 14 refuses to capture one in doctest's assertion lambdas.
    const std::string& name = entry.first;
    const auto& tensor = entry.second;
    INFO("tensor " << name);
    REQUIRE(ours.tensors.count(name) == 1);
    CHECK(ours.tensors.at(name).shape == tensor.shape);
    const auto want = tensor.template values<double>(name);
    const auto got = ours.tensors.at(name).template values<double>(name);
    REQUIRE(got.size() == want.size());
    const double d = testing::relative_difference(got.data(), want.data(), got.size());
    worst_relative = std::max(worst_relative, d);
    CHECK(d <= 1e-12);
  }
  MESSAGE(std::string(K::name) << ": gradient against autograd, largest relative difference per tensor: " << worst_relative);
  // The same weights through the runtime's parameter I/O on the DSL network: the same vector.
  typename K::Params params;
  io::import_torch<typename K::Kernel>(torch_files() / (cell + "_weights.safetensors"), params.flat);
  const auto runtime_params = runtime::import_parameters(net, torch_files() / (cell + "_weights.safetensors"), net.tensors,
                                                         std::vector<double>(params.flat.size(), 0.0));
  CHECK(runtime_params == params.flat);
  // Exported in PyTorch's names and read back by either side: the same parameters.
  const auto exported = scratch(cell + "_kernel_io_params.safetensors");
  io::export_torch<typename K::Kernel>(exported, params.flat);
  typename K::Params back;
  io::import_torch<typename K::Kernel>(exported, back.flat);
  CHECK(back.flat == params.flat);
  CHECK(runtime::import_parameters(net, exported, net.tensors, std::vector<double>(params.flat.size(), 0.0)) == params.flat);
}

}  // namespace

TEST_CASE("kernel_io: PyTorch's RNN, LSTM and GRU weights into generated kernels, hidden states and gradients as torch autograd's (oracle: python3-torch)") {
  if (!have_torch()) {
    MESSAGE("skipped: /usr/bin/python3 with torch (Debian's python3-torch) is not installed");
    return;
  }
  check_against_torch<k_torch_rnn_types>("rnn");
  check_against_torch<k_torch_lstm_types>("lstm");
  check_against_torch<k_torch_gru_types>("gru");
}

TEST_CASE("kernel_io: the generated header's tables name every parameter group and PyTorch tensor") {
  using K = k_torch_lstm::Kernel;
  const auto net = network("k_torch_lstm");
  REQUIRE(K::parameter_table().size() == net.params.size());
  std::size_t offset = 0;
  for (std::size_t p = 0; p < net.params.size(); ++p) {
    CHECK(std::string(K::parameter_table()[p].name) == net.params[p].name);
    CHECK(K::parameter_table()[p].offset == offset);
    CHECK(K::parameter_table()[p].rows * K::parameter_table()[p].cols == static_cast<std::size_t>(net.params[p].size()));
    offset += static_cast<std::size_t>(net.params[p].size());
  }
  // torch.nn.LSTM's 4 tensors stack its gates i, f, g, o; the Linear adds 2.
  REQUIRE(K::torch_table().size() == 6);
  CHECK(std::string(K::torch_table()[1].name) == "weight_hh_l0");
  CHECK(K::torch_table()[1].count == 4);
  CHECK(std::string(K::parameter_table()[K::torch_table_groups()[K::torch_table()[1].first + 2]].name) == "lstm_W_hg");
  // The tables are constexpr: usable in a static_assert.
  static_assert(k_torch_rnn::Kernel::torch_table()[2].summed && k_torch_rnn::Kernel::torch_table()[3].summed);
  static_assert(k_elman::Kernel::torch_table().empty(), "a spec without a PyTorch layout has an empty table");
}

TEST_CASE("kernel_io: a checkpoint resumes bit for bit, and damaged or foreign ones are refused with nothing changed") {
  using K = k_torch_gru_types;
  K::Params params;
  for (std::size_t i = 0; i < params.flat.size(); ++i) params.flat[i] = 0.4 * std::sin(0.7 * static_cast<double>(i) + 1.0);
  K::State state;
  K::Sensitivity sensitivity;
  K::Gradient gradient;
  K::Step step;
  K::Input input;
  K::Target target;
  auto feed = [&](int t) {
    for (std::size_t i = 0; i < 3; ++i) input.flat[i] = std::cos(0.3 * t + static_cast<double>(i));
    target.flat[0] = std::sin(0.2 * t);
  };
  // Online learning: a step, then SGD on its gradient.
  auto learn = [&](K::Params& p, K::State& s, K::Sensitivity& d, int from, int to) {
    std::vector<double> losses;
    for (int t = from; t < to; ++t) {
      feed(t);
      losses.push_back(k_torch_gru::rtrl_step(p, s, d, input, &target, gradient, step));
      for (std::size_t i = 0; i < p.flat.size(); ++i) p.flat[i] -= 0.05 * gradient.flat[i];
    }
    return losses;
  };
  learn(params, state, sensitivity, 0, 7);
  const auto path = scratch("gru.checkpoint.safetensors");
  io::save_checkpoint<K::Kernel>(path, params.flat, state.flat, sensitivity.flat, 7, {{"app", "kernel_io_test"}});
  const auto first = learn(params, state, sensitivity, 7, 15);
  const auto first_params = params.flat;

  K::Params p2;
  K::State s2;
  K::Sensitivity d2;
  CHECK(io::load_checkpoint<K::Kernel>(path, p2.flat, s2.flat, d2.flat) == 7);
  const auto second = learn(p2, s2, d2, 7, 15);
  CHECK(second == first);  // bit for bit
  CHECK(p2.flat == first_params);

  // Damaged: one byte of the data changed. Refused by the checksum, the arrays untouched.
  const auto damaged = scratch("gru.damaged.safetensors");
  fs::copy_file(path, damaged, fs::copy_options::overwrite_existing);
  {
    std::fstream f(damaged, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x55');
  }
  const auto before = p2.flat;
  CHECK_THROWS_WITH(io::load_checkpoint<K::Kernel>(damaged, p2.flat, s2.flat, d2.flat),
                    doctest::Contains("its checksum does not match its contents"));
  CHECK(p2.flat == before);
  // Another network's checkpoint.
  k_torch_rnn::Params rp;
  k_torch_rnn::State rs;
  k_torch_rnn::Sensitivity rd;
  CHECK_THROWS_WITH(io::load_checkpoint<k_torch_rnn::Kernel>(path, rp.flat, rs.flat, rd.flat),
                    doctest::Contains("belongs to network 'gru', not 'elman'"));
  // Wrong array sizes are named.
  std::vector<double> short_params(3);
  const std::string too_short = "has " + std::to_string(params.flat.size()) + " parameter values, the array given 3";
  CHECK_THROWS_WITH(io::save_checkpoint<K::Kernel>(path, short_params, state.flat, sensitivity.flat),
                    doctest::Contains(too_short.c_str()));
}

TEST_CASE("kernel_io: files in loopgrad's names are the runtime's, and bad ones are refused naming the file and the tensor") {
  using K = k_torch_lstm_types;
  const auto net = network("k_torch_lstm");
  K::Params params;
  for (std::size_t i = 0; i < params.flat.size(); ++i) params.flat[i] = 0.01 * static_cast<double>(i) - 0.5;
  const auto ours = scratch("lstm_ours.safetensors");
  const auto theirs = scratch("lstm_runtime.safetensors");
  io::save<K::Kernel>(ours, params.flat);
  runtime::export_parameters(net, params.flat, theirs, runtime::default_layout(net));
  std::ifstream a(ours, std::ios::binary), b(theirs, std::ios::binary);
  const std::string bytes_a((std::istreambuf_iterator<char>(a)), {}), bytes_b((std::istreambuf_iterator<char>(b)), {});
  CHECK(bytes_a == bytes_b);  // byte for byte the same file
  K::Params back;
  io::load<K::Kernel>(theirs, back.flat);
  CHECK(back.flat == params.flat);
  // A PyTorch file that lacks a tensor: named, with what it holds, and nothing loaded.
  const auto partial = scratch("lstm_partial.safetensors");
  runtime::export_parameters(net, params.flat, partial, runtime::torch_lstm_layout("lstm"));  // no `out.` tensors
  K::Params untouched;
  CHECK_THROWS_WITH(io::import_torch<K::Kernel>(partial, untouched.flat),
                    doctest::Contains("has no tensor 'out.weight' (it holds W_hy of network 'lstm')"));
  CHECK(untouched.flat == K::Params().flat);
  // A file in loopgrad's names where PyTorch's are expected, and the wrong shape.
  CHECK_THROWS_WITH(io::import_torch<K::Kernel>(ours, untouched.flat), doctest::Contains("has no tensor 'weight_ih_l0'"));
  const auto gru_file = scratch("gru_for_lstm.safetensors");
  k_torch_gru::Params gp;
  io::export_torch<k_torch_gru::Kernel>(gru_file, gp.flat);
  CHECK_THROWS_WITH(io::import_torch<K::Kernel>(gru_file, untouched.flat),
                    doctest::Contains("tensor 'weight_ih_l0' has shape [12, 3] but network 'lstm' needs [16, 3]"));
}
