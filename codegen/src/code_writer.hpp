#pragma once
// Indented C++ text: the one place the emitters' indentation lives.
#include <fmt/format.h>

#include <string>
#include <string_view>

namespace loopgrad::emit::detail {

class CodeWriter {
 public:
  explicit CodeWriter(int indent = 0) : indent_(indent) {}

  template <class... Args>
  void line(fmt::format_string<Args...> format, Args&&... args) {
    raw_line(fmt::format(format, std::forward<Args>(args)...));
  }
  void raw_line(std::string_view text) {
    if (!text.empty()) out_.append(static_cast<std::size_t>(2 * indent_), ' ');
    out_ += text;
    out_ += '\n';
  }
  void blank() { out_ += '\n'; }
  // `head {` ... `}`: open() writes the head and indents, close() dedents and writes the tail.
  template <class... Args>
  void open(fmt::format_string<Args...> format, Args&&... args) {
    const std::string head = fmt::format(format, std::forward<Args>(args)...);
    raw_line(head.empty() ? "{" : head + " {");
    ++indent_;
  }
  void close(std::string_view tail = "}") {
    --indent_;
    raw_line(tail);
  }
  void append(const CodeWriter& other) { out_ += other.out_; }
  int indent() const { return indent_; }
  const std::string& str() const { return out_; }

 private:
  std::string out_;
  int indent_ = 0;
};

}  // namespace loopgrad::emit::detail
