#pragma once
// The reference interpreter: evaluates any analysed IR network step by step, in float or double.
// It implements the kernel interface every training algorithm uses (docs/design.md, section 2):
//   forward           one step: every op's value from parameters, previous state and inputs
//   loss / reverse    the step loss and its one-step reverse pass (vector-Jacobian product),
//                     giving dC/dP (immediate) and dC/dR_{N-1}
//   sensitivity_update  Eqn. 4, Delta_N from Delta_{N-1}, only the blocks the analysis keeps
//   apply_sensitivity   the recurrent part of Eqn. 5, (dC/dR_{N-1}) Delta_{N-1}
//   sensitivity_runs    Delta's layout as data, row by row (the blocked exact algorithm)
// It is written to be obviously right, not fast: it is the oracle that generated code is
// checked against.
//
// Layouts (all flat arrays of T):
//   parameters   parameter groups in IR order, each row-major (rows x cols), param_offset(p)
//   inputs       input groups in declaration order, concatenated
//   targets      output groups in declaration order, concatenated
//   state        states (analysis().states) in declaration order, concatenated
//   sensitivity  for each state k, for each parameter group p it keeps (analysis().state_params),
//                the block dR^k/dP_p, row-major (n_k x |P_p|); sensitivity_offset(k, p)
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/ir/network.hpp"

namespace loopgrad::runtime {

/// The reference interpreter of an analysed IR network in scalar type T: the kernel interface of a
/// generated kernel (forward, loss, reverse, sensitivity_update, apply_sensitivity, ...), written
/// to be obviously right. The oracle generated code is checked against; every learner runs on it.
/// Layouts as above.
template <class T>
class Interpreter {
 public:
  /// Values of one step, kept for the reverse pass and the sensitivity update.
  struct Step {
    std::vector<std::vector<T>> values;  ///< per op
  };

  /// Analyses `net` (pruned) and interprets it.
  explicit Interpreter(ir::Network net) : Interpreter(net, analysis::analyse(net)) {}
  /// Interprets `net` with an analysis made beforehand (e.g. with AnalysisOptions::prune = false).
  Interpreter(ir::Network net, analysis::Analysis a) : net_(std::move(net)), a_(std::move(a)) {
    std::size_t off = 0;
    for (const auto& p : net_.params) {
      param_offset_.push_back(off);
      off += static_cast<std::size_t>(p.size());
    }
    param_count_ = off;
    off = 0;
    group_offset_.assign(net_.groups.size(), 0);
    for (std::size_t g = 0; g < net_.groups.size(); ++g)
      if (net_.groups[g].kind == ir::GroupKind::input) {
        group_offset_[g] = off;
        off += static_cast<std::size_t>(net_.groups[g].size);
      }
    input_size_ = off;
    off = 0;
    for (std::size_t g = 0; g < net_.groups.size(); ++g)
      if (net_.groups[g].is_output()) {
        target_offset_.push_back(off);
        outputs_.push_back(static_cast<int>(g));
        off += static_cast<std::size_t>(net_.groups[g].size);
      }
    target_size_ = off;
    off = 0;
    for (int g : a_.states) {
      state_offset_.push_back(off);
      off += static_cast<std::size_t>(net_.groups[static_cast<std::size_t>(g)].size);
    }
    state_size_ = off;
    off = 0;
    for (std::size_t k = 0; k < a_.states.size(); ++k) {
      sens_offset_.emplace_back();
      const auto n = static_cast<std::size_t>(net_.groups[static_cast<std::size_t>(a_.states[k])].size);
      for (int p : a_.state_params[k]) {
        sens_offset_.back().push_back(off);
        off += n * static_cast<std::size_t>(net_.params[static_cast<std::size_t>(p)].size());
      }
    }
    sensitivity_size_ = off;
    for (std::size_t k = 0; k < a_.states.size(); ++k) {
      const auto n = static_cast<std::size_t>(net_.groups[static_cast<std::size_t>(a_.states[k])].size);
      for (std::size_t r = 0; r < n; ++r)
        for (std::size_t i = 0; i < a_.state_params[k].size(); ++i) {
          const int p = a_.state_params[k][i];
          const auto cols = static_cast<std::size_t>(net_.params[static_cast<std::size_t>(p)].size());
          runs_.push_back({state_offset_[k] + r, param_offset(p), sens_offset_[k][i] + r * cols, cols});
        }
    }
  }

  const ir::Network& network() const { return net_; }  ///< the network
  const analysis::Analysis& analysis() const { return a_; }  ///< its analysis
  std::size_t param_count() const { return param_count_; }  ///< |P|: the parameter vector's size
  /// Where parameter group p starts in the parameter vector.
  std::size_t param_offset(int p) const { return param_offset_[static_cast<std::size_t>(p)]; }
  std::size_t input_size() const { return input_size_; }  ///< values of one step's input (all input groups)
  std::size_t target_size() const { return target_size_; }  ///< values of one step's target (all output groups)
  std::size_t state_size() const { return state_size_; }  ///< values of the state R (all states)
  /// Where state k (its index in analysis().states) starts in the state.
  std::size_t state_offset(int k) const { return state_offset_[static_cast<std::size_t>(k)]; }
  std::size_t sensitivity_size() const { return sensitivity_size_; }  ///< values of Delta: the stored blocks only
  /// Offset of block (state k, parameter group p) in the sensitivity, or npos if not stored.
  std::size_t sensitivity_offset(int k, int p) const {
    const auto& params = a_.state_params[static_cast<std::size_t>(k)];
    auto it = std::find(params.begin(), params.end(), p);
    if (it == params.end()) return npos;
    return sens_offset_[static_cast<std::size_t>(k)][static_cast<std::size_t>(it - params.begin())];
  }
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);  ///< sensitivity_offset() of a block not stored
  /// false when the analysis approximates (AnalysisOptions::layer_local dropped blocks of Delta):
  /// RTRL then gives the approximation's gradient, and BlockedRtrl refuses the network.
  bool exact_gradient() const { return a_.exact(); }
  /// The exact algorithm the analysis's cost model picks (runtime::ExactOnline follows it): 0 for
  /// RTRL, otherwise the block length of the blocked algorithm.
  int recommended_block_length() const {
    return a_.exact_cost.choice == analysis::ExactAlgorithm::blocked ? a_.exact_cost.block_length : 0;
  }
  /// The same with the block end on a second thread (BlockSchedule::background): the least block
  /// length at which the block end takes no longer than the next block's steps; 0 for RTRL.
  int recommended_background_block_length() const {
    return a_.exact_cost.choice == analysis::ExactAlgorithm::blocked ? a_.exact_cost.background_block_length : 0;
  }

  /// One step forward. `state` is R_{N-1}; the new state is read with next_state().
  void forward(const T* params, const T* state, const T* input, Step& step) const {
    step.values.resize(net_.ops.size());
    for (int g : a_.group_order) {
      const auto& group = net_.groups[static_cast<std::size_t>(g)];
      for (int i = group.op_begin; i < group.op_end; ++i) {
        const auto& op = net_.ops[static_cast<std::size_t>(i)];
        auto& v = step.values[static_cast<std::size_t>(i)];
        v.assign(static_cast<std::size_t>(op.size), T(0));
        const std::vector<T>* a = op.a >= 0 ? &step.values[static_cast<std::size_t>(op.a)] : nullptr;
        const std::vector<T>* b = op.b >= 0 ? &step.values[static_cast<std::size_t>(op.b)] : nullptr;
        const std::size_t n = v.size();
        switch (op.code) {
          case ir::OpCode::read: {
            const auto& src = net_.groups[static_cast<std::size_t>(op.group)];
            if (src.kind == ir::GroupKind::input)
              std::copy_n(input + group_offset_[static_cast<std::size_t>(op.group)], n, v.begin());
            else
              v = step.values[static_cast<std::size_t>(src.value_op())];
            break;
          }
          case ir::OpCode::read_delayed:
            std::copy_n(state + state_offset(state_of(op.group)), n, v.begin());
            break;
          case ir::OpCode::connect: {
            const auto& c = net_.connections[static_cast<std::size_t>(op.connection)];
            const T* w = c.param >= 0 ? params + param_offset(c.param) : nullptr;
            const std::size_t m = a->size();
            switch (c.kind) {
              case ir::ConnectionKind::dense:
                for (std::size_t r = 0; r < n; ++r)
                  for (std::size_t col = 0; col < m; ++col) v[r] += w[r * m + col] * (*a)[col];
                break;
              case ir::ConnectionKind::diagonal:
                for (std::size_t r = 0; r < n; ++r) v[r] = w[r] * (*a)[r];
                break;
              case ir::ConnectionKind::identity: v = *a; break;
              case ir::ConnectionKind::sparse:
                for (std::size_t e = 0; e < c.mask.size(); ++e)
                  v[static_cast<std::size_t>(c.mask[e].to)] += w[e] * (*a)[static_cast<std::size_t>(c.mask[e].from)];
                break;
            }
            break;
          }
          case ir::OpCode::bias: std::copy_n(params + param_offset(op.param), n, v.begin()); break;
          case ir::OpCode::constant: std::fill(v.begin(), v.end(), static_cast<T>(op.constant)); break;
          case ir::OpCode::add:
            for (std::size_t r = 0; r < n; ++r) v[r] = (*a)[r] + (*b)[r];
            break;
          case ir::OpCode::sub:
            for (std::size_t r = 0; r < n; ++r) v[r] = (*a)[r] - (*b)[r];
            break;
          case ir::OpCode::mul:
            for (std::size_t r = 0; r < n; ++r) v[r] = (*a)[r] * (*b)[r];
            break;
          case ir::OpCode::div:
            for (std::size_t r = 0; r < n; ++r) v[r] = (*a)[r] / (*b)[r];
            break;
          case ir::OpCode::activate:
            for (std::size_t r = 0; r < n; ++r) v[r] = ir::activation_value(op.activation, (*a)[r]);
            break;
        }
      }
    }
  }

  /// R_N, the state after `step`.
  void next_state(const Step& step, T* state) const {
    for (std::size_t k = 0; k < a_.states.size(); ++k)
      std::copy(value(step, a_.states[k]).begin(), value(step, a_.states[k]).end(), state + state_offset_[k]);
  }

  /// The values of group g in `step` (neuron groups only).
  const std::vector<T>& value(const Step& step, int g) const {
    return step.values[static_cast<std::size_t>(net_.groups[static_cast<std::size_t>(g)].value_op())];
  }

  /// C_N, the sum of the outputs' losses against `target` (nullptr: no target this step, C = 0).
  T loss(const Step& step, const T* target) const {
    if (target == nullptr) return T(0);
    T c = 0;
    for (std::size_t o = 0; o < outputs_.size(); ++o) {
      const auto& group = net_.groups[static_cast<std::size_t>(outputs_[o])];
      const auto& y = value(step, outputs_[o]);
      const T* t = target + target_offset_[o];
      const std::size_t n = y.size();
      const T w = static_cast<T>(group.loss_weight);
      if (ir::is_elementwise(group.loss)) {
        for (std::size_t i = 0; i < n; ++i) c += w * ir::loss_value(group.loss, y[i], t[i], n);
      } else {
        const T lse = log_sum_exp(y);
        for (std::size_t i = 0; i < n; ++i) c -= w * t[i] * (y[i] - lse);
      }
    }
    return c;
  }

  /// The probabilities softmax(y) of a softmax cross-entropy output, for reading predictions.
  std::vector<T> softmax(const Step& step, int g) const {
    const auto& y = value(step, g);
    const T lse = log_sum_exp(y);
    std::vector<T> p(y.size());
    for (std::size_t i = 0; i < y.size(); ++i) p[i] = std::exp(y[i] - lse);
    return p;
  }

  /// The one-step reverse pass. Seeds: dC_N/dY from `target` (nullptr: none) and `state_adjoint`,
  /// dL/dR_N flowing back from later steps (nullptr: none). Adds the immediate parameter gradient
  /// to `param_grad` and writes dL/dR_{N-1} to `prev_state_adjoint` (state layout).
  void reverse(const T* params, const Step& step, const T* target, const T* state_adjoint, T* param_grad,
               T* prev_state_adjoint) const {
    std::vector<std::vector<T>> adj(net_.ops.size());
    for (std::size_t i = 0; i < net_.ops.size(); ++i) adj[i].assign(static_cast<std::size_t>(net_.ops[i].size), T(0));
    std::fill(prev_state_adjoint, prev_state_adjoint + state_size_, T(0));
    if (target != nullptr)
      for (std::size_t o = 0; o < outputs_.size(); ++o) {
        const auto& group = net_.groups[static_cast<std::size_t>(outputs_[o])];
        const auto& y = value(step, outputs_[o]);
        const T* t = target + target_offset_[o];
        auto& d = adj[static_cast<std::size_t>(group.value_op())];
        const std::size_t n = y.size();
        const T w = static_cast<T>(group.loss_weight);
        if (ir::is_elementwise(group.loss)) {
          for (std::size_t i = 0; i < n; ++i) d[i] += w * ir::loss_gradient(group.loss, y[i], t[i], n);
        } else {
          T sum_t = 0;
          for (std::size_t i = 0; i < n; ++i) sum_t += t[i];
          const T lse = log_sum_exp(y);
          for (std::size_t i = 0; i < n; ++i) d[i] += w * (std::exp(y[i] - lse) * sum_t - t[i]);
        }
      }
    if (state_adjoint != nullptr)
      for (std::size_t k = 0; k < a_.states.size(); ++k) {
        auto& d = adj[static_cast<std::size_t>(net_.groups[static_cast<std::size_t>(a_.states[k])].value_op())];
        for (std::size_t i = 0; i < d.size(); ++i) d[i] += state_adjoint[state_offset_[k] + i];
      }
    for (auto g = a_.group_order.rbegin(); g != a_.group_order.rend(); ++g) {
      const auto& group = net_.groups[static_cast<std::size_t>(*g)];
      for (int i = group.op_end - 1; i >= group.op_begin; --i) {
        const auto& op = net_.ops[static_cast<std::size_t>(i)];
        const auto& d = adj[static_cast<std::size_t>(i)];
        const std::size_t n = d.size();
        switch (op.code) {
          case ir::OpCode::read: {
            const auto& src = net_.groups[static_cast<std::size_t>(op.group)];
            if (src.kind == ir::GroupKind::neuron) add_to(adj[static_cast<std::size_t>(src.value_op())], d, T(1));
            break;
          }
          case ir::OpCode::read_delayed: {
            T* out = prev_state_adjoint + state_offset(state_of(op.group));
            for (std::size_t r = 0; r < n; ++r) out[r] += d[r];
            break;
          }
          case ir::OpCode::connect: {
            const auto& c = net_.connections[static_cast<std::size_t>(op.connection)];
            const auto& x = step.values[static_cast<std::size_t>(op.a)];
            auto& da = adj[static_cast<std::size_t>(op.a)];
            const T* w = c.param >= 0 ? params + param_offset(c.param) : nullptr;
            T* gw = c.param >= 0 ? param_grad + param_offset(c.param) : nullptr;
            const std::size_t m = x.size();
            switch (c.kind) {
              case ir::ConnectionKind::dense:
                for (std::size_t r = 0; r < n; ++r)
                  for (std::size_t col = 0; col < m; ++col) {
                    da[col] += w[r * m + col] * d[r];
                    gw[r * m + col] += d[r] * x[col];
                  }
                break;
              case ir::ConnectionKind::diagonal:
                for (std::size_t r = 0; r < n; ++r) {
                  da[r] += w[r] * d[r];
                  gw[r] += d[r] * x[r];
                }
                break;
              case ir::ConnectionKind::identity: add_to(da, d, T(1)); break;
              case ir::ConnectionKind::sparse:
                for (std::size_t e = 0; e < c.mask.size(); ++e) {
                  const auto to = static_cast<std::size_t>(c.mask[e].to);
                  const auto from = static_cast<std::size_t>(c.mask[e].from);
                  da[from] += w[e] * d[to];
                  gw[e] += d[to] * x[from];
                }
                break;
            }
            break;
          }
          case ir::OpCode::bias: {
            T* gb = param_grad + param_offset(op.param);
            for (std::size_t r = 0; r < n; ++r) gb[r] += d[r];
            break;
          }
          case ir::OpCode::constant: break;
          case ir::OpCode::add:
            add_to(adj[static_cast<std::size_t>(op.a)], d, T(1));
            add_to(adj[static_cast<std::size_t>(op.b)], d, T(1));
            break;
          case ir::OpCode::sub:
            add_to(adj[static_cast<std::size_t>(op.a)], d, T(1));
            add_to(adj[static_cast<std::size_t>(op.b)], d, T(-1));
            break;
          case ir::OpCode::mul: {
            const auto& va = step.values[static_cast<std::size_t>(op.a)];
            const auto& vb = step.values[static_cast<std::size_t>(op.b)];
            for (std::size_t r = 0; r < n; ++r) {
              adj[static_cast<std::size_t>(op.a)][r] += d[r] * vb[r];
              adj[static_cast<std::size_t>(op.b)][r] += d[r] * va[r];
            }
            break;
          }
          case ir::OpCode::div: {  // y = a / b: dy/da = 1/b, dy/db = -y/b
            const auto& vb = step.values[static_cast<std::size_t>(op.b)];
            const auto& y = step.values[static_cast<std::size_t>(i)];
            for (std::size_t r = 0; r < n; ++r) {
              adj[static_cast<std::size_t>(op.a)][r] += d[r] / vb[r];
              adj[static_cast<std::size_t>(op.b)][r] -= d[r] * y[r] / vb[r];
            }
            break;
          }
          case ir::OpCode::activate: {
            const auto& z = step.values[static_cast<std::size_t>(op.a)];
            const auto& y = step.values[static_cast<std::size_t>(i)];
            for (std::size_t r = 0; r < n; ++r)
              adj[static_cast<std::size_t>(op.a)][r] += d[r] * ir::activation_derivative(op.activation, y[r], z[r]);
            break;
          }
        }
      }
    }
  }

  /// Eqn. 4 evaluated path by path: tangent blocks dv/dP_p propagated through the step in
  /// evaluation order, seeded by Delta_{N-1} at each delay() and by the immediate blocks at each
  /// parameter. Only the blocks in analysis().op_tangent are formed. Writes Delta_N.
  void sensitivity_update(const T* params, const Step& step, const T* delta_prev, T* delta_next) const {
    // tangent[i][b]: block of op i for parameter group a_.op_tangent[i][b], (size_i x |P_p|).
    std::vector<std::vector<std::vector<T>>> tangent(net_.ops.size());
    auto block_of = [&](int i, int p) -> const std::vector<T>* {
      const auto& ps = a_.op_tangent[static_cast<std::size_t>(i)];
      auto it = std::find(ps.begin(), ps.end(), p);
      return it == ps.end() ? nullptr : &tangent[static_cast<std::size_t>(i)][static_cast<std::size_t>(it - ps.begin())];
    };
    for (int g : a_.group_order) {
      const auto& group = net_.groups[static_cast<std::size_t>(g)];
      for (int i = group.op_begin; i < group.op_end; ++i) {
        const auto& ps = a_.op_tangent[static_cast<std::size_t>(i)];
        if (ps.empty()) continue;
        const auto& op = net_.ops[static_cast<std::size_t>(i)];
        const std::size_t n = static_cast<std::size_t>(op.size);
        auto& blocks = tangent[static_cast<std::size_t>(i)];
        blocks.resize(ps.size());
        for (std::size_t b = 0; b < ps.size(); ++b) {
          const int p = ps[b];
          const std::size_t cols = static_cast<std::size_t>(net_.params[static_cast<std::size_t>(p)].size());
          auto& out = blocks[b];
          out.assign(n * cols, T(0));
          const std::vector<T>* ta = op.a >= 0 ? block_of(op.a, p) : nullptr;
          const std::vector<T>* tb = op.b >= 0 ? block_of(op.b, p) : nullptr;
          switch (op.code) {
            case ir::OpCode::read: out = *block_of(net_.groups[static_cast<std::size_t>(op.group)].value_op(), p); break;
            case ir::OpCode::read_delayed: {
              const int k = state_of(op.group);
              std::copy_n(delta_prev + sensitivity_offset(k, p), n * cols, out.begin());
              break;
            }
            case ir::OpCode::connect: {
              const auto& c = net_.connections[static_cast<std::size_t>(op.connection)];
              const T* w = c.param >= 0 ? params + param_offset(c.param) : nullptr;
              const auto& x = step.values[static_cast<std::size_t>(op.a)];
              const std::size_t m = x.size();
              if (ta != nullptr) {  // the recurrent or upstream part: the connection's Jacobian times T_a
                switch (c.kind) {
                  case ir::ConnectionKind::dense:
                    for (std::size_t r = 0; r < n; ++r)
                      for (std::size_t s = 0; s < m; ++s)
                        for (std::size_t j = 0; j < cols; ++j) out[r * cols + j] += w[r * m + s] * (*ta)[s * cols + j];
                    break;
                  case ir::ConnectionKind::diagonal:
                    for (std::size_t r = 0; r < n; ++r)
                      for (std::size_t j = 0; j < cols; ++j) out[r * cols + j] = w[r] * (*ta)[r * cols + j];
                    break;
                  case ir::ConnectionKind::identity: out = *ta; break;
                  case ir::ConnectionKind::sparse:
                    for (std::size_t e = 0; e < c.mask.size(); ++e)
                      for (std::size_t j = 0; j < cols; ++j)
                        out[static_cast<std::size_t>(c.mask[e].to) * cols + j] +=
                            w[e] * (*ta)[static_cast<std::size_t>(c.mask[e].from) * cols + j];
                    break;
                }
              }
              if (p == c.param) {  // the immediate block: d(connection output)/d(its own weights)
                switch (c.kind) {
                  case ir::ConnectionKind::dense:
                    for (std::size_t r = 0; r < n; ++r)
                      for (std::size_t s = 0; s < m; ++s) out[r * cols + r * m + s] += x[s];
                    break;
                  case ir::ConnectionKind::diagonal:
                    for (std::size_t r = 0; r < n; ++r) out[r * cols + r] += x[r];
                    break;
                  case ir::ConnectionKind::sparse:
                    for (std::size_t e = 0; e < c.mask.size(); ++e)
                      out[static_cast<std::size_t>(c.mask[e].to) * cols + e] += x[static_cast<std::size_t>(c.mask[e].from)];
                    break;
                  case ir::ConnectionKind::identity: break;
                }
              }
              break;
            }
            case ir::OpCode::bias:
              for (std::size_t r = 0; r < n; ++r) out[r * cols + r] = T(1);
              break;
            case ir::OpCode::constant: break;
            case ir::OpCode::add:
            case ir::OpCode::sub: {
              const T sign = op.code == ir::OpCode::sub ? T(-1) : T(1);
              if (ta != nullptr) add_to(out, *ta, T(1));
              if (tb != nullptr) add_to(out, *tb, sign);
              break;
            }
            case ir::OpCode::mul: {
              const auto& va = step.values[static_cast<std::size_t>(op.a)];
              const auto& vb = step.values[static_cast<std::size_t>(op.b)];
              for (std::size_t r = 0; r < n; ++r)
                for (std::size_t j = 0; j < cols; ++j) {
                  if (ta != nullptr) out[r * cols + j] += vb[r] * (*ta)[r * cols + j];
                  if (tb != nullptr) out[r * cols + j] += va[r] * (*tb)[r * cols + j];
                }
              break;
            }
            case ir::OpCode::div: {  // y = a / b: dy = da / b - (y / b) db
              const auto& vb = step.values[static_cast<std::size_t>(op.b)];
              const auto& y = step.values[static_cast<std::size_t>(i)];
              for (std::size_t r = 0; r < n; ++r)
                for (std::size_t j = 0; j < cols; ++j) {
                  if (ta != nullptr) out[r * cols + j] += (*ta)[r * cols + j] / vb[r];
                  if (tb != nullptr) out[r * cols + j] -= y[r] / vb[r] * (*tb)[r * cols + j];
                }
              break;
            }
            case ir::OpCode::activate: {
              const auto& z = step.values[static_cast<std::size_t>(op.a)];
              const auto& y = step.values[static_cast<std::size_t>(i)];
              for (std::size_t r = 0; r < n; ++r) {
                const T d = ir::activation_derivative(op.activation, y[r], z[r]);
                for (std::size_t j = 0; j < cols; ++j) out[r * cols + j] = d * (*ta)[r * cols + j];
              }
              break;
            }
          }
        }
      }
    }
    std::fill(delta_next, delta_next + sensitivity_size_, T(0));
    for (std::size_t k = 0; k < a_.states.size(); ++k) {
      const int value_op = net_.groups[static_cast<std::size_t>(a_.states[k])].value_op();
      for (int p : a_.state_params[k]) {
        const auto* block = block_of(value_op, p);
        std::copy(block->begin(), block->end(), delta_next + sensitivity_offset(static_cast<int>(k), p));
      }
    }
  }

  /// The recurrent part of Eqn. 5: param_grad += sum_k (dC/dR^k_{N-1}) Delta^k_{N-1}.
  void apply_sensitivity(const T* delta_prev, const T* prev_state_adjoint, T* param_grad) const {
    for (std::size_t k = 0; k < a_.states.size(); ++k) {
      const auto n = static_cast<std::size_t>(net_.groups[static_cast<std::size_t>(a_.states[k])].size);
      const T* g = prev_state_adjoint + state_offset_[k];
      for (int p : a_.state_params[k]) {
        const auto cols = static_cast<std::size_t>(net_.params[static_cast<std::size_t>(p)].size());
        const T* block = delta_prev + sensitivity_offset(static_cast<int>(k), p);
        T* out = param_grad + param_offset(p);
        for (std::size_t r = 0; r < n; ++r)
          for (std::size_t j = 0; j < cols; ++j) out[j] += g[r] * block[r * cols + j];
      }
    }
  }

  /// Delta's layout as data: one record per run of stored entries of a row (here every stored
  /// block's row is one run). The blocked exact algorithm reads and writes Delta row by row with it.
  struct SensitivityRun {
    std::size_t unit;    ///< the row's position in the state layout
    std::size_t column;  ///< its first parameter column
    std::size_t at;      ///< where the run is stored
    std::size_t length;  ///< its number of columns
  };
  const std::vector<SensitivityRun>& sensitivity_runs() const { return runs_; }  ///< every run, in storage order

  /// Position of group g in the state layout (its index in analysis().states).
  int state_of(int g) const { return a_.state_index[static_cast<std::size_t>(g)]; }

 private:
  static void add_to(std::vector<T>& out, const std::vector<T>& in, T scale) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] += scale * in[i];
  }
  static T log_sum_exp(const std::vector<T>& y) {
    const T top = *std::max_element(y.begin(), y.end());
    T s = 0;
    for (T v : y) s += std::exp(v - top);
    return top + std::log(s);
  }

  ir::Network net_;
  analysis::Analysis a_;
  std::vector<std::size_t> param_offset_, group_offset_, target_offset_, state_offset_;
  std::vector<int> outputs_;
  std::vector<std::vector<std::size_t>> sens_offset_;
  std::vector<SensitivityRun> runs_;
  std::size_t param_count_ = 0, input_size_ = 0, target_size_ = 0, state_size_ = 0, sensitivity_size_ = 0;
};

}  // namespace loopgrad::runtime
