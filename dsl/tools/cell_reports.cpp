// Writes the DOT and JSON reports of every network in the cell library (sizes as in the README).
#include "loopgrad/cells.hpp"
#include "loopgrad/emit/report_main.hpp"

int main(int argc, char** argv) {
  using namespace loopgrad::cells;
  return loopgrad::emit::report_main(argc, argv,
                                     {loopgrad::dsl::lower(elman_network<4, 32, 2>()),
                                      loopgrad::dsl::lower(stacked_rnn_network<8, 32, 32, 8>()),
                                      loopgrad::dsl::lower(lstm_network<4, 32, 2>()),
                                      loopgrad::dsl::lower(gru_network<4, 32, 2>()),
                                      loopgrad::dsl::lower(diagonal_rnn_network<4, 64, 2>())});
}
