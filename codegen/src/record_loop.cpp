#include "record_loop.hpp"

#include <fmt/format.h>

namespace loopgrad::emit::detail {

namespace {

// base + e * step as C++ over std::size_t (never negative: every record's value is >= 0).
std::string affine(std::int64_t base, std::int64_t step) {
  if (step == 0) return std::to_string(base);
  const std::int64_t size = step < 0 ? -step : step;
  const std::string term = size == 1 ? "e" : fmt::format("e * {}", size);
  if (step < 0) return fmt::format("{} - {}", base, term);
  return base == 0 ? term : fmt::format("{} + {}", base, term);
}

}  // namespace

void RecordLoop::add_run(std::vector<std::int64_t> record) {
  if (!records_.empty()) {
    auto& last = records_.back();
    bool continues = last[0] == record[0];
    for (std::size_t i = 1; i + 1 < record.size(); ++i) continues = continues && record[i] == last[i] + last.back();
    if (continues) {
      last.back() += record.back();
      return;
    }
  }
  records_.push_back(std::move(record));
}

std::vector<std::string> RecordLoop::open(CodeWriter& w, const std::string& table) const {
  const std::size_t n = records_.size(), f = fields_.size();
  std::vector<std::string> out(f);
  if (n == 1) {
    for (std::size_t i = 0; i < f; ++i) out[i] = std::to_string(records_[0][i]);
    w.open("");
    return out;
  }
  bool is_affine = true;
  for (std::size_t i = 0; i < f && is_affine; ++i) {
    const std::int64_t step = records_[1][i] - records_[0][i];
    for (std::size_t e = 2; e < n && is_affine; ++e) is_affine = records_[e][i] - records_[e - 1][i] == step;
  }
  if (is_affine) {
    for (std::size_t i = 0; i < f; ++i) {
      out[i] = affine(records_[0][i], records_[1][i] - records_[0][i]);
      if (out[i].find(' ') != std::string::npos) out[i] = "(" + out[i] + ")";
    }
    w.open("for (std::size_t e = 0; e < {}; ++e)", n);
    return out;
  }
  std::string names;
  for (const auto& name : fields_) names += (names.empty() ? "" : ", ") + name;
  w.line("// {} records ({})", n, names);
  w.line("static constexpr std::size_t {}[{}][{}] = {{", table, n, f);
  std::string line;
  for (std::size_t e = 0; e < n; ++e) {
    std::string record;
    for (std::size_t i = 0; i < f; ++i) record += (i == 0 ? "" : ", ") + std::to_string(records_[e][i]);
    line += fmt::format("{{{}}}{}", record, e + 1 < n ? ", " : "");
    if (line.size() > 96 || e + 1 == n) {
      w.line("    {}", line);
      line.clear();
    }
  }
  w.line("}};");
  for (std::size_t i = 0; i < f; ++i) out[i] = fmt::format("e[{}]", i);
  w.open("for (const auto& e : {})", table);
  return out;
}

}  // namespace loopgrad::emit::detail
