// Each LOOPGRAD_CASE_* is a mistake the DSL must reject at compile time with one error whose first
// line names the mistake and the objects at fault; with no case defined the file is the twin that
// must compile. tests/CMakeLists.txt pins each first error line (tests/scripts/compile_fail.cmake
// also bounds the output: one error, within its first 10 lines, under 8 KB).
#include "loopgrad/dsl.hpp"

using namespace loopgrad::dsl;

constexpr auto x = input<"x", 3>;
constexpr auto h = neuron<"h", 4>;
constexpr auto y = neuron<"y", 2>;

#if defined(LOOPGRAD_CASE_SIZE_MISMATCH)
constexpr auto g = neuron<"g", 3>;
constexpr auto net = network<"bad">(g = tanh(dense<"W_xg">(x)), h = tanh(dense<"W_xh">(x) + g),
                                    output(y = dense<"W_hy">(h), mse));
#elif defined(LOOPGRAD_CASE_ELEMENTWISE_MISMATCH)
constexpr auto net = network<"bad">(h = tanh(dense<"W_xh">(x) + x * delay(h)), output(y = dense<"W_hy">(h), mse));
#elif defined(LOOPGRAD_CASE_DIAGONAL_SIZES)
constexpr auto net = network<"bad">(h = tanh(diagonal<"w_xh">(x) + dense<"W_hh">(delay(h))),
                                    output(y = dense<"W_hy">(h), mse));
#elif defined(LOOPGRAD_CASE_NAME_USED_TWICE)
constexpr auto net = network<"bad">(h = tanh(dense<"W">(x) + diagonal<"W">(delay(h))), output(y = dense<"W_hy">(h), mse));
#elif defined(LOOPGRAD_CASE_SHARED_SHAPE)
constexpr auto net = network<"bad">(h = tanh(dense<"W">(x) + dense<"W">(delay(h))), output(y = dense<"W_hy">(h), mse));
#elif defined(LOOPGRAD_CASE_SHARED_SOURCE)
constexpr auto net = network<"bad">(h = tanh(dense<"W">(delay(h)) + dense<"W">(delay(h) * delay(h))), output(y = dense<"W_hy">(h), mse));
#elif defined(LOOPGRAD_CASE_GROUP_NAME_TWICE)
constexpr auto h2 = neuron<"h", 2>;
constexpr auto net = network<"bad">(h = tanh(dense<"W_xh">(x)), h2 = tanh(dense<"W_hh2">(h)),
                                    output(y = dense<"W_hy">(h2), mse));
#elif defined(LOOPGRAD_CASE_DEFINED_TWICE)
constexpr auto net = network<"bad">(h = tanh(dense<"W_xh">(x)), h = tanh(dense<"W_xh2">(x)),
                                    output(y = dense<"W_hy">(h), mse));
#elif defined(LOOPGRAD_CASE_OUTPUT_WITHOUT_LOSS)
constexpr auto net = network<"bad">(h = tanh(dense<"W_xh">(x) + dense<"W_hh">(delay(h))), output(y = dense<"W_hy">(h)));
#elif defined(LOOPGRAD_CASE_NEVER_DEFINED)
constexpr auto net = network<"bad">(output(y = dense<"W_hy">(delay(h)), mse));
#elif defined(LOOPGRAD_CASE_DELAY_OF_INPUT)
constexpr auto net = network<"bad">(h = tanh(dense<"W_xh">(delay(x))), output(y = dense<"W_hy">(h), mse));
#elif defined(LOOPGRAD_CASE_SPARSE_OUT_OF_RANGE)
constexpr auto net = network<"bad">(h = tanh(sparse<"S", mask{link{0, 0}, link{1, 5}}>(x)), output(y = dense<"W_hy">(h), mse));
#elif defined(LOOPGRAD_CASE_DELAY_ZERO)
constexpr auto net = network<"bad">(h = tanh(dense<"W_xh">(x) + dense<"W_hh">(delay<0>(h))), output(y = dense<"W_hy">(h), mse));
#elif defined(LOOPGRAD_CASE_NO_OUTPUT)
constexpr auto net = network<"bad">(x, h = tanh(dense<"W_xh">(x) + dense<"W_hh">(delay(h))));
#elif defined(LOOPGRAD_CASE_SPARSE_TO_OUT_OF_RANGE)
constexpr auto net = network<"bad">(h = tanh(sparse<"S", mask{link{0, 0}, link{7, 1}}>(x)), output(y = dense<"W_hy">(h), mse));
#elif defined(LOOPGRAD_CASE_SOURCE_NAME_TAKEN)
constexpr auto w_in = neuron<"W_in", 3>;
constexpr auto net = network<"bad">(w_in = tanh(dense<"V">(x)), h = tanh(dense<"W">(x * w_in)), output(y = dense<"W_hy">(h), mse));
#elif defined(LOOPGRAD_CASE_SOURCE_WITHOUT_SIZE)
constexpr auto net = network<"bad">(h = tanh(dense<"W_xh">(x) + dense<"W_bh", 4>(2.0 * bias<"b">)), output(y = dense<"W_hy">(h), mse));
#else
constexpr auto net = network<"good">(h = tanh(dense<"W_xh">(x) + diagonal<"w_hh">(delay(h)) + diagonal<"w_hh">(delay(h)) +
                                              sparse<"S", mask{link{0, 0}, link{3, 2}}>(x) + bias<"b_h">),
                                     output(y = dense<"W_hy">(h * 2.0 + param<"c", 4>), mse));
#endif

int main() { return lower(net).groups.size() > 0 ? 0 : 1; }
