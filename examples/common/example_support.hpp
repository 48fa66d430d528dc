#pragma once
// What the examples share: command-line numbers, learning curves written as CSV, and a plot of
// them through gnuplot when Debian's gnuplot is installed (skipped with a note when it is not).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace examples {

// `--name value` options with defaults; `--help` prints them.
class Options {
 public:
  Options(int argc, char** argv, std::map<std::string, std::string> defaults, std::string about)
      : values_(std::move(defaults)) {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::printf("%s\noptions (default):\n", about.c_str());
        for (const auto& [k, v] : values_) std::printf("  --%s (%s)\n", k.c_str(), v.c_str());
        std::exit(0);
      }
      if (arg.rfind("--", 0) != 0 || values_.count(arg.substr(2)) == 0 || i + 1 >= argc) {
        std::fprintf(stderr, "%s: unknown option or missing value '%s' (see --help)\n", argv[0], arg.c_str());
        std::exit(2);
      }
      values_[arg.substr(2)] = argv[++i];
    }
  }
  double number(const std::string& key) const {
    try {
      return std::stod(values_.at(key));
    } catch (const std::exception&) {
      std::fprintf(stderr, "option --%s: '%s' is not a number\n", key.c_str(), values_.at(key).c_str());
      std::exit(2);
    }
  }
  int integer(const std::string& key) const { return static_cast<int>(number(key)); }
  const std::string& text(const std::string& key) const { return values_.at(key); }

 private:
  std::map<std::string, std::string> values_;
};

// Learning curves: one column per series, one row per point; written as CSV.
struct Curves {
  std::string x_label;
  std::vector<std::string> names;
  std::vector<std::vector<double>> columns;  // parallel to names
  std::vector<double> x;

  void write_csv(const std::filesystem::path& path) const {
    std::ofstream out(path);
    if (!out) throw std::runtime_error("cannot write '" + path.string() + "'");
    out << x_label;
    for (const auto& n : names) out << ',' << n;
    out << '\n';
    for (std::size_t r = 0; r < x.size(); ++r) {
      out << x[r];
      for (const auto& c : columns) out << ',' << (r < c.size() ? c[r] : 0.0);
      out << '\n';
    }
    if (!out) throw std::runtime_error("writing '" + path.string() + "' failed");
  }
};

// Plots the CSV's columns against its first with gnuplot into a PNG; returns false (after a note)
// when gnuplot is not installed.
inline bool plot_csv(const std::filesystem::path& csv, const std::filesystem::path& png, const std::string& title,
                     const std::string& y_label, std::size_t series, bool log_y) {
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) {
    std::printf("note: gnuplot is not installed (apt-get install gnuplot-nox), so no plot; the curves are in %s\n",
                csv.string().c_str());
    return false;
  }
  const auto script = png.string() + ".gp";
  {
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 900,520 noenhanced\nset output '" << png.string() << "'\n"
       << "set datafile separator ','\nset key autotitle columnhead outside right\n"
       << "set title '" << title << "'\nset xlabel 'step'\nset ylabel '" << y_label << "'\nset grid\n"
       << "set format y '%g'\n" << (log_y ? "set logscale y\n" : "") << "plot for [i=2:" << series + 1 << "] '" << csv.string()
       << "' using 1:i with lines lw 2\n";
  }
  const bool ok = std::system(("gnuplot '" + script + "'").c_str()) == 0;
  std::filesystem::remove(script);
  if (!ok) std::printf("note: gnuplot failed; the curves are in %s\n", csv.string().c_str());
  return ok;
}

}  // namespace examples
