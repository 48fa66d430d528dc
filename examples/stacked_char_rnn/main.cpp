// stacked_char_rnn: the two-layer stacked RNN with softmax cross-entropy, learning a character
// language model online (exact RTRL, an Adam update every character) on a small corpus the
// example generates from a tiny grammar. Prints what the analysis pruned (the cross term from
// layer 2 back to layer 1, and every sensitivity block of layer 1 w.r.t. layer 2's and the
// output's parameters), the loss in bits per character as it falls, and a sample of text.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "char_rnn_kernel.hpp"
#include "example_support.hpp"
#include "loopgrad/emit/report.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"
#include "network.hpp"

namespace {

using Kernel = char_rnn_kernel::Kernel;
using Scalar = char_rnn_kernel::Scalar;

int code(char c) { return c == ' ' ? 26 : c == '.' ? 27 : c - 'a'; }
char letter(int i) { return i == 26 ? ' ' : i == 27 ? '.' : static_cast<char>('a' + i); }

// Sentences of a tiny grammar: "the cat sees a dog. a bird likes the fish. ..."
std::string corpus(std::size_t length, unsigned seed) {
  const char* determiners[] = {"the", "a"};
  const char* nouns[] = {"cat", "dog", "bird", "fish", "fox"};
  const char* verbs[] = {"sees", "likes", "chases", "finds"};
  std::mt19937 rng(seed);
  std::string text;
  while (text.size() < length) {
    text += std::string(determiners[rng() % 2]) + " " + nouns[rng() % 5] + " " + verbs[rng() % 4] + " " +
            determiners[rng() % 2] + " " + nouns[rng() % 5] + ". ";
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Options opt(argc, argv, {{"steps", "24000"}, {"rate", "0.002"}, {"out", "stacked_char_rnn_results"}},
                        "stacked_char_rnn: a two-layer character model learned online with exact RTRL");
  const int steps = opt.integer("steps");
  const std::filesystem::path out = opt.text("out");
  std::filesystem::create_directories(out);

  const auto net = loopgrad::dsl::lower(char_rnn::network());
  const auto analysis = loopgrad::analysis::analyse(net);
  std::printf("%s", loopgrad::emit::summary(net, analysis).c_str());
  std::printf("pruned sensitivity blocks (structurally zero, never stored or computed):\n");
  for (const auto& b : analysis.sensitivity_blocks)
    if (!b.nonzero)
      std::printf("  d %s / d %s\n", net.groups[static_cast<std::size_t>(b.state)].name.c_str(),
                  net.params[static_cast<std::size_t>(b.param)].name.c_str());
  std::printf("\n");

  const Kernel kernel;
  char_rnn_kernel::Params p;
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(-0.2, 0.2);
  for (auto& w : p.flat) w = u(rng);
  auto params = p.flat;
  loopgrad::runtime::Adam<Scalar> adam;
  adam.rate = opt.number("rate");
  loopgrad::runtime::ExactRtrl<Kernel, Scalar> learner(kernel);

  const std::string text = corpus(static_cast<std::size_t>(steps) + 1, 11);
  const int window = std::max(1, steps / 60);
  examples::Curves curves{"step", {"bits_per_character"}, {{}}, {}};
  double sum = 0;
  std::vector<Scalar> x(char_rnn::alphabet), y(char_rnn::alphabet);
  for (int t = 0; t < steps; ++t) {
    std::fill(x.begin(), x.end(), Scalar(0));
    std::fill(y.begin(), y.end(), Scalar(0));
    x[static_cast<std::size_t>(code(text[static_cast<std::size_t>(t)]))] = 1;
    y[static_cast<std::size_t>(code(text[static_cast<std::size_t>(t) + 1]))] = 1;
    sum += learner.observe(params, x.data(), y.data()) / std::log(2.0);
    if (learner.gradient_ready()) adam.apply(params, learner.gradient());
    if ((t + 1) % window == 0) {
      curves.x.push_back(t + 1);
      curves.columns[0].push_back(sum / window);
      if (curves.x.size() % 6 == 0) {
        std::printf("  step %6d: %.3f bits per character\n", t + 1, sum / window);
        std::fflush(stdout);
      }
      sum = 0;
    }
  }

  // A sample of 160 characters drawn from the model's softmax, starting from "the ".
  std::vector<Scalar> state(Kernel::state_size(), 0);
  Kernel::Step step;
  std::string sample = "the ";
  for (char c : sample) {
    std::fill(x.begin(), x.end(), Scalar(0));
    x[static_cast<std::size_t>(code(c))] = 1;
    kernel.forward(params.data(), state.data(), x.data(), step);
    kernel.next_state(step, state.data());
  }
  std::mt19937 draw(2);
  for (int i = 0; i < 160; ++i) {
    const Scalar* logits = step.a().data();
    std::vector<double> prob(char_rnn::alphabet);
    double top = logits[0], total = 0;
    for (std::size_t k = 1; k < prob.size(); ++k) top = std::max(top, static_cast<double>(logits[k]));
    for (std::size_t k = 0; k < prob.size(); ++k) total += prob[k] = std::exp(logits[k] - top);
    std::discrete_distribution<int> pick(prob.begin(), prob.end());
    const char c = letter(pick(draw));
    sample += c;
    std::fill(x.begin(), x.end(), Scalar(0));
    x[static_cast<std::size_t>(code(c))] = 1;
    kernel.forward(params.data(), state.data(), x.data(), step);
    kernel.next_state(step, state.data());
  }
  // Each sentence makes 1 + log2(5) + 2 + 1 + log2(5) bits of choices over 21.8 characters on average.
  std::printf("(the corpus's own entropy is about %.2f bits per character)\n", (4 + 2 * std::log2(5.0)) / 21.8);
  std::printf("\nsample: %s\n", sample.c_str());
  curves.write_csv(out / "stacked_char_rnn_curve.csv");
  examples::plot_csv(out / "stacked_char_rnn_curve.csv", out / "stacked_char_rnn_curve.png",
                     "stacked_char_rnn: loss while learning online", "bits per character", 1, false);
  std::printf("wrote %s/stacked_char_rnn_curve.csv\n", out.string().c_str());
  return 0;
}
