#pragma once
// The intermediate representation: one network as plain data. The DSL lowers to it, the analysis
// reads it, the interpreter evaluates it and the emitters print it. Nothing here knows templates.
#include <cstddef>
#include <string>
#include <vector>

#include "loopgrad/ir/activation.hpp"

namespace loopgrad::ir {

enum class GroupKind {
  input,   // values given by the user every step
  neuron,  // values computed by the group's defining expression
};

enum class Loss {
  none,                   // not an output
  mse,                    // C = (1/n) sum_i (y_i - t_i)^2
  softmax_cross_entropy,  // C = -sum_i t_i log softmax(y)_i, y are logits
};

// A neuron group (or input): a named vector of `size` values per step. A neuron's value is the
// result of the ops [op_begin, op_end) (the last one), evaluated in that order.
struct Group {
  std::string name;
  int size = 0;
  GroupKind kind = GroupKind::neuron;
  Loss loss = Loss::none;  // set for outputs
  int op_begin = 0;
  int op_end = 0;
  int value_op() const { return op_end - 1; }
  bool is_output() const { return loss != Loss::none; }
};

enum class ConnectionKind {
  dense,     // y = W x, W is (to size) x (from size), row-major
  diagonal,  // y_i = w_i x_i, sizes equal
  identity,  // y = x, no parameters (explicit identity<>() or a group read inside an expression)
  sparse,    // y_{to} += w_e x_{from} for each mask entry e
};

struct MaskEntry {
  int to = 0;    // row in the target group
  int from = 0;  // column in the source group
};

// A connection carries values from one group (possibly delayed by one step) into the expression
// of another group.
struct Connection {
  std::string name;
  ConnectionKind kind = ConnectionKind::identity;
  int from = -1;         // group index
  int to = -1;           // group index whose expression contains it
  bool delayed = false;  // reads the previous step's value of `from`
  int param = -1;        // parameter group, -1 for identity
  int op = -1;           // the op that applies it
  std::vector<MaskEntry> mask;  // sparse only, in declaration order
  bool implicit = false;        // a group read inside an expression, not a declared connection
};

enum class ParamRole { weight, bias };

// A parameter group: `rows * cols` values, row-major. Dense weights are (to x from); diagonal,
// sparse (one value per mask entry) and bias vectors are (n x 1).
// The most values one parameter group, and all of them together, may have (the IR counts in int).
inline constexpr long long max_values = 2147483647;

struct Param {
  std::string name;
  ParamRole role = ParamRole::weight;
  int rows = 0;
  int cols = 1;
  int group = -1;       // group whose expression uses it
  int connection = -1;  // -1 for biases
  int size() const { return rows * cols; }
};

enum class OpCode {
  read,          // the current value of `group`
  read_delayed,  // the previous step's value of `group` (a recurrent state)
  connect,       // apply `connection` to the value of arg a (a read or read_delayed op)
  bias,          // the parameter vector `param`
  constant,      // the scalar `constant` in every element
  add,           // a + b, element-wise
  sub,           // a - b
  mul,           // a * b
  activate,      // activation(a)
};

struct Op {
  OpCode code = OpCode::constant;
  int size = 0;
  int a = -1;
  int b = -1;
  int group = -1;       // read, read_delayed
  int connection = -1;  // connect; also read ops that form an implicit identity connection
  int param = -1;       // bias
  double constant = 0;  // constant
  Activation activation = Activation::identity;  // activate
  int owner = -1;       // the group whose defining expression holds this op
};

struct Network {
  std::string name;
  std::vector<Group> groups;  // declaration order
  std::vector<Connection> connections;
  std::vector<Param> params;
  std::vector<Op> ops;  // grouped by owner, each group's ops in evaluation order

  int find_group(std::string_view group_name) const;
  int find_param(std::string_view param_name) const;
  int find_connection(std::string_view connection_name) const;
  int param_count() const;  // sum of all parameter group sizes
};

// Checks the invariants the analysis relies on; throws std::invalid_argument naming the group,
// connection or op at fault. The DSL produces valid networks; this guards hand-built IR.
void validate(const Network& net);

const char* to_string(ConnectionKind kind);
const char* to_string(Loss loss);

}  // namespace loopgrad::ir
