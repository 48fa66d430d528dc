#include "loopgrad/generator.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/emit/inspector.hpp"
#include "loopgrad/emit/kernel.hpp"
#include "loopgrad/emit/report.hpp"
#include "loopgrad/emit/write_file.hpp"

namespace loopgrad {

namespace {

namespace fs = std::filesystem;

struct Options {
  std::optional<fs::path> header, dot, json, html, out_dir;
  std::string namespace_name;
  emit::ScalarType scalar = emit::ScalarType::float64;
  bool quiet = false;
  long long blas_min_flops = 0;
  std::vector<std::string> layer_local;
};

constexpr std::string_view usage =
    "usage: {0} [--out-dir DIR] [--header PATH] [--dot PATH] [--json PATH] [--html PATH]\n"
    "       {1:{2}} [--namespace NAME] [--scalar float|double] [--blas-min-flops N] [--layer-local STATES] [--quiet]\n"
    "Writes the exact-gradient kernel of network '{3}' as a self-contained C++ header, its graph\n"
    "(Graphviz DOT), its analysis report (JSON) and the inspector, an HTML page that shows them (the graph drawn\n"
    "by Graphviz when it is installed). --out-dir DIR names them DIR/{3}.hpp, .dot, .json, .html.\n"
    "--blas-min-flops N: dense products of at least N flops call CBLAS (the header then needs it).\n"
    "--layer-local STATES: the layer_local approximation (NOT exact) for the comma-separated states, or '*'\n"
    "for all: each keeps only its own loop's parameters in Delta (for comparisons; see docs/guide.md).\n";

struct UsageError {
  std::string message;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError{fmt::format("option {} needs a value", arg)};
      return argv[++i];
    };
    if (arg == "--header") {
      o.header = value();
    } else if (arg == "--dot") {
      o.dot = value();
    } else if (arg == "--json") {
      o.json = value();
    } else if (arg == "--html") {
      o.html = value();
    } else if (arg == "--out-dir") {
      o.out_dir = value();
    } else if (arg == "--namespace") {
      o.namespace_name = value();
    } else if (arg == "--scalar") {
      const std::string s = value();
      if (s == "float") {
        o.scalar = emit::ScalarType::float32;
      } else if (s == "double") {
        o.scalar = emit::ScalarType::float64;
      } else {
        throw UsageError{fmt::format("--scalar must be float or double, not '{}'", s)};
      }
    } else if (arg == "--blas-min-flops") {
      const std::string v = value();
      const auto [end, error] = std::from_chars(v.data(), v.data() + v.size(), o.blas_min_flops);
      if (v.empty() || v[0] == '-' || error != std::errc() || end != v.data() + v.size())
        throw UsageError{fmt::format("--blas-min-flops needs a non-negative whole number of flops, not '{}'", v)};
    } else if (arg == "--layer-local") {
      const std::string v = value();
      for (std::size_t begin = 0; begin <= v.size();) {
        const auto end = std::min(v.find(',', begin), v.size());
        if (end == begin) throw UsageError{fmt::format("--layer-local needs state names separated by commas, not '{}'", v)};
        o.layer_local.push_back(v.substr(begin, end - begin));
        begin = end + 1;
      }
    } else if (arg == "--quiet") {
      o.quiet = true;
    } else {
      throw UsageError{fmt::format("unknown option '{}'", arg)};
    }
  }
  return o;
}

}  // namespace

int generator_main(int argc, char** argv, const ir::Network& net) {
  const std::string program = argc > 0 ? fs::path(argv[0]).filename().string() : "loopgrad-generator";
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      fmt::print(fmt::runtime(usage), program, "", program.size(), net.name);
      return 0;
    }
  try {
    Options o = parse(argc, argv);
    if (o.out_dir) {
      if (!o.header) o.header = *o.out_dir / (net.name + ".hpp");
      if (!o.dot) o.dot = *o.out_dir / (net.name + ".dot");
      if (!o.json) o.json = *o.out_dir / (net.name + ".json");
      if (!o.html) o.html = *o.out_dir / (net.name + ".html");
    }
    if (!o.header && !o.dot && !o.json && !o.html)
      throw UsageError{"nothing to write: give --out-dir, --header, --dot, --json or --html"};

    analysis::AnalysisOptions analysis_options;
    analysis_options.layer_local = o.layer_local;
    const auto analysis = analysis::analyse(net, analysis_options);
    emit::KernelOptions kernel_options;
    kernel_options.namespace_name = o.namespace_name;
    kernel_options.scalar = o.scalar;
    kernel_options.blas_min_flops = o.blas_min_flops;
    // The command names only what shapes the text, so that the header does not depend on where
    // the build tree is.
    kernel_options.regenerate_command =
        fmt::format("{} --namespace {} --scalar {}{}{}{}", program, o.namespace_name.empty() ? net.name : o.namespace_name,
                    emit::to_string(o.scalar),
                    o.blas_min_flops > 0 ? fmt::format(" --blas-min-flops {}", o.blas_min_flops) : "",
                    o.layer_local.empty() ? "" : fmt::format(" --layer-local '{}'", fmt::join(o.layer_local, ",")),
                    o.header ? " --header " + o.header->filename().string() : "");
    // Everything is rendered before anything is written.
    const std::string header = o.header ? emit::emit_kernel(net, analysis, kernel_options) : "";
    const std::string dot = o.dot ? emit::to_dot(net, analysis) : "";
    const std::string json = o.json ? emit::to_json(net, analysis).dump(2) + "\n" : "";
    const std::string html = o.html ? emit::to_html(net, analysis, emit::render_svg(emit::to_dot(net, analysis, false)).value_or("")) : "";
    // All outputs or none: each is written in full before any replaces its destination.
    std::vector<std::pair<fs::path, std::string>> files;
    if (o.header) files.emplace_back(*o.header, header);
    if (o.dot) files.emplace_back(*o.dot, dot);
    if (o.json) files.emplace_back(*o.json, json);
    if (o.html) files.emplace_back(*o.html, html);
    emit::write_files_atomically(files);
    bool printed = true;
    try {
      if (!o.quiet) {
        fmt::print("{}", emit::summary(net, analysis));
        if (o.header) fmt::print("kernel header: {}\n", o.header->string());
        if (o.dot) fmt::print("graph: {}\n", o.dot->string());
        if (o.json) fmt::print("report: {}\n", o.json->string());
        if (o.html) fmt::print("inspector: {}\n", o.html->string());
      }
    } catch (const std::exception&) {
      printed = false;
    }
    // Unreachable parameters are worth a line even with --quiet (loopgrad_add_network passes it).
    if (o.quiet) {
      for (int p : analysis.unreachable_params)
        fmt::print(stderr, "{}: warning: network '{}': parameter '{}' reaches no loss, so its gradient is always zero\n",
                   program, net.name, net.params[static_cast<std::size_t>(p)].name);
      for (const auto& [k, l] : analysis.recurrency_abstraction_violations)
        fmt::print(stderr,
                   "{}: note: network '{}': Recurrency-Abstraction does not hold for ({}, {}); both cross terms are kept\n",
                   program, net.name, net.groups[static_cast<std::size_t>(k)].name, net.groups[static_cast<std::size_t>(l)].name);
    }
    if (!printed || std::fflush(stdout) != 0 || std::ferror(stdout)) {
      fmt::print(stderr, "{}: writing the summary to standard output failed; the files were written\n", program);
      return 1;
    }
    return 0;
  } catch (const UsageError& e) {
    fmt::print(stderr, "{}: {} (see {} --help)\n", program, e.message, program);
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", program, e.what());
    return 1;
  }
}

}  // namespace loopgrad
