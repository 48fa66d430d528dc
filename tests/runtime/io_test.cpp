// Parameter interop (safetensors, PyTorch layouts) and checkpoints.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "../compare.hpp"
#include "../networks.hpp"
#include "loopgrad/runtime/bptt.hpp"
#include "loopgrad/runtime/checkpoint.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/parameter_io.hpp"
#include "../scratch.hpp"

using namespace loopgrad;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) { return testing::scratch_file("io_test", name); }

void truncate_file(const fs::path& path, std::uintmax_t size) { fs::resize_file(path, size); }

void overwrite(const fs::path& path, std::size_t at, const std::string& bytes) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(at));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST_CASE("parameters round-trip through safetensors in loopgrad's and PyTorch's layouts") {
  const auto net = dsl::lower(cells::lstm_network<3, 4, 2>());
  const auto params = runtime::initial_params<double>(net, 1);
  const std::vector<double> zeros(params.size(), 0.0);
  for (const auto& layout : {runtime::default_layout(net), [&] {
         auto l = runtime::torch_lstm_layout("lstm", "lstm.");
         auto fc = runtime::torch_linear_layout("W_hy", "b_y", "fc.");
         l.insert(l.end(), fc.begin(), fc.end());
         return l;
       }()}) {
    const auto path = scratch("round_trip.safetensors");
    runtime::export_parameters(net, params, path, layout);
    CHECK(runtime::import_parameters(net, path, layout, zeros) == params);
  }
  // PyTorch's stacking: weight_ih_l0 is [W_ii; W_if; W_ig; W_io], 16 x 3.
  const auto path = scratch("torch.safetensors");
  runtime::export_parameters(net, params, path, runtime::torch_lstm_layout("lstm"));
  const auto file = runtime::safetensors::read(path);
  const auto& w = file.tensors.at("weight_ih_l0");
  CHECK(w.shape == std::vector<std::int64_t>{16, 3});
  const auto values = w.values<double>("weight_ih_l0");
  const auto W_if = static_cast<std::size_t>(runtime::Interpreter<double>(net).param_offset(net.find_param("lstm_W_if")));
  CHECK(values[12] == params[W_if]);  // row 4 (the first of W_if), column 0
  CHECK(file.metadata.at("loopgrad.network") == "lstm");
}

TEST_CASE("an Elman layer takes PyTorch's two RNN biases as their sum") {
  const auto net = dsl::lower(cells::elman_network<2, 3, 1>());
  const auto layout = runtime::torch_rnn_layout("rnn");
  runtime::safetensors::File f;
  f.tensors["weight_ih_l0"] = runtime::safetensors::Tensor::from(std::vector<double>(6, 0.5), {3, 2});
  f.tensors["weight_hh_l0"] = runtime::safetensors::Tensor::from(std::vector<double>(9, 0.25), {3, 3});
  f.tensors["bias_ih_l0"] = runtime::safetensors::Tensor::from(std::vector<double>{1, 2, 3}, {3});
  f.tensors["bias_hh_l0"] = runtime::safetensors::Tensor::from(std::vector<double>{10, 20, 30}, {3});
  const auto path = scratch("rnn.safetensors");
  runtime::safetensors::write(path, f);
  const auto params = runtime::import_parameters(net, path, layout, std::vector<double>(runtime::Interpreter<double>(net).param_count(), -1.0));
  const runtime::Interpreter<double> k(net);
  const auto b = k.param_offset(net.find_param("rnn_b_h"));
  CHECK(params[b] == 11);
  CHECK(params[b + 2] == 33);
  CHECK(params[k.param_offset(net.find_param("W_hy"))] == -1);  // not in the layout: kept
}

TEST_CASE("bad parameter files are refused with the file, the tensor and the fix, and nothing is loaded") {
  const auto net = dsl::lower(cells::gru_network<3, 4, 2>());
  const auto layout = runtime::torch_gru_layout("gru");
  const auto params = runtime::initial_params<double>(net, 2);
  const auto good = scratch("gru.safetensors");
  runtime::export_parameters(net, params, good, layout);
  const std::vector<double> start(params.size(), 7.0);
  auto refused = [&](const fs::path& path, const runtime::Layout& l, const std::string& expect) {
    std::vector<double> result = start;
    try {
      result = runtime::import_parameters(net, path, l, start);
      FAIL("accepted: " << expect);
    } catch (const std::exception& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(expect) != std::string::npos);
    }
    CHECK(result == start);
  };
  // a missing tensor
  auto missing = layout;
  missing.push_back({"weight_ih_l1", {"gru_W_ir"}, false});
  refused(good, missing, "has no tensor 'weight_ih_l1' (it holds gru_W_ir of network 'gru')");
  // a wrong shape
  auto f = runtime::safetensors::read(good);
  f.tensors["weight_hh_l0"] = runtime::safetensors::Tensor::from(std::vector<double>(12 * 5, 0.0), {12, 5});
  const auto shaped = scratch("shape.safetensors");
  runtime::safetensors::write(shaped, f);
  refused(shaped, layout, "tensor 'weight_hh_l0' has shape [12, 5] but network 'gru' needs [12, 4]");
  // a wrong dtype
  f = runtime::safetensors::read(good);
  f.tensors["bias_ih_l0"].dtype = "I64";
  const auto typed = scratch("dtype.safetensors");
  runtime::safetensors::write(typed, f);
  refused(typed, layout, "dtype.safetensors': tensor 'bias_ih_l0' has dtype I64; loopgrad reads F32 and F64");
  // a truncated file
  const auto cut = scratch("cut.safetensors");
  fs::copy_file(good, cut, fs::copy_options::overwrite_existing);
  truncate_file(cut, fs::file_size(good) - 9);
  refused(cut, layout, "lie outside the file's");
  truncate_file(cut, 5);
  refused(cut, layout, "is truncated: it is shorter than its 8-byte header length");
  // a corrupt header
  const auto corrupt = scratch("corrupt.safetensors");
  fs::copy_file(good, corrupt, fs::copy_options::overwrite_existing);
  overwrite(corrupt, 8, "#");
  refused(corrupt, layout, "has a corrupt header");
  // float files load into double runs
  const auto single = scratch("float.safetensors");
  std::vector<float> as_float(params.begin(), params.end());
  runtime::export_parameters(net, as_float, single, layout);
  const auto loaded = runtime::import_parameters(net, single, layout, start);
  CHECK(loaded[0] == static_cast<double>(as_float[0]));
}

TEST_CASE("PyTorch's RNN, LSTM and GRU in loopgrad: same hidden states and gradients as torch autograd (oracle: python3-torch)") {
  if (std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") != 0) {
    MESSAGE("skipped: /usr/bin/python3 with torch (Debian's python3-torch) is not installed");
    return;
  }
  const auto dir = scratch("torch");
  fs::create_directories(dir);
  REQUIRE(std::system(("/usr/bin/python3 " LOOPGRAD_TORCH_REFERENCE " " + dir.string()).c_str()) == 0);
  auto check = [&](const ir::Network& net, const std::string& cell, runtime::Layout layout) {
    INFO("torch.nn." << cell);
    // The cell in PyTorch's names, and the output layer as the torch.nn.Linear `out`.
    for (const auto& m : runtime::torch_linear_layout("W_hy", "b_y", "out.")) layout.push_back(m);
    const runtime::Interpreter<double> k(net);
    const auto params = runtime::import_parameters(net, dir / (cell + "_weights.safetensors"), layout,
                                                   std::vector<double>(k.param_count(), 0.0));
    const auto run = runtime::safetensors::read(dir / (cell + "_run.safetensors"));
    const auto x = run.tensors.at("x").values<double>("x");
    const auto y = run.tensors.at("y").values<double>("y");
    const auto h = run.tensors.at("h").values<double>("h");
    const auto steps = static_cast<std::size_t>(run.tensors.at("x").shape[0]);
    // Hidden states, step by step.
    std::vector<double> state(k.state_size(), 0.0);
    runtime::Interpreter<double>::Step step;
    double worst = 0;
    runtime::Sequence<double> seq;
    for (std::size_t t = 0; t < steps; ++t) {
      k.forward(params.data(), state.data(), x.data() + 3 * t, step);
      const auto& ours = k.value(step, net.find_group(cell + "_h"));
      for (std::size_t i = 0; i < 4; ++i) worst = std::max(worst, std::abs(ours[i] - h[4 * t + i]));
      k.next_state(step, state.data());
      seq.inputs.emplace_back(x.begin() + static_cast<std::ptrdiff_t>(3 * t), x.begin() + static_cast<std::ptrdiff_t>(3 * t + 3));
      seq.targets.emplace_back(std::vector<double>{y[t]});
    }
    MESSAGE("torch.nn." << cell << ": largest difference in the hidden state over " << steps << " steps: " << worst);
    CHECK(worst <= 1e-12);
    // Gradients of sum_t (out(h_t) - y_t)^2: BPTT, and exact RTRL summed over the steps, written in
    // PyTorch's names (export_gradient) and compared tensor by tensor with autograd's.
    const auto bptt = runtime::bptt_gradient(k, params, seq).gradient;
    runtime::ExactRtrl<runtime::Interpreter<double>, double> rtrl(k, static_cast<int>(steps));
    for (std::size_t t = 0; t < steps; ++t) rtrl.observe(params, seq.inputs[t].data(), seq.target(t));
    REQUIRE(rtrl.gradient_ready());
    const auto torch_grads = runtime::safetensors::read(dir / (cell + "_grads.safetensors"));
    for (const auto& [name, gradient] : {std::pair{"BPTT", bptt}, {"exact RTRL", rtrl.gradient()}}) {
      const auto ours_path = dir / (cell + "_ours.safetensors");
      runtime::export_gradient(net, gradient, ours_path, layout);
      const auto ours = runtime::safetensors::read(ours_path);
      double worst_relative = 0;
      for (const auto& m : layout) {
        INFO("tensor " << m.tensor << ", " << name);
        const auto want = torch_grads.tensors.at(m.tensor).values<double>(m.tensor);
        const auto got = ours.tensors.at(m.tensor).values<double>(m.tensor);
        REQUIRE(got.size() == want.size());
        const double d = testing::relative_difference(got.data(), want.data(), got.size());
        worst_relative = std::max(worst_relative, d);
        CHECK(d <= 1e-12);
      }
      MESSAGE("torch.nn." << cell << ": " << std::string(name) << " gradient against autograd, largest relative difference per tensor: "
                          << worst_relative);
    }
  };
  check(dsl::lower(cells::elman_network<3, 4, 1>()), "rnn", runtime::torch_rnn_layout("rnn"));
  check(dsl::lower(cells::lstm_network<3, 4, 1>()), "lstm", runtime::torch_lstm_layout("lstm"));
  check(dsl::lower(cells::gru_network<3, 4, 1>()), "gru", runtime::torch_gru_layout("gru"));
}

TEST_CASE("a run resumed from a checkpoint continues bit for bit") {
  using Kernel = runtime::Interpreter<double>;
  const auto net = dsl::lower(testing::multi_loop_network());
  const Kernel k(net);
  auto input = [&](int t) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(t));
    std::normal_distribution<double> normal;
    std::vector<double> x(k.input_size()), y(k.target_size());
    for (auto& v : x) v = normal(rng);
    for (auto& v : y) v = 0.3 * normal(rng);
    return std::pair{x, y};
  };
  auto train = [&](std::vector<double>& params, runtime::ExactRtrl<Kernel, double>& learner, runtime::Adam<double>& adam,
                   int from, int to) {
    for (int t = from; t < to; ++t) {
      const auto [x, y] = input(t);
      learner.observe(params, x.data(), t % 4 == 1 ? nullptr : y.data());
      if (learner.gradient_ready()) adam.apply(params, learner.gradient());
    }
  };
  const auto initial = runtime::initial_params<double>(net, 3);
  // Uninterrupted.
  auto params_a = initial;
  runtime::ExactRtrl<Kernel, double> learner_a(k, 3);
  runtime::Adam<double> adam_a;
  adam_a.rate = 0.01;
  train(params_a, learner_a, adam_a, 0, 120);
  // Interrupted at step 61 (mid-accumulation), saved, restored into fresh objects, resumed.
  const auto path = scratch("run.checkpoint.safetensors");
  {
    auto params_b = initial;
    runtime::ExactRtrl<Kernel, double> learner_b(k, 3);
    runtime::Adam<double> adam_b;
    adam_b.rate = 0.01;
    train(params_b, learner_b, adam_b, 0, 61);
    runtime::save_checkpoint(path, net.name, params_b, learner_b, adam_b, {{"note", "step 61"}});
  }
  std::vector<double> params_c(initial.size(), 0.0);
  runtime::ExactRtrl<Kernel, double> learner_c(k, 3);
  runtime::Adam<double> adam_c;
  runtime::load_checkpoint(path, net.name, params_c, learner_c, adam_c);
  CHECK(adam_c.rate == 0.01);
  train(params_c, learner_c, adam_c, 61, 120);
  CHECK(std::memcmp(params_a.data(), params_c.data(), params_a.size() * sizeof(double)) == 0);
  CHECK(learner_a.rtrl().sensitivity() == learner_c.rtrl().sensitivity());
  CHECK(runtime::safetensors::read(path).metadata.at("note") == "step 61");

  // A damaged checkpoint or another network's is refused, and nothing changes.
  const auto before = params_c;
  const auto sensitivity = learner_c.rtrl().sensitivity();
  const auto damaged = scratch("damaged.safetensors");
  fs::copy_file(path, damaged, fs::copy_options::overwrite_existing);
  truncate_file(damaged, fs::file_size(path) / 2);
  CHECK_THROWS_WITH(runtime::load_checkpoint(damaged, net.name, params_c, learner_c, adam_c),
                    doctest::Contains("outside the file's"));
  CHECK_THROWS_WITH(runtime::load_checkpoint(path, "elman", params_c, learner_c, adam_c),
                    doctest::Contains("belongs to network 'multi_loop', not 'elman'"));
  runtime::Sgd<double> sgd;
  CHECK_THROWS_WITH(runtime::load_checkpoint(path, net.name, params_c, learner_c, sgd),
                    doctest::Contains("holds a adam optimizer, this run uses sgd"));
  CHECK(params_c == before);
  CHECK(learner_c.rtrl().sensitivity() == sensitivity);
}
