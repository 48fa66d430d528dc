// loopgrad_batch_fusion: should a batch of streams share one weight matrix product? An experiment
// behind rtrl_step_batch's design, printing figures (run by hand, not by CI).
//
// The sensitivity update of each stream multiplies a dense weight matrix W (n x m), scaled row by
// row by the stream's own coefficients c_b (f'(z) of its state), with the stream's tangent block
// (m x cols): T_b += (c_b o W) src_b. loopgrad folds c_b into W per stream and runs one register-
// tiled product per stream (this program's `folded`, the emitted loops). The alternative runs two
// streams at once with W's broadcasts shared and c_b applied in the epilogue (`fused_pair`, 16
// accumulators). Shapes: the stacked 2 x 128 network's recurrent block, 128 x 128 times
// 128 x 16384, 4 streams, double.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

using S = double;
constexpr std::size_t n = 128, m = 128, cols = 16384, streams = 4, tile = 256, lanes = 16;

// Packs the source's columns [j0, j0 + tile) contiguously.
void pack(const S* src, std::size_t j0, S* packed) {
  for (std::size_t s = 0; s < m; ++s)
    for (std::size_t j = 0; j < tile; ++j) packed[s * tile + j] = src[s * cols + j0 + j];
}

void folded(const S* W, const S* c, const S* src, S* T, S* wc, S* packed) {
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t s = 0; s < m; ++s) wc[r * m + s] = c[r] * W[r * m + s];
  for (std::size_t j0 = 0; j0 < cols; j0 += tile) {
    pack(src, j0, packed);
    for (std::size_t r = 0; r < n; r += 4)
      for (std::size_t jc = j0; jc < j0 + tile; jc += lanes) {
        S* t = T + r * cols + jc;
        S a0[lanes], a1[lanes], a2[lanes], a3[lanes];
        for (std::size_t j = 0; j < lanes; ++j) {
          a0[j] = t[j];
          a1[j] = t[cols + j];
          a2[j] = t[2 * cols + j];
          a3[j] = t[3 * cols + j];
        }
        for (std::size_t s = 0; s < m; ++s) {
          const S w0 = wc[r * m + s], w1 = wc[(r + 1) * m + s], w2 = wc[(r + 2) * m + s], w3 = wc[(r + 3) * m + s];
          const S* x = packed + s * tile + (jc - j0);
          for (std::size_t j = 0; j < lanes; ++j) {
            a0[j] += w0 * x[j];
            a1[j] += w1 * x[j];
            a2[j] += w2 * x[j];
            a3[j] += w3 * x[j];
          }
        }
        for (std::size_t j = 0; j < lanes; ++j) {
          t[j] = a0[j];
          t[cols + j] = a1[j];
          t[2 * cols + j] = a2[j];
          t[3 * cols + j] = a3[j];
        }
      }
  }
}

void fused_pair(const S* W, const S* c0, const S* c1, const S* src0, const S* src1, S* T0, S* T1, S* p0, S* p1) {
  for (std::size_t j0 = 0; j0 < cols; j0 += tile) {
    pack(src0, j0, p0);
    pack(src1, j0, p1);
    for (std::size_t r = 0; r < n; r += 4)
      for (std::size_t jc = j0; jc < j0 + tile; jc += lanes) {
        S a0[lanes] = {}, a1[lanes] = {}, a2[lanes] = {}, a3[lanes] = {};
        S b0[lanes] = {}, b1[lanes] = {}, b2[lanes] = {}, b3[lanes] = {};
        for (std::size_t s = 0; s < m; ++s) {
          const S w0 = W[r * m + s], w1 = W[(r + 1) * m + s], w2 = W[(r + 2) * m + s], w3 = W[(r + 3) * m + s];
          const S* x = p0 + s * tile + (jc - j0);
          const S* y = p1 + s * tile + (jc - j0);
          for (std::size_t j = 0; j < lanes; ++j) {
            a0[j] += w0 * x[j];
            a1[j] += w1 * x[j];
            a2[j] += w2 * x[j];
            a3[j] += w3 * x[j];
            b0[j] += w0 * y[j];
            b1[j] += w1 * y[j];
            b2[j] += w2 * y[j];
            b3[j] += w3 * y[j];
          }
        }
        S* t = T0 + r * cols + jc;
        S* u = T1 + r * cols + jc;
        for (std::size_t j = 0; j < lanes; ++j) {
          t[j] += c0[r] * a0[j];
          t[cols + j] += c0[r + 1] * a1[j];
          t[2 * cols + j] += c0[r + 2] * a2[j];
          t[3 * cols + j] += c0[r + 3] * a3[j];
          u[j] += c1[r] * b0[j];
          u[cols + j] += c1[r + 1] * b1[j];
          u[2 * cols + j] += c1[r + 2] * b2[j];
          u[3 * cols + j] += c1[r + 3] * b3[j];
        }
      }
  }
}

template <class F>
double best_of(int runs, F f) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main() {
  std::mt19937 rng(1);
  std::normal_distribution<S> normal;
  std::vector<S> W(n * m), c(streams * n), src(streams * m * cols);
  for (auto* v : {&W, &c, &src})
    for (auto& x : *v) x = normal(rng);
  std::vector<S> T(streams * n * cols, 0.0), T2(streams * n * cols, 0.0), wc(n * m), p0(m * tile), p1(m * tile);
  const int runs = 7;
  const double folded_s = best_of(runs, [&] {
    for (std::size_t b = 0; b < streams; ++b)
      folded(W.data(), c.data() + b * n, src.data() + b * m * cols, T.data() + b * n * cols, wc.data(), p0.data());
  });
  const double fused_s = best_of(runs, [&] {
    for (std::size_t b = 0; b < streams; b += 2)
      fused_pair(W.data(), c.data() + b * n, c.data() + (b + 1) * n, src.data() + b * m * cols,
                 src.data() + (b + 1) * m * cols, T2.data() + b * n * cols, T2.data() + (b + 1) * n * cols, p0.data(),
                 p1.data());
  });
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < T.size(); ++i) {
    diff += (T[i] - T2[i]) * (T[i] - T2[i]);
    norm += T[i] * T[i];
  }
  const double flops = 2.0 * double(n) * double(m) * double(cols) * double(streams);
  std::printf("%zu streams of (%zu x %zu) times (%zu x %zu), double, best of %d runs\n", streams, n, m, m, cols, runs);
  std::printf("  per stream, coefficients folded into W: %8.2f ms  %5.1f GFLOP/s\n", folded_s * 1e3, flops / folded_s / 1e9);
  std::printf("  two streams at once, W shared:         %8.2f ms  %5.1f GFLOP/s\n", fused_s * 1e3, flops / fused_s / 1e9);
  std::printf("  fused vs folded: %.2fx; results agree to %.1e (relative)\n", folded_s / fused_s, std::sqrt(diff / norm));
  return 0;
}
