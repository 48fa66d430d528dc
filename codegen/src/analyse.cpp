// The analysis pipeline: each pass reads what the earlier ones wrote (see analysis.hpp).
#include "loopgrad/analysis/analysis.hpp"

namespace loopgrad::analysis {

Analysis analyse(const ir::Network& net, const AnalysisOptions& options) {
  ir::validate(net);
  Analysis a;
  classify(net, a);
  find_loops(net, a);
  plan_sensitivity(net, a, options);
  plan_exact_cost(net, a);
  return a;
}

}  // namespace loopgrad::analysis
