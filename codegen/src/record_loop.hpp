#pragma once
// Loops over records of integer fields in the emitted code: one record per run of a row-sparse
// tangent block, per sparse link, per row. Where every field is an affine function of the
// record's index (a diagonal layer's rows: row r starts at r * 32), the loop computes the fields
// from its index `e`; otherwise it walks a static table of them. A single record needs no loop.
#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <vector>

#include "code_writer.hpp"

namespace loopgrad::emit::detail {

class RecordLoop {
 public:
  explicit RecordLoop(std::vector<std::string> fields) : fields_(std::move(fields)) {}

  void add(std::vector<std::int64_t> record) { records_.push_back(std::move(record)); }
  // Adds a run record (a key, offsets, and a length last), or lengthens the last record when the
  // new run continues it: the same key, and every offset right after the last record's (its
  // value plus the last record's length).
  void add_run(std::vector<std::int64_t> record);
  std::size_t size() const { return records_.size(); }
  bool empty() const { return records_.empty(); }
  const std::vector<std::vector<std::int64_t>>& records() const { return records_; }

  // Writes the table (if one is needed, named `table`) and the loop head into `w`, opened: the
  // caller writes the body and closes it. Returns each field's C++ expression (std::size_t).
  std::vector<std::string> open(CodeWriter& w, const std::string& table) const;

 private:
  std::vector<std::string> fields_;
  std::vector<std::vector<std::int64_t>> records_;
};

// `statement(" + j")` in a loop over j < length, or `statement("")` once when length is "1".
template <class Statement>
void for_run(CodeWriter& w, const std::string& length, Statement statement) {
  if (length == "1")
    w.raw_line(statement("") + ";");
  else
    w.raw_line(fmt::format("for (std::size_t j = 0; j < {}; ++j) {};", length, statement(" + j")));
}

}  // namespace loopgrad::emit::detail
