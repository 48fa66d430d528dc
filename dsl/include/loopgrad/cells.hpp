#pragma once
// The cell library: recurrent layers written in the DSL, each a building block (a cell object with
// its groups as members, e.g. lstm<"l0", 32>(x).h) and a small reference network for reports.
#include "loopgrad/cells/diagonal_rnn.hpp"
#include "loopgrad/cells/elman.hpp"
#include "loopgrad/cells/elstm.hpp"
#include "loopgrad/cells/gru.hpp"
#include "loopgrad/cells/indrnn.hpp"
#include "loopgrad/cells/lru.hpp"
#include "loopgrad/cells/lstm.hpp"
#include "loopgrad/cells/min_gru.hpp"
#include "loopgrad/cells/rg_lru.hpp"
#include "loopgrad/cells/stacked_rnn.hpp"
