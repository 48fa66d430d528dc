// The analysis of every cell and of the hand-built networks, against what is derived by hand in
// each test case: edge classes, loops and their order, which cross terms and sensitivity blocks
// are nonzero, and the MAC and memory counts (closed-form expressions of the sizes).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <tuple>

#include "../networks.hpp"
#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/emit/kernel.hpp"
#include "loopgrad/emit/report.hpp"

using namespace loopgrad;

namespace {

struct Analysed {
  ir::Network net;
  analysis::Analysis a;
};

template <class N>
Analysed analysed(const N& n) {
  auto net = dsl::lower(n);
  auto a = analysis::analyse(net);
  return {std::move(net), std::move(a)};
}

std::string cls(const Analysed& x, const std::string& connection) {
  const int c = x.net.find_connection(connection);
  REQUIRE_MESSAGE(c >= 0, "no connection " << connection);
  return analysis::to_string(x.a.connection_class[static_cast<std::size_t>(c)]);
}

bool cross(const Analysed& x, const std::string& to, const std::string& from) {
  return x.a.cross_term(x.net.find_group(to), x.net.find_group(from));
}

std::set<std::string> nonzero_cross_terms(const Analysed& x) {
  std::set<std::string> out;
  for (const auto& t : x.a.cross_terms)
    if (t.nonzero) out.insert(x.net.groups[t.to].name + "<-" + x.net.groups[t.from].name);
  return out;
}

std::set<std::string> block_params(const Analysed& x, const std::string& state) {
  std::set<std::string> out;
  for (const auto& b : x.a.sensitivity_blocks)
    if (b.nonzero && x.net.groups[b.state].name == state) out.insert(x.net.params[b.param].name);
  return out;
}

std::vector<std::string> loop_states(const Analysed& x, int order) {
  std::vector<std::string> out;
  for (int g : x.a.loops.at(order).states) out.push_back(x.net.groups[g].name);
  return out;
}

long size_of(const Analysed& x, std::initializer_list<const char*> params) {
  long n = 0;
  for (const char* p : params) n += x.net.params[x.net.find_param(p)].size();
  return n;
}

}  // namespace

TEST_CASE("Elman: one self-recurrent loop, only the layer's parameters in Delta") {
  constexpr long In = 3, H = 5;
  auto x = analysed(cells::elman_network<In, H, 2>());
  CHECK(cls(x, "rnn_W_xh") == "feed-forward");
  CHECK(cls(x, "rnn_W_hh") == "feed-back");
  CHECK(cls(x, "W_hy") == "feed-forward");
  REQUIRE(x.a.loops.size() == 1);
  CHECK(loop_states(x, 0) == std::vector<std::string>{"rnn_h"});
  CHECK(x.a.loops[0].self_recurrent);
  CHECK(nonzero_cross_terms(x) == std::set<std::string>{"rnn_h<-rnn_h"});
  CHECK(block_params(x, "rnn_h") == std::set<std::string>{"rnn_W_xh", "rnn_W_hh", "rnn_b_h"});
  CHECK(x.a.recurrency_abstraction_violations.empty());
  CHECK(x.a.unreachable_params.empty());
  // |S| = In*H + H*H + H tangent columns. Every leaf's coefficient is tanh' (one multiply per
  // unit, evaluated once). Per block: W_hh * T(h') costs H*H*cols plus H*H to fold tanh' into
  // W_hh; the immediate blocks of W_xh and W_hh cost H*In and H*H; the bias's costs nothing.
  const long S = In * H + H * H + H, P = S + 2 * H + 2;
  CHECK(x.a.macs_per_step == H * H * S + 3 * H * H + H * In + H * H + 3 * H);
  CHECK(x.a.macs_per_step < x.a.dense_macs_per_step);
  CHECK(x.a.sensitivity_values == H * S);
  CHECK(x.a.dense_sensitivity_values == H * P);
  CHECK(x.a.sensitivity_block_values == H * S);  // a dense recurrence fills every block
}

TEST_CASE("stacked RNN: two ordered loops, D[h1,h2] pruned, no Delta of layer 1 w.r.t. layer 2") {
  constexpr long D = 3, H1 = 4, H2 = 5, A = 3;
  auto x = analysed(cells::stacked_rnn_network<D, H1, H2, A>());
  CHECK(cls(x, "stack_W_h1h2") == "feed-forward");
  CHECK(cls(x, "stack_W_h1h1") == "feed-back");
  CHECK(cls(x, "stack_W_h2h2") == "feed-back");
  REQUIRE(x.a.loops.size() == 2);
  CHECK(loop_states(x, 0) == std::vector<std::string>{"stack_h1"});
  CHECK(loop_states(x, 1) == std::vector<std::string>{"stack_h2"});
  CHECK(nonzero_cross_terms(x) == std::set<std::string>{"stack_h1<-stack_h1", "stack_h2<-stack_h1", "stack_h2<-stack_h2"});
  CHECK_FALSE(cross(x, "stack_h1", "stack_h2"));
  CHECK(block_params(x, "stack_h1") == std::set<std::string>{"stack_W_xh1", "stack_W_h1h1", "stack_b_h1"});
  CHECK(block_params(x, "stack_h2") == std::set<std::string>{"stack_W_xh1", "stack_W_h1h1", "stack_b_h1", "stack_W_h1h2",
                                                             "stack_W_h2h2", "stack_b_h2"});
  const long S1 = D * H1 + H1 * H1 + H1, S2 = S1 + H1 * H2 + H2 * H2 + H2;
  // h1 as an Elman layer; h2: W_h1h2 T(h1) over layer 1's 3 blocks, W_h2h2 T(h2') over all 6,
  // each with its coefficient folded into the weights once per block, the immediate blocks of
  // W_h1h2 and W_h2h2, and the three coefficients.
  const long h1 = H1 * H1 * S1 + 3 * H1 * H1 + D * H1 + H1 * H1 + 3 * H1;
  const long h2 = H2 * H1 * S1 + 3 * H2 * H1 + H2 * H2 * S2 + 6 * H2 * H2 + H2 * H1 + H2 * H2 + 3 * H2;
  CHECK(x.a.macs_per_step == h1 + h2);
  CHECK(x.a.sensitivity_values == H1 * S1 + H2 * S2);
}

TEST_CASE("LSTM: h and c form one loop and violate the Recurrency-Abstraction prediction") {
  constexpr long In = 3, H = 4;
  auto x = analysed(cells::lstm_network<In, H, 2>());
  for (const char* g : {"i", "f", "g", "o"}) {
    CHECK(cls(x, std::string("lstm_W_i") + g) == "feed-forward");
    CHECK(cls(x, std::string("lstm_W_h") + g) == "feed-back");
  }
  CHECK(cls(x, "lstm_c->lstm_h") == "feed-forward");  // inside the loop, but not delayed
  CHECK(cls(x, "delay(lstm_c)->lstm_c") == "feed-back");
  REQUIRE(x.a.loops.size() == 1);
  CHECK(loop_states(x, 0) == std::vector<std::string>{"lstm_c", "lstm_h"});
  CHECK(nonzero_cross_terms(x) ==
        std::set<std::string>{"lstm_c<-lstm_c", "lstm_c<-lstm_h", "lstm_h<-lstm_c", "lstm_h<-lstm_h"});
  REQUIRE(x.a.recurrency_abstraction_violations.size() == 1);
  CHECK(x.a.recurrency_abstraction_violations[0] ==
        std::pair<int, int>{x.net.find_group("lstm_c"), x.net.find_group("lstm_h")});
  // Both states depend on all 16 gate parameter groups, and nothing on the output layer.
  CHECK(block_params(x, "lstm_c").size() == 16);
  CHECK(block_params(x, "lstm_h") == block_params(x, "lstm_c"));
  CHECK_FALSE(block_params(x, "lstm_h").count("W_hy"));
  const long S = 4 * (In * H + H * H + 2 * H);
  CHECK(x.a.sensitivity_values == 2 * H * S);
  // Leaves: c = f * c' + i * g has four (f, c', i, g: each scaled by the other factor), h = o *
  // tanh(c) two; the gates' leaves are their connections and biases.
  CHECK(x.a.leaves[x.net.find_group("lstm_c")].size() == 4);
  CHECK(x.a.leaves[x.net.find_group("lstm_h")].size() == 2);
  CHECK(x.a.macs_per_step < x.a.dense_macs_per_step);
}

TEST_CASE("GRU: one loop, h") {
  constexpr long In = 3, H = 4;
  auto x = analysed(cells::gru_network<In, H, 2>());
  CHECK(cls(x, "gru_W_hn") == "feed-back");
  CHECK(cls(x, "delay(gru_h)->gru_h") == "feed-back");
  CHECK(cls(x, "gru_r->gru_n") == "feed-forward");
  REQUIRE(x.a.loops.size() == 1);
  CHECK(loop_states(x, 0) == std::vector<std::string>{"gru_h"});
  CHECK(block_params(x, "gru_h").size() == 12);
  CHECK(x.a.sensitivity_values == H * 3 * (In * H + H * H + 2 * H));
}

TEST_CASE("diagonal RNN: the recurrence is element-wise") {
  constexpr long In = 3, H = 6;
  auto x = analysed(cells::diagonal_rnn_network<In, H, 2>());
  CHECK(x.net.connections[x.net.find_connection("diag_w_hh")].kind == ir::ConnectionKind::diagonal);
  CHECK(cls(x, "diag_w_hh") == "feed-back");
  const long S = In * H + H + H;
  // At neuron level Delta stays row-sparse: unit r depends only on its own row of W_xh, its own
  // w_hh and b_h entries, so the H*S entries of the blocks hold S nonzeros, the values stored.
  CHECK(x.a.sensitivity_block_values == H * S);
  CHECK(x.a.sensitivity_values == S);
  const auto& p = x.a.pattern(x.net.find_group("diag_h"), x.net.find_param("diag_W_xh"));
  for (long r = 0; r < H; ++r) CHECK(p.rows[std::size_t(r)] == std::vector<analysis::Run>{{r * In, r * In + In}});
  // diagonal w * T(h') touches each stored entry once: S (+ H per block to fold in tanh'), not
  // H*H*S; the immediate blocks of W_xh and w_hh cost H*In and H; three coefficients of H each.
  CHECK(x.a.macs_per_step == S + 3 * H + H * In + H + 3 * H);
  CHECK(x.a.gradient_macs_per_step == S);
  // Without pruning every block is stored full.
  const auto dense = analysis::analyse(x.net, {.prune = false});
  CHECK(dense.sensitivity_values == dense.dense_sensitivity_values);
  CHECK(dense.macs_per_step == x.a.dense_macs_per_step);
}

// The layer's own parameters: everything but the output layer (W_hy, b_y).
long layer_params(const Analysed& x) {
  long n = 0;
  for (const auto& p : x.net.params)
    if (p.name != "W_hy" && p.name != "b_y") n += p.size();
  return n;
}

TEST_CASE("element-wise cells store the structural minimum: each parameter reaches one unit, |P| values") {
  // IndRNN, minGRU, minLSTM and the RG-LRU recur element by element: unit r's Delta row holds its
  // own row of every input weight and its own entry of every vector, nothing else.
  const Analysed cells_under_test[] = {analysed(cells::indrnn_network<5, 7, 2>()), analysed(cells::min_gru_network<5, 7, 2>()),
                                       analysed(cells::min_lstm_network<5, 7, 2>()), analysed(cells::rg_lru_network<7, 2>())};
  for (const auto& x : cells_under_test) {
    INFO("network " << x.net.name);
    CHECK(x.a.sensitivity_values == layer_params(x));
    CHECK(x.a.sensitivity_values < x.a.sensitivity_block_values);
    // The cost model keeps RTRL, whose cost is O(|P|) here.
    CHECK(x.a.exact_cost.choice == analysis::ExactAlgorithm::rtrl);
    for (const auto& loop : x.a.loops) CHECK(loop.states.size() == 1);
  }
  // The eLSTM: only c recurs; its Delta holds W_z's and W_f's rows (2 H In) and w_z, w_f, b_z, b_f
  // (4 H), one unit each. The output gate (W_ox, W_oc, b_o) reads c but reaches no state.
  constexpr long In = 5, H = 7;
  const auto e = analysed(cells::elstm_network<In, H, 2>());
  CHECK(e.a.sensitivity_values == 2 * H * In + 4 * H);
  REQUIRE(e.a.loops.size() == 1);
  CHECK(loop_states(e, 0) == std::vector<std::string>{"elstm_c"});
  CHECK(block_params(e, "elstm_c") ==
        std::set<std::string>{"elstm_W_z", "elstm_W_f", "elstm_w_z", "elstm_w_f", "elstm_b_z", "elstm_b_f"});
  CHECK(e.a.exact_cost.choice == analysis::ExactAlgorithm::rtrl);
}

TEST_CASE("LRU: the rotation pair is one loop, and each unit's parameters reach both halves of the unit, twice |P|") {
  constexpr long In = 5, H = 7;
  const auto x = analysed(cells::lru_network<In, H, 2>());
  // h_re reads h_im' and h_im reads h_re' (the 2 x 2 rotation): one loop, all four cross terms,
  // and the Recurrency-Abstraction prediction fails for the pair.
  REQUIRE(x.a.loops.size() == 1);
  CHECK(loop_states(x, 0) == std::vector<std::string>{"lru_h_re", "lru_h_im"});
  for (const char* to : {"lru_h_re", "lru_h_im"})
    for (const char* from : {"lru_h_re", "lru_h_im"}) CHECK(cross(x, to, from));
  CHECK(x.a.recurrency_abstraction_violations.size() == 1);
  // a_re, a_im and g are computed from parameters alone; the readout C, D reaches no state.
  const std::set<std::string> recurrent = {"lru_nu_log", "lru_theta_log", "lru_gamma_log", "lru_B_re", "lru_B_im"};
  CHECK(block_params(x, "lru_h_re") == recurrent);
  CHECK(block_params(x, "lru_h_im") == recurrent);
  // Unit r's rows in both halves: its row of B_re and of B_im, its own nu, theta and gamma.
  CHECK(x.a.sensitivity_values == 2 * (3 * H + 2 * H * In));
  for (const char* state : {"lru_h_re", "lru_h_im"}) {
    const int g = x.net.find_group(state);
    for (const char* matrix : {"lru_B_re", "lru_B_im"}) {
      const auto& p = x.a.pattern(g, x.net.find_param(matrix));
      for (long r = 0; r < H; ++r) CHECK(p.rows[std::size_t(r)] == std::vector<analysis::Run>{{r * In, r * In + In}});
    }
    for (const char* vector : {"lru_nu_log", "lru_theta_log", "lru_gamma_log"}) {
      const auto& p = x.a.pattern(g, x.net.find_param(vector));
      for (long r = 0; r < H; ++r) CHECK(p.rows[std::size_t(r)] == std::vector<analysis::Run>{{r, r + 1}});
    }
  }
  CHECK(x.a.exact_cost.choice == analysis::ExactAlgorithm::rtrl);
}

TEST_CASE("a connection reading an expression reads an implicit group named after it") {
  auto x = analysed(testing::expression_sources_network());
  const auto group = [&](const char* name) {
    const int g = x.net.find_group(name);
    REQUIRE_MESSAGE(g >= 0, "no group " << name);
    return x.net.groups[static_cast<std::size_t>(g)];
  };
  // One implicit neuron group per connection that reads an expression, of the expression's size.
  CHECK(group("W_hh_in").size == 4);  // g * delay(h)
  CHECK(group("A_in").size == 5);     // tanh(B (x * x)), B fixed at 5 outputs
  CHECK(group("B_in").size == 3);     // x * x
  CHECK(group("w_s_in").size == 4);   // 1 - square(delay(h))
  CHECK(group("W_hy_in").size == 4);  // h + c
  for (const char* name : {"W_hh_in", "A_in", "B_in", "w_s_in", "W_hy_in"}) CHECK(group(name).kind == ir::GroupKind::neuron);
  // The connection reads its group at the current step; the group holds the delayed reads.
  const auto& w_hh = x.net.connections[static_cast<std::size_t>(x.net.find_connection("W_hh"))];
  CHECK(x.net.groups[static_cast<std::size_t>(w_hh.from)].name == "W_hh_in");
  CHECK_FALSE(w_hh.delayed);
  CHECK(x.net.params[static_cast<std::size_t>(w_hh.param)].rows == 4);
  CHECK(x.net.params[static_cast<std::size_t>(w_hh.param)].cols == 4);
  const auto& b = x.net.connections[static_cast<std::size_t>(x.net.find_connection("B"))];
  CHECK(x.net.groups[static_cast<std::size_t>(b.from)].name == "B_in");
  CHECK(x.net.groups[static_cast<std::size_t>(b.to)].name == "A_in");
  CHECK(cls(x, "W_hh") == "feed-forward");
  CHECK(cls(x, "delay(h)->W_hh_in") == "feed-back");
  CHECK(cls(x, "delay(h)->w_s_in") == "feed-back");
  // A parameter inside a source belongs to the implicit group.
  CHECK(x.net.params[static_cast<std::size_t>(x.net.find_param("c"))].group == x.net.find_group("W_hy_in"));
  // One loop, h; the implicit groups are not states. Delta(h) holds every parameter before the
  // output: g's through W_hh_in, A and B through A_in, w_s; not c and W_hy.
  REQUIRE(x.a.loops.size() == 1);
  CHECK(loop_states(x, 0) == std::vector<std::string>{"h"});
  CHECK(block_params(x, "h") == std::set<std::string>{"W_xg", "b_g", "W_hh", "A", "B", "w_s"});
  // Each implicit group is evaluated before the group that reads it.
  const auto position = [&](const char* name) {
    const auto& order = x.a.group_order;
    return std::find(order.begin(), order.end(), x.net.find_group(name)) - order.begin();
  };
  CHECK(position("g") < position("W_hh_in"));
  CHECK(position("W_hh_in") < position("h"));
  CHECK(position("B_in") < position("A_in"));
  CHECK(position("A_in") < position("h"));
  CHECK(position("h") < position("W_hy_in"));
  CHECK(position("W_hy_in") < position("y"));
}

TEST_CASE("weight sharing: connections and biases of one name share one parameter group") {
  auto x = analysed(testing::shared_weights_network());
  // One parameter group per name, in the order of first use (d is in W_y's source, W_y_in,
  // which is lowered after the groups the user defined).
  std::vector<std::string> names;
  for (const auto& p : x.net.params) names.push_back(p.name);
  CHECK(names == std::vector<std::string>{"W_x", "U", "b_h", "W", "W_y", "d"});
  CHECK(x.net.param_count() == 4 * 3 + 4 * 4 + 4 + 4 * 4 + 4 + 2 * 4);
  // The second use of a name is a connection of its own, W#2, on the same weights.
  const auto& u2 = x.net.connections[static_cast<std::size_t>(x.net.find_connection("U#2"))];
  CHECK(u2.param == x.net.find_param("U"));
  CHECK(x.net.groups[static_cast<std::size_t>(u2.to)].name == "h2");
  CHECK(x.net.connections[static_cast<std::size_t>(x.net.find_connection("W#2"))].param == x.net.find_param("W"));
  CHECK(x.net.connections[static_cast<std::size_t>(x.net.find_connection("d#2"))].param == x.net.find_param("d"));
  const auto users = ir::param_users(x.net);
  CHECK(users[static_cast<std::size_t>(x.net.find_param("U"))] == std::vector<int>{x.net.find_group("h1"), x.net.find_group("h2")});
  CHECK(users[static_cast<std::size_t>(x.net.find_param("b_h"))] == std::vector<int>{x.net.find_group("h1"), x.net.find_group("h2")});
  // h1 and h2 are one loop each (h2 reads h1, not back); U and b_h reach both states, W only h2.
  REQUIRE(x.a.loops.size() == 2);
  CHECK(block_params(x, "h1") == std::set<std::string>{"W_x", "U", "b_h"});
  CHECK(block_params(x, "h2") == std::set<std::string>{"W_x", "U", "b_h", "W"});
  CHECK(x.a.unreachable_params.empty());
  // Hand-built IR whose shared weights do not fit one of their connections is refused.
  auto bad = x.net;
  bad.params[static_cast<std::size_t>(bad.find_param("W"))].cols = 3;
  CHECK_THROWS_WITH_AS(analysis::analyse(bad), doctest::Contains("connection 'W' uses parameter 'W' of shape 4 x 3, and needs 4 x 4"),
                       std::invalid_argument);
}

TEST_CASE("multi-loop network: three loops, a terminating branch, a skip and a sparse connection") {
  auto x = analysed(testing::multi_loop_network());
  // classes
  CHECK(cls(x, "W_xa") == "feed-forward");
  CHECK(cls(x, "W_aa") == "feed-back");
  CHECK(cls(x, "W_ba") == "feed-back");
  CHECK(cls(x, "S_ab") == "feed-forward");
  CHECK(cls(x, "w_bb") == "feed-back");
  CHECK(cls(x, "W_cc") == "feed-back");
  CHECK(cls(x, "W_xc") == "feed-forward");
  CHECK(cls(x, "W_ay") == "feed-forward");
  CHECK(cls(x, "W_cd") == "terminating");
  CHECK(cls(x, "w_dd") == "terminating");
  CHECK(x.net.connections[x.net.find_connection("S_ab")].kind == ir::ConnectionKind::sparse);
  // loops: {a, b} first, then {c}, then {d}
  REQUIRE(x.a.loops.size() == 3);
  CHECK(loop_states(x, 0) == std::vector<std::string>{"a", "b"});
  CHECK(loop_states(x, 1) == std::vector<std::string>{"c"});
  CHECK(loop_states(x, 2) == std::vector<std::string>{"d"});
  // cross terms: a path inside one step from delay(l) to k
  CHECK(nonzero_cross_terms(x) == std::set<std::string>{"a<-a", "a<-b", "b<-a", "b<-b", "c<-a", "c<-b", "c<-c",
                                                        "d<-a", "d<-b", "d<-c", "d<-d"});
  CHECK(x.a.cross_terms.size() == 16);
  REQUIRE(x.a.recurrency_abstraction_violations.size() == 1);
  CHECK(x.a.recurrency_abstraction_violations[0] == std::pair<int, int>{x.net.find_group("a"), x.net.find_group("b")});
  // sensitivity blocks: a and b share their loop's parameters; c adds its own; d is not stored.
  const std::set<std::string> ab{"W_xa", "W_aa", "W_ba", "b_a", "S_ab", "w_bb", "b_b"};
  CHECK(block_params(x, "a") == ab);
  CHECK(block_params(x, "b") == ab);
  auto c = ab;
  c.insert({"W_bc", "W_cc", "W_xc"});
  CHECK(block_params(x, "c") == c);
  CHECK(block_params(x, "d").empty());
  CHECK(x.a.unreachable_params == std::vector<int>{x.net.find_param("W_cd"), x.net.find_param("w_dd")});
  CHECK_FALSE(x.a.influences_loss[x.net.find_group("d")]);
  const long Sab = size_of(x, {"W_xa", "W_aa", "W_ba", "b_a", "S_ab", "w_bb", "b_b"});
  const long Sc = Sab + size_of(x, {"W_bc", "W_cc", "W_xc"});
  CHECK(x.a.sensitivity_block_values == 4 * Sab + 3 * Sab + 2 * Sc);
  std::int64_t stored = 0;
  for (const auto& b : x.a.sensitivity_blocks) stored += b.nonzeros;
  CHECK(x.a.sensitivity_values == stored);
  CHECK(x.a.sensitivity_values <= x.a.sensitivity_block_values);
  CHECK(x.a.macs_per_step < x.a.dense_macs_per_step);
}

TEST_CASE("an algebraic loop is an error that names the cycle and where a delay could go") {
  using namespace dsl;
  constexpr auto x = input<"x", 2>;
  constexpr auto p = neuron<"p", 2>;
  constexpr auto q = neuron<"q", 2>;
  constexpr auto y = neuron<"y", 2>;
  auto net = lower(network<"algebraic">(x, p = tanh(dense<"W_xp">(x) + dense<"W_qp">(q)),
                                        q = tanh(dense<"W_pq">(p)), output(y = dense<"W_qy">(q), mse)));
  try {
    analysis::analyse(net);
    FAIL("an algebraic loop was accepted");
  } catch (const analysis::AnalysisError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("network 'algebraic'") != std::string::npos);
    CHECK(msg.find("p -> q -> p") != std::string::npos);
    CHECK(msg.find("delay(q)") != std::string::npos);
    CHECK(msg.find("W_qp") != std::string::npos);
  }
  auto self = lower(network<"self">(x, p = tanh(dense<"W_xp">(x)) + p, output(y = dense<"W_py">(p), mse)));
  CHECK_THROWS_WITH_AS(analysis::analyse(self), doctest::Contains("group 'p' reads its own value"),
                       analysis::AnalysisError);
}

TEST_CASE("a network that trains nothing is refused, naming its parameters and outputs") {
  using namespace dsl;
  constexpr auto x = input<"x", 2>;
  constexpr auto h = neuron<"h", 3>;
  constexpr auto y = neuron<"y", 2>;
  // h is computed and trained, but the output reads the input only: no parameter reaches the loss.
  auto stray = lower(network<"stray">(x, h = tanh(dense<"W_xh">(x) + dense<"W_hh">(delay(h)) + bias<"b_h">),
                                      output(y = tanh(x), mse)));
  CHECK_THROWS_WITH_AS(analysis::analyse(stray),
                       doctest::Contains("network 'stray': none of its parameters ('W_xh', 'W_hh', 'b_h') reaches the "
                                         "loss of an output ('y')"),
                       analysis::AnalysisError);
  // Hand-built IR with no output at all (the DSL refuses it at compile time).
  auto silent = dsl::lower(cells::elman_network<3, 4, 2>());
  for (auto& g : silent.groups) g.loss = ir::Loss::none;
  CHECK_THROWS_WITH_AS(analysis::analyse(silent), doctest::Contains("has no output, so nothing is trained"),
                       analysis::AnalysisError);
  // One parameter that reaches the loss is enough: the others are reported, not refused.
  auto partly = lower(network<"partly">(x, h = tanh(dense<"W_xh">(x) + dense<"W_hh">(delay(h))),
                                        output(y = dense<"W_xy">(x), mse)));
  const auto a = analysis::analyse(partly);
  CHECK(a.unreachable_params == std::vector<int>{partly.find_param("W_xh"), partly.find_param("W_hh")});
}

TEST_CASE("names the generated kernel cannot use are refused at generation, naming the group or parameter") {
  auto refused = [](ir::Network net, const std::string& message) {
    INFO("expecting: " << message);
    const auto a = analysis::analyse(net);
    CHECK_THROWS_WITH_AS(emit::emit_kernel(net, a, {}), doctest::Contains(message.c_str()), std::invalid_argument);
  };
  const auto elman = dsl::lower(cells::elman_network<3, 4, 2>());
  auto keyword = elman;
  keyword.groups[1].name = "int";
  refused(keyword, "group name 'int' is a C++ keyword and cannot name it in the generated kernel; rename the group");
  auto own = elman;
  own.params[0].name = "flat";
  refused(own, "parameter name 'flat' is a name the generated kernel declares itself; rename the parameter");
  auto step_member = elman;  // Step names every group: a group 'values' would hide Step::values
  step_member.groups[1].name = "values";
  refused(step_member, "group name 'values' is a name the generated kernel declares itself; rename the group");
  auto reserved = elman;
  reserved.groups[1].name = "_State";
  refused(reserved, "group name '_State' cannot name a C++ variable");
  // The Sensitivity views d_<state>_d_<param>: state 's_d' with parameter 'P' and state 's' with
  // parameter 'd_P' would both be d_s_d_d_P.
  auto views = dsl::lower(testing::multi_loop_network());
  const auto a = analysis::analyse(views);
  REQUIRE(a.states.size() >= 2);
  REQUIRE(a.state_params[1].size() >= 2);
  const int p = a.state_params[0][0];
  const int other = a.state_params[1][0] != p ? a.state_params[1][0] : a.state_params[1][1];
  views.groups[static_cast<std::size_t>(a.states[0])].name = "s_d";
  views.groups[static_cast<std::size_t>(a.states[1])].name = "s";
  views.params[static_cast<std::size_t>(p)].name = "P";
  views.params[static_cast<std::size_t>(other)].name = "d_P";
  refused(views, "the sensitivity blocks d s_d / d P and d s / d d_P would both be named 'd_s_d_d_P'");
  // The unchanged networks generate.
  CHECK_NOTHROW(emit::emit_kernel(elman, analysis::analyse(elman), {}));
}

TEST_CASE("hand-built IR with a mistake is rejected with a message naming it") {
  auto net = dsl::lower(cells::elman_network<3, 4, 2>());
  net.connections[0].mask.push_back({7, 0});
  net.connections[0].kind = ir::ConnectionKind::sparse;
  CHECK_THROWS_WITH_AS(analysis::analyse(net), doctest::Contains("sparse connection 'rnn_W_xh'"), std::invalid_argument);
  // A group of 46,341 neurons: its dense recurrent weights have more values than an int counts.
  auto huge = dsl::lower(cells::elman_network<3, 4, 2>());
  const int w = huge.find_param("rnn_W_hh");
  REQUIRE(w >= 0);
  huge.params[static_cast<std::size_t>(w)].rows = 46341;
  huge.params[static_cast<std::size_t>(w)].cols = 46341;
  CHECK_THROWS_WITH_AS(analysis::analyse(huge),
                       "network 'elman': parameter 'rnn_W_hh' has 46341 x 46341 = 2147488281 values, more than loopgrad's "
                       "limit of 2147483647 per parameter group; use smaller groups or sparse connections",
                       std::invalid_argument);
  auto many = dsl::lower(cells::elman_network<3, 4, 2>());
  for (auto& p : many.params) {
    p.rows = 30000;
    p.cols = 30000;
  }
  CHECK_THROWS_WITH_AS(analysis::analyse(many), doctest::Contains("the parameters have more than 2147483647 values in all"),
                       std::invalid_argument);
}

TEST_CASE("analysis orders are deterministic and follow declaration order") {
  auto first = analysed(testing::multi_loop_network());
  auto second = analysed(testing::multi_loop_network());
  CHECK(emit::to_json(first.net, first.a) == emit::to_json(second.net, second.a));
  std::vector<std::string> order;
  for (int g : first.a.group_order) order.push_back(first.net.groups[g].name);
  CHECK(order == std::vector<std::string>{"a", "b", "c", "d", "y"});
}

TEST_CASE("the JSON report carries every field, consistent with the analysis") {
  auto x = analysed(testing::multi_loop_network());
  auto j = emit::to_json(x.net, x.a);
  CHECK(j["network"] == "multi_loop");
  CHECK(j["neurons"].size() == x.net.groups.size());
  CHECK(j["neurons"][1]["name"] == "a");
  CHECK(j["neurons"][1]["state"] == true);
  CHECK(j["neurons"][5]["state"] == false);
  CHECK(j["connections"].size() == x.net.connections.size());
  for (const auto& c : j["connections"]) {
    CHECK(c.contains("from"));
    CHECK(c.contains("to"));
    CHECK(std::set<std::string>{"dense", "diagonal", "identity", "sparse"}.count(c["kind"]) == 1);
    CHECK(std::set<std::string>{"feed-forward", "feed-back", "terminating"}.count(c["class"]) == 1);
    if (c["name"] == "W_xa") CHECK(c["params"] == 12);
    if (c["name"] == "S_ab") CHECK(c["params"] == 4);
  }
  CHECK(j["loops"].size() == 3);
  CHECK(j["loops"][1]["states"][0] == "c");
  CHECK(j["loops"][1]["order"] == 1);
  CHECK(j["cross_terms"].size() == 16);
  CHECK(j["recurrency_abstraction_violations"] == nlohmann::json::array({nlohmann::json::array({"a", "b"})}));
  CHECK(j["sensitivity_blocks"].size() == 4 * x.net.params.size());
  CHECK(j["macs_per_step"] == x.a.macs_per_step);
  CHECK(j["dense_macs_per_step"] == x.a.dense_macs_per_step);
  CHECK(j["sensitivity_values"] == x.a.sensitivity_values);
  const std::string dot = emit::to_dot(x.net, x.a);
  CHECK(dot.find("cluster_loop_0") != std::string::npos);
  CHECK(dot.find("style=dashed, color=\"#2050d0\"") != std::string::npos);  // feed-back
  CHECK(dot.find("style=dotted") != std::string::npos);                    // terminating
}

TEST_CASE("the exact cost model: closed form on Elman, the blocked algorithm for dense cells of 64 units, RTRL for a diagonal layer") {
  constexpr long In = 8, H = 64, Out = 2;
  auto x = analysed(cells::elman_network<In, H, Out>());
  const auto& c = x.a.exact_cost;
  // The reverse pass: every leaf of h carries tanh' = 1 - y*y (one multiply) times the adjoint (one
  // more) per unit; W_xh then costs H*In for its gradient (its source is an input), W_hh 2*H*H
  // (gradient and delay(h)'s adjoint); y is linear, so W_hy costs 2*Out*H and the biases nothing more.
  CHECK(c.reverse_macs == 3 * 2 * H + H * In + 2 * H * H + 2 * Out * H);
  // The block end's sweep over many columns visits h alone (y does not reach the state). Per call
  // tanh' once per unit for the dense leaves' shared adjoint and once for the bias; per column the
  // adjoint times it for each of the two, W_xh's gradient (H*In), W_hh's gradient and delay(h)'s
  // adjoint (2*H*H).
  CHECK(c.column_reverse_macs == 2 * H + H * In + 2 * H * H);
  CHECK(c.column_call_macs == 2 * H);
  CHECK(c.sensitivity_rows == H);
  const long S = In * H + H * H + H;
  CHECK(x.a.gradient_macs_per_step == H * S);
  CHECK(c.rtrl_macs == c.reverse_macs + x.a.macs_per_step + H * S);
  for (long h : {1L, 7L, 64L, 100L})
    CHECK(analysis::blocked_macs_per_step(x.a, int(h)) ==
          H * c.column_reverse_macs + (H / 32) * c.column_call_macs + (H * H * S + h - 1) / h +
              ((h + 1) * c.reverse_macs + 1) / 2 + H * S);
  // The cost weighs a reverse pass's multiply-adds by 3, a Delta pass's by 6, the block end's
  // product's by 2, and adds each reverse pass's cleared values (the adjoints of h and y, and the
  // state's) and 1,000 per call. The block end's sweeps (32 seeds at once) weigh their
  // multiply-adds by 1.5 (their coefficients once per 32 seeds) and pay the call once per 32
  // seeds. Both pay 8 per value a dense product writes: RTRL's W_hh times delay(h)'s block
  // writes H x S every step, the block end's product of the H rows' adjoints with Delta_s writes
  // H x S per block. At 64 units both the reverse pass (under 32,768 multiply-adds) and Delta
  // (under 2^20 values) stay in cache, which halves their weights to 1.5 and 3; with the cache
  // thresholds at 0 the streaming weights apply.
  CHECK(c.reverse_values == 2 * H + Out);
  CHECK(x.a.product_output_values == H * S);
  CHECK(c.reverse_macs <= 32768);
  CHECK(H * S <= (1 << 20));
  analysis::ExactCostWeights streaming;
  streaming.cached_reverse_macs = 0;
  streaming.cached_delta_values = 0;
  const double block_pass = 1.5 * (double(c.column_reverse_macs) + double(c.column_call_macs) / 32) + double(2 * H + Out) +
                            1000.0 / 32;
  for (const auto& [weights, reverse_weight, delta_weight] :
       {std::tuple{analysis::ExactCostWeights{}, 1.5, 3.0}, std::tuple{streaming, 3.0, 6.0}}) {
    const double reverse_pass = reverse_weight * double(c.reverse_macs) + double(2 * H + Out) + 1000.0;
    const double delta_pass = delta_weight * double(H * S);
    auto planned = x.a;
    analysis::plan_exact_cost(x.net, planned, weights);
    CHECK(planned.exact_cost.rtrl_cost ==
          doctest::Approx(reverse_pass + double(x.a.macs_per_step) + 8.0 * double(H * S) + delta_pass));
    for (double h : {1.0, 7.0, 64.0})
      CHECK(analysis::blocked_cost_per_step(x.a, int(h), weights) ==
            doctest::Approx(double(H) * block_pass + (h + 1) / 2 * reverse_pass + (2.0 * H + 8.0) * double(H * S) / h +
                            delta_pass));
    // The background schedule: the caller sweeps back through the current and the closing block
    // ((3h + 1) / 2 reverse passes on average) and passes over Delta_s once; the second thread's
    // block end is h steps of every row's sweep, the rows' product with Delta_s and 2,000,000 to
    // start. Its block length is the least h with 0.8 x (h caller steps) >= one block end: the
    // positive root of 0.8 (1.5 R h^2 + (R / 2 + D) h) - H B h - (2 H + 8) |Delta| - 2e6 = 0,
    // rounded up.
    for (double h : {1.0, 7.0, 64.0}) {
      const auto background = analysis::background_cost_per_step(x.a, int(h), weights);
      CHECK(background.caller == doctest::Approx((3 * h + 1) / 2 * reverse_pass + delta_pass));
      CHECK(background.block_end == doctest::Approx(h * double(H) * block_pass + (2.0 * H + 8.0) * double(H * S) + 2e6));
    }
    const double qa = 0.8 * 1.5 * reverse_pass, qb = 0.8 * (reverse_pass / 2 + delta_pass) - double(H) * block_pass,
                 qc = (2.0 * H + 8.0) * double(H * S) + 2e6;
    const double root = (-qb + std::sqrt(qb * qb + 4 * qa * qc)) / (2 * qa);
    CHECK(planned.exact_cost.background_block_length == std::max(1, int(std::ceil(root))));
    CHECK(planned.exact_cost.choice == analysis::ExactAlgorithm::blocked);
  }
  // The thresholds are inclusive: at the pass's multiply-adds (Delta's values) it is cached, one
  // below it streams.
  for (const std::int64_t margin : {0, -1}) {
    analysis::ExactCostWeights edge;
    edge.cached_reverse_macs = c.reverse_macs + margin;
    edge.cached_delta_values = H * S + margin;
    const double reverse_weight = margin == 0 ? 1.5 : 3.0, delta_weight = margin == 0 ? 3.0 : 6.0;
    CHECK(analysis::blocked_cost_per_step(x.a, 1, edge) ==
          doctest::Approx(double(H) * block_pass + reverse_weight * double(c.reverse_macs) + double(2 * H + Out) + 1000.0 +
                          (2.0 * H + 8.0) * double(H * S) + delta_weight * double(H * S)));
  }
  // The block length minimises the cost, which is below RTRL's by about the state size.
  CHECK(c.blocked_macs == analysis::blocked_macs_per_step(x.a, c.block_length));
  CHECK(c.blocked_cost == analysis::blocked_cost_per_step(x.a, c.block_length));
  for (int h = 1; h <= 4 * H; ++h) CHECK(analysis::blocked_cost_per_step(x.a, h) >= c.blocked_cost);
  CHECK(c.choice == analysis::ExactAlgorithm::blocked);
  CHECK(c.rtrl_macs > 10 * c.blocked_macs);
  CHECK(c.rtrl_cost > 3 * c.blocked_cost);
  // Half a block and more shorter than block_end's: the caller's sweep is longer by h.
  CHECK(c.background_block_length > 1);
  CHECK(c.background_block_length < c.block_length);

  CHECK(analysed(cells::lstm_network<8, 64, 2>()).a.exact_cost.choice == analysis::ExactAlgorithm::blocked);
  CHECK(analysed(cells::gru_network<8, 64, 2>()).a.exact_cost.choice == analysis::ExactAlgorithm::blocked);
  CHECK(analysed(cells::stacked_rnn_network<8, 64, 64, 8>()).a.exact_cost.choice == analysis::ExactAlgorithm::blocked);
  // An element-wise recurrence stores |P| values of Delta: RTRL is O(|P|) there.
  const auto diagonal = analysed(cells::diagonal_rnn_network<32, 1024, 2>());
  CHECK(diagonal.a.exact_cost.choice == analysis::ExactAlgorithm::rtrl);
  CHECK(diagonal.a.exact_cost.rtrl_cost < diagonal.a.exact_cost.blocked_cost);
  // A tiny dense layer: the block end's sweeps cost more than RTRL saves.
  CHECK(analysed(cells::elman_network<3, 2, 2>()).a.exact_cost.choice == analysis::ExactAlgorithm::rtrl);
  // The reports carry it.
  const auto j = emit::to_json(x.net, x.a);
  CHECK(j["exact_cost"]["choice"] == "blocked");
  CHECK(j["exact_cost"]["block_length"] == c.block_length);
  CHECK(j["exact_cost"]["background_block_length"] == c.background_block_length);
  CHECK(emit::to_dot(x.net, x.a).find("exact algorithm: blocked") != std::string::npos);
}
