#pragma once
// The intermediate representation: one network as plain data. The DSL lowers to it, the analysis
// reads it, the interpreter evaluates it and the emitters print it. Nothing here knows templates.
#include <cstddef>
#include <string>
#include <vector>

#include "loopgrad/ir/activation.hpp"
#include "loopgrad/ir/loss.hpp"

namespace loopgrad::ir {

/// Whether a group's values are given (an input) or computed (a neuron group).
enum class GroupKind {
  input,   ///< values given by the user every step
  neuron,  ///< values computed by the group's defining expression
};

/// A neuron group (or input): a named vector of `size` values per step. A neuron's value is the
/// result of the ops [op_begin, op_end) (the last one), evaluated in that order.
struct Group {
  std::string name;  ///< unique in the network; a C++ identifier (the generated code uses it)
  int size = 0;  ///< values per step
  GroupKind kind = GroupKind::neuron;  ///< input or neuron
  Loss loss = Loss::none;  ///< set for outputs
  double loss_weight = 1;  ///< an output's loss is multiplied by it
  int op_begin = 0;  ///< the group's first op (index into Network::ops)
  int op_end = 0;  ///< one past its last op
  int value_op() const { return op_end - 1; }  ///< the op whose result is the group's value
  bool is_output() const { return loss != Loss::none; }  ///< trained against a target
};

/// How a connection maps its source's values into its target's expression.
enum class ConnectionKind {
  dense,     ///< y = W x, W is (to size) x (from size), row-major
  diagonal,  ///< y_i = w_i x_i, sizes equal
  identity,  ///< y = x, no parameters (explicit identity<>() or a group read inside an expression)
  sparse,    ///< y_{to} += w_e x_{from} for each mask entry e
};

/// One entry of a sparse connection: a weight from source neuron `from` to target neuron `to`.
struct MaskEntry {
  int to = 0;    ///< row in the target group
  int from = 0;  ///< column in the source group
  friend bool operator==(const MaskEntry&, const MaskEntry&) = default;  ///< the same link
};

/// A connection carries values from one group (possibly delayed by one step) into the expression
/// of another group.
struct Connection {
  std::string name;  ///< unique in the network; names its parameter group
  ConnectionKind kind = ConnectionKind::identity;  ///< how it maps its source
  int from = -1;         ///< group index
  int to = -1;           ///< group index whose expression contains it
  bool delayed = false;  ///< reads the previous step's value of `from`
  int param = -1;        ///< parameter group, -1 for identity
  int op = -1;           ///< the op that applies it
  std::vector<MaskEntry> mask;  ///< sparse only, in declaration order
  bool implicit = false;        ///< a group read inside an expression, not a declared connection
};

/// What a parameter group is: a connection's weights or a bias.
enum class ParamRole { weight, bias };

/// The most values one parameter group, and all of them together, may have (the IR counts in int).
inline constexpr long long max_values = 2147483647;

/// A parameter group: `rows * cols` values, row-major. Connections (or biases) of one name share
/// one parameter group (weight sharing): `group` and `connection` name the first use,
/// param_users() all of them. Dense weights are (to x from); diagonal,
/// sparse (one value per mask entry) and bias vectors are (n x 1).
struct Param {
  std::string name;  ///< unique in the network; a C++ identifier
  ParamRole role = ParamRole::weight;  ///< a connection's weights or a bias
  int rows = 0;  ///< rows of the row-major matrix
  int cols = 1;  ///< columns (1 for vectors)
  int group = -1;       ///< group whose expression uses it
  int connection = -1;  ///< -1 for biases
  int size() const { return rows * cols; }  ///< the number of values
};

/// What an Op computes.
enum class OpCode {
  read,          ///< the current value of `group`
  read_delayed,  ///< the previous step's value of `group` (a recurrent state)
  connect,       ///< apply `connection` to the value of arg a (a read or read_delayed op)
  bias,          ///< the parameter vector `param`
  constant,      ///< the scalar `constant` in every element
  add,           ///< a + b, element-wise
  sub,           ///< a - b
  mul,           ///< a * b
  div,           ///< a / b
  activate,      ///< activation(a)
};

/// One operation of a group's expression, on vectors of `size` values; what it reads depends on `code`.
struct Op {
  OpCode code = OpCode::constant;  ///< what the op computes
  int size = 0;  ///< the number of values it yields
  int a = -1;  ///< first operand (an op index), for connect, add, sub, mul, activate
  int b = -1;  ///< second operand, for add, sub, mul
  int group = -1;       ///< read, read_delayed
  int connection = -1;  ///< connect; also read ops that form an implicit identity connection
  int param = -1;       ///< bias
  double constant = 0;  ///< constant
  Activation activation = Activation::identity;  ///< activate
  int owner = -1;       ///< the group whose defining expression holds this op
};

/// How one tensor of another framework's parameter file (a PyTorch state_dict saved as
/// safetensors) maps onto parameter groups: the groups, stacked row-wise, make the tensor
/// (PyTorch stacks an LSTM's four gates into weight_ih_l0). Dense weights make 2-D tensors
/// [rows, cols]; biases, diagonal and sparse weights 1-D ones [rows]. ir/torch_layout.hpp has the
/// layouts of torch.nn.RNN, LSTM, GRU and Linear.
struct TensorMapping {
  std::string tensor;               ///< the tensor's name in the file ("rnn.weight_ih_l0")
  std::vector<std::string> params;  ///< parameter groups, stacked row-wise
  /// One of several tensors summed into one group (PyTorch's RNN has bias_ih and bias_hh where
  /// loopgrad's Elman layer has one bias): importing adds them; exporting writes a parameter whole
  /// into the first of them and zeros into the others, and a gradient whole into every one.
  bool summed = false;
};

/// The network as plain data: groups, connections, parameter groups and ops. What the DSL lowers to
/// (dsl::lower), what the analysis and the emitters read.
struct Network {
  std::string name;  ///< names the generated namespace and files
  std::vector<Group> groups;  ///< declaration order
  std::vector<Connection> connections;  ///< declaration order
  std::vector<Param> params;  ///< declaration order: the layout of the parameter vector
  std::vector<Op> ops;  ///< grouped by owner, each group's ops in evaluation order
  /// The spec's map of a PyTorch state_dict onto the parameter groups (LOOPGRAD_GENERATOR's second
  /// argument); empty when none is given. The generated header carries it as its torch_tensors table.
  std::vector<TensorMapping> tensors;

  int find_group(std::string_view group_name) const;  ///< index of the group so named, or -1
  int find_param(std::string_view param_name) const;  ///< index of the parameter group so named, or -1
  int find_connection(std::string_view connection_name) const;  ///< index of the connection so named, or -1
  int param_count() const;  ///< sum of all parameter group sizes
};

/// The groups whose expressions use each parameter group (a connection's weights or a bias), in
/// op order, each group once: more than one for shared weights.
std::vector<std::vector<int>> param_users(const Network& net);

/// The shape of `mapping`'s tensor: [rows, cols] for stacked dense weights, [rows] otherwise.
/// Throws std::invalid_argument naming the tensor when a group does not exist or the stacked groups
/// do not fit together (different column counts, a matrix stacked with a vector).
std::vector<long long> tensor_shape(const Network& net, const TensorMapping& mapping);

/// Group `group`'s defining expression as text, in the DSL's words: "tanh(W_xh·x + W_hh·delay(h) + b_h)"
/// (a dense or sparse connection as W·source, element-wise products as *, activations by name);
/// empty for an input. What the inspector and the graph's labels print.
std::string expression(const Network& net, int group);

/// Checks the invariants the analysis relies on; throws std::invalid_argument naming the group,
/// connection or op at fault. The DSL produces valid networks; this guards hand-built IR.
void validate(const Network& net);

const char* to_string(ConnectionKind kind);  ///< "dense", "diagonal", "identity", "sparse"
const char* to_string(Loss loss);             ///< "none", "mse", "softmax_cross_entropy", ... (LossRule::name)

}  // namespace loopgrad::ir
