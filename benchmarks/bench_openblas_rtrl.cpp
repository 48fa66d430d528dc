// loopgrad_bench's rows rtrl/<elman>/openblas: exact RTRL for the Elman networks written by hand on
// OpenBLAS, the way one would without loopgrad, as the competitor of the generated kernel
// (rtrl/<elman>/pruned) in the same run.
//
// The recurrent layer's sensitivity Delta (H x S, S = H*In + H*H + H, row-major, the parameters in
// loopgrad's order) takes one dgemm per step, with the gradient fused in as one more row:
//
//     [ diag(f') W_hh ]                     Delta_N      = diag(f') (W_hh Delta_(N-1) + I_N)
//     [   u^T W_hh    ]  times Delta_(N-1):  dC_N/dP_rnn = u^T (W_hh Delta_(N-1) + I_N), u = f' * (W_hy^T dC/dy)
//
// then the immediate term I_N (x, h_(N-1) and 1 in each row's own columns) is added to the H + 1
// rows. The output layer's gradient is its immediate term. Before it is timed the hand-written
// step is checked against the generated kernel's rtrl_step over 4 steps (the row fails otherwise).
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench_rows.hpp"
#include "kernel_types.hpp"

// The pruned kernels of the Elman networks.
#include "elman16.hpp"
#include "elman256.hpp"
#include "elman512.hpp"
#include "elman64.hpp"

extern "C" void openblas_set_num_threads(int);

namespace {

template <std::size_t In, std::size_t H, std::size_t Out>
class ElmanOpenBlasRtrl {
 public:
  static constexpr std::size_t S = H * In + H * H + H;  // the recurrent layer's parameters
  static constexpr std::size_t P = S + Out * H + Out;   // all parameters
  static constexpr long long macs = static_cast<long long>((H + 1) * H * S);  // the dgemm

  // One step: the loss at this step, its gradient (all P parameters) in `grad`.
  double step(const double* p, const double* x, const double* t, double* grad) {
    const double *W_xh = p, *W_hh = p + H * In, *b_h = W_hh + H * H, *W_hy = b_h + H, *b_y = W_hy + Out * H;
    // Forward.
    for (std::size_t i = 0; i < H; ++i) z_[i] = b_h[i];
    cblas_dgemv(CblasRowMajor, CblasNoTrans, H, In, 1.0, W_xh, In, x, 1, 1.0, z_.data(), 1);
    cblas_dgemv(CblasRowMajor, CblasNoTrans, H, H, 1.0, W_hh, H, h_.data(), 1, 1.0, z_.data(), 1);
    for (std::size_t i = 0; i < H; ++i) {
      z_[i] = std::tanh(z_[i]);
      fp_[i] = 1.0 - z_[i] * z_[i];
    }
    double loss = 0;
    for (std::size_t k = 0; k < Out; ++k) {
      double y = b_y[k];
      for (std::size_t i = 0; i < H; ++i) y += W_hy[k * H + i] * z_[i];
      dy_[k] = 2.0 * (y - t[k]) / double(Out);
      loss += (y - t[k]) * (y - t[k]) / double(Out);
    }
    // The output layer's gradient, and u = f' * (W_hy^T dC/dy).
    for (std::size_t k = 0; k < Out; ++k) {
      for (std::size_t i = 0; i < H; ++i) grad[S + k * H + i] = dy_[k] * z_[i];
      grad[S + Out * H + k] = dy_[k];
    }
    cblas_dgemv(CblasRowMajor, CblasTrans, Out, H, 1.0, W_hy, H, dy_.data(), 1, 0.0, u_.data(), 1);
    for (std::size_t i = 0; i < H; ++i) u_[i] *= fp_[i];
    // A = [diag(f') W_hh; u^T W_hh], then the one product with Delta_(N-1).
    for (std::size_t i = 0; i < H; ++i)
      for (std::size_t j = 0; j < H; ++j) a_[i * H + j] = fp_[i] * W_hh[i * H + j];
    cblas_dgemv(CblasRowMajor, CblasTrans, H, H, 1.0, W_hh, H, u_.data(), 1, 0.0, a_.data() + H * H, 1);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, H + 1, S, H, 1.0, a_.data(), H, delta_.data(), S, 0.0,
                next_.data(), S);
    // The immediate term: row i of I_N has x in W_xh's row i, h_(N-1) in W_hh's row i, 1 at b_h's i.
    for (std::size_t r = 0; r <= H; ++r) {
      double* const row = next_.data() + r * S;
      const auto add = [&](std::size_t i, double scale) {
        for (std::size_t j = 0; j < In; ++j) row[i * In + j] += scale * x[j];
        for (std::size_t j = 0; j < H; ++j) row[H * In + i * H + j] += scale * h_[j];
        row[H * In + H * H + i] += scale;
      };
      if (r < H) {
        add(r, fp_[r]);
      } else {
        for (std::size_t i = 0; i < H; ++i) add(i, u_[i]);
      }
    }
    std::copy(next_.begin() + static_cast<std::ptrdiff_t>(H * S), next_.end(), grad);
    std::swap(delta_, next_);
    std::copy(z_.begin(), z_.end(), h_.begin());
    return loss;
  }

 private:
  std::vector<double> h_ = std::vector<double>(H), z_ = std::vector<double>(H), fp_ = std::vector<double>(H);
  std::vector<double> dy_ = std::vector<double>(Out), u_ = std::vector<double>(H);
  std::vector<double> a_ = std::vector<double>((H + 1) * H);
  std::vector<double> delta_ = std::vector<double>((H + 1) * S), next_ = std::vector<double>((H + 1) * S);
};

// The largest difference between the hand-written step's gradients and the generated kernel's
// over 4 steps, relative to the largest gradient entry.
template <class Hand, class K>
double difference_to_kernel(const std::vector<double>& p) {
  using namespace bench;
  Hand hand;
  typename K::Params params;
  std::copy(p.begin(), p.end(), params.flat.begin());
  typename K::State r;
  typename K::Sensitivity delta;
  typename K::Gradient kernel_grad;
  typename K::Step step;
  std::vector<double> grad(Hand::P);
  double worst = 0;
  for (unsigned t = 0; t < 4; ++t) {
    typename K::Input x;
    typename K::Target y;
    const auto xv = random_vector(x.flat.size(), 100 + t), yv = random_vector(y.flat.size(), 200 + t);
    std::copy(xv.begin(), xv.end(), x.flat.begin());
    std::copy(yv.begin(), yv.end(), y.flat.begin());
    K::rtrl_step(params, r, delta, x, &y, kernel_grad, step);
    hand.step(p.data(), x.flat.data(), y.flat.data(), grad.data());
    double scale = 0, diff = 0;
    for (std::size_t i = 0; i < Hand::P; ++i) {
      scale = std::max(scale, std::abs(kernel_grad.flat[i]));
      diff = std::max(diff, std::abs(kernel_grad.flat[i] - grad[i]));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

template <std::size_t In, std::size_t H, std::size_t Out, class K>
void openblas_rtrl(benchmark::State& state, const std::vector<double>& p, std::optional<double>& checked) {
  openblas_set_num_threads(1);
  using Hand = ElmanOpenBlasRtrl<In, H, Out>;
  if (!checked) checked = difference_to_kernel<Hand, K>(p);
  const double difference = *checked;
  if (!(difference <= 1e-10)) {
    state.SkipWithError(("the hand-written OpenBLAS RTRL differs from the kernel by " + std::to_string(difference)).c_str());
    return;
  }
  Hand hand;
  std::vector<double> grad(Hand::P);
  const auto x = bench::random_vector(In, 1), t = bench::random_vector(Out, 2);
  for (auto _ : state) {
    benchmark::DoNotOptimize(hand.step(p.data(), x.data(), t.data(), grad.data()));
    benchmark::ClobberMemory();
  }
  state.counters["ns_per_step"] = bench::per_step_ns();
  state.counters["macs"] = static_cast<double>(Hand::macs);
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * static_cast<double>(Hand::macs), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["relative_difference_to_kernel"] = difference;
}

template <std::size_t In, std::size_t H, std::size_t Out, class K>
void register_elman(const std::string& name) {
  static_assert(ElmanOpenBlasRtrl<In, H, Out>::P == K::n_params(), "the hand-written Elman has the kernel's parameters");
  // Random normal parameters scaled by 0.5 / sqrt(H), a stable recurrence; the timing does not
  // depend on the values.
  auto params = bench::random_vector(K::n_params(), 31);
  for (std::size_t i = 0; i < params.size(); ++i) params[i] *= 0.5 / std::sqrt(double(H));
  auto checked = std::make_shared<std::optional<double>>();
  benchmark::RegisterBenchmark(("rtrl/" + name + "/openblas").c_str(), [params, checked](benchmark::State& s) {
    openblas_rtrl<In, H, Out, K>(s, params, *checked);
  })->Unit(benchmark::kMicrosecond);
}

}  // namespace

// Called by loopgrad_bench's main() before the run.
void register_openblas_rtrl_rows() {
  using Elman16 = LOOPGRAD_KERNEL_TYPES(elman16);
  using Elman64 = LOOPGRAD_KERNEL_TYPES(elman64);
  using Elman256 = LOOPGRAD_KERNEL_TYPES(elman256);
  using Elman512 = LOOPGRAD_KERNEL_TYPES(elman512);
  register_elman<8, 16, 8, Elman16>("elman16");
  register_elman<8, 64, 8, Elman64>("elman64");
  register_elman<8, 256, 8, Elman256>("elman256");
  register_elman<8, 512, 8, Elman512>("elman512");
}
