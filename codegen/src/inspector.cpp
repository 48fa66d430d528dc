#include "loopgrad/emit/inspector.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <vector>

#include "loopgrad/emit/report.hpp"

extern char** environ;

namespace loopgrad::emit {

namespace {

std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  return out;
}

const std::string& name_of(const ir::Network& net, int g) { return net.groups[static_cast<std::size_t>(g)].name; }

// A count with thousands separators ("1,234,567").
std::string count(std::int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string ratio(std::int64_t dense, std::int64_t pruned) {
  return pruned > 0 ? fmt::format("{:.2f}x", static_cast<double>(dense) / static_cast<double>(pruned)) : "-";
}

constexpr std::string_view style = R"(
body { font-family: Helvetica, Arial, sans-serif; margin: 1.5em 2em; color: #1a1a1a; }
section, h1, h2, p, table, ol { max-width: 90em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccd; }
p.lead { color: #444; margin-top: 0; } code, td.expr { font-family: Menlo, Consolas, monospace; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0; } th, td { border: 1px solid #ccd; padding: 0.25em 0.55em; text-align: right; }
th { background: #eef1f8; } th.row, td.name, td.expr, td.text { text-align: left; }
td.nonzero { background: #dfe9ff; } td.pruned { background: #f4f4f4; color: #999; }
td.violation { background: #ffe2c8; font-weight: bold; } td.dropped { background: #fde0e0; color: #a33; }
td.workspace { background: #f2f7ea; } td small, th small { color: #557; display: block; font-size: 0.8em; font-weight: normal; }
.legend span { display: inline-block; padding: 0.1em 0.5em; margin-right: 0.6em; border: 1px solid #ccd; }
.graph { overflow-x: auto; border: 1px solid #ccd; padding: 0.5em; } .graph svg { max-width: 100%; height: auto; }
.note { background: #fff8e0; border: 1px solid #e8d890; padding: 0.6em; } .warn { color: #a33; font-weight: bold; }
tr.hover td, td.hover { outline: 2px solid #4060c0; }
)";

// Highlights a grid cell's row and column under the pointer; marks the page ready when it ran.
constexpr std::string_view script = R"(
for (const table of document.querySelectorAll('table.grid')) {
  table.addEventListener('mouseover', (e) => {
    const cell = e.target.closest('td'); if (!cell) return;
    for (const c of table.querySelectorAll('.hover')) c.classList.remove('hover');
    const column = cell.cellIndex;
    cell.parentElement.classList.add('hover');
    for (const row of table.rows) if (row.cells[column]) row.cells[column].classList.add('hover');
  });
}
document.body.dataset.ready = 'yes';
)";

}  // namespace

std::string to_html(const ir::Network& net, const analysis::Analysis& a, const std::string& svg) {
  std::string out;
  auto put = [&]<class... Args>(fmt::format_string<Args...> text, Args&&... args) {
    out += fmt::format(text, std::forward<Args>(args)...);
  };
  const std::string name = escape(net.name);
  put("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
  put("<title>loopgrad inspector: {}</title>\n<style>{}</style>\n</head>\n<body>\n", name, style);
  put("<h1>Network <span id=\"network-name\">{}</span></h1>\n", name);
  put("<p class=\"lead\">{} groups, {} connections, {} parameters in {} parameter groups. Written by loopgrad's "
      "generator from the analysis that shaped the kernel (docs/design.md explains every term).</p>\n",
      net.groups.size(), net.connections.size(), count(net.param_count()), net.params.size());
  if (!a.exact())
    put("<p class=\"note warn\" id=\"approximation\">{}</p>\n", escape(approximation_note(net, a, " ")));

  // Totals.
  std::size_t nonzero_terms = 0;
  for (const auto& t : a.cross_terms) nonzero_terms += t.nonzero ? 1 : 0;
  const auto& c = a.exact_cost;
  put("<h2>Totals: pruned against dense</h2>\n<table id=\"totals\">\n<tr><th class=\"row\"></th><th>pruned</th>"
      "<th>dense</th><th>dense / pruned</th></tr>\n");
  put("<tr><td class=\"name\">sensitivity update, multiply-adds per step</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
      count(a.macs_per_step), count(a.dense_macs_per_step), ratio(a.dense_macs_per_step, a.macs_per_step));
  put("<tr><td class=\"name\">values of Delta stored</td><td>{}</td><td>{}</td><td>{}</td></tr>\n", count(a.sensitivity_values),
      count(a.dense_sensitivity_values), ratio(a.dense_sensitivity_values, a.sensitivity_values));
  put("<tr><td class=\"name\">cross terms D<sup>kl</sup> computed</td><td>{}</td><td>{}</td><td>{}</td></tr>\n</table>\n",
      nonzero_terms, a.cross_terms.size(),
      ratio(static_cast<std::int64_t>(a.cross_terms.size()), static_cast<std::int64_t>(nonzero_terms)));
  put("<p id=\"exact-algorithm\">Exact algorithm the cost model picks: <b>{}</b>. Per step with a gradient every step: "
      "RTRL {} multiply-adds; the blocked algorithm at block length {} {} (with its block end on a second thread, "
      "block length {}).</p>\n",
      c.choice == analysis::ExactAlgorithm::blocked ? "blocked" : "RTRL", count(c.rtrl_macs), c.block_length,
      count(c.blocked_macs), c.background_block_length);

  // The graph.
  put("<h2>Graph</h2>\n<p class=\"legend\"><span>solid: feed-forward</span><span>dashed blue: feed-back</span>"
      "<span>dotted grey: terminating</span><span>shaded box: state; dashed cluster: loop</span></p>\n");
  if (!svg.empty()) {
    const auto at = svg.find("<svg");
    put("<div class=\"graph\" id=\"graph\">\n{}</div>\n", at == std::string::npos ? svg : svg.substr(at));
  } else {
    put("<p class=\"note\" id=\"graph\">Graphviz was not found when this page was written, so the graph is not drawn "
        "here. Install it (Debian: <code>apt-get install graphviz</code>) and build again, or render the DOT file "
        "written beside this page: <code>dot -Tsvg FILE.dot -o FILE.svg</code>.</p>\n");
  }

  // Groups with their expressions.
  put("<h2>Groups (evaluation order)</h2>\n<table id=\"groups\">\n<tr><th class=\"row\">group</th><th>size</th>"
      "<th class=\"row\">role</th><th class=\"row\">value</th></tr>\n");
  std::vector<int> shown;
  for (std::size_t g = 0; g < net.groups.size(); ++g)
    if (net.groups[g].kind == ir::GroupKind::input) shown.push_back(static_cast<int>(g));
  shown.insert(shown.end(), a.group_order.begin(), a.group_order.end());
  for (int g : shown) {
    const auto& group = net.groups[static_cast<std::size_t>(g)];
    std::string role = group.kind == ir::GroupKind::input ? "input" : "intermediate";
    if (a.state_index[static_cast<std::size_t>(g)] >= 0) role = "state";
    if (group.is_output()) role += fmt::format(", output ({} loss)", ir::to_string(group.loss));
    put("<tr><td class=\"name\">{}</td><td>{}</td><td class=\"text\">{}</td><td class=\"expr\">{}</td></tr>\n",
        escape(group.name), group.size, escape(role),
        group.kind == ir::GroupKind::input ? "given every step" : escape(group.name + " = " + ir::expression(net, g)));
  }
  put("</table>\n");

  // Loops.
  put("<h2>Loops (evaluation order)</h2>\n<ol id=\"loops\" start=\"0\">\n");
  for (const auto& loop : a.loops) {
    std::string states;
    for (int g : loop.states) states += (states.empty() ? "" : ", ") + escape(name_of(net, g));
    put("<li>{{{}}}{}</li>\n", states, loop.self_recurrent ? "" : " (not self-recurrent)");
  }
  put("</ol>\n");

  // Cross terms.
  put("<h2>Cross terms D<sup>kl</sup> = &part;R<sup>k</sup><sub>N</sub> / &part;R<sup>l</sup><sub>N-1</sub></h2>\n");
  put("<p class=\"legend\"><span class=\"nonzero\">D: computed</span><span>&middot;: structurally zero, pruned</span>"
      "<span>D!: Recurrency-Abstraction violation (both D<sup>kl</sup> and D<sup>lk</sup> nonzero)</span></p>\n");
  put("<table class=\"grid\" id=\"cross-terms\">\n<tr><th class=\"row\">k \\ l</th>");
  for (int l : a.states) put("<th>{}</th>", escape(name_of(net, l)));
  put("</tr>\n");
  auto violation = [&](int k, int l) {
    for (const auto& [x, y] : a.recurrency_abstraction_violations)
      if ((x == k && y == l) || (x == l && y == k)) return true;
    return false;
  };
  for (int k : a.states) {
    put("<tr><th class=\"row\">{}</th>", escape(name_of(net, k)));
    for (int l : a.states) {
      if (!a.cross_term(k, l))
        put("<td class=\"pruned\" title=\"pruned\">&middot;</td>");
      else if (violation(k, l))
        put("<td class=\"violation\" title=\"Recurrency-Abstraction violation\">D!</td>");
      else
        put("<td class=\"nonzero\">D</td>");
    }
    put("</tr>\n");
  }
  put("</table>\n");

  // Sensitivity blocks: states, then the intermediate groups' workspace blocks.
  put("<h2>Sensitivity blocks &Delta;(state, parameter group)</h2>\n");
  put("<p class=\"legend\"><span class=\"nonzero\">values stored / multiply-adds per step</span>"
      "<span>&middot;: structurally zero, pruned</span><span class=\"workspace\">workspace: an intermediate group's "
      "tangent block, formed within a step</span><span class=\"dropped\">dropped by layer_local</span></p>\n");
  put("<table class=\"grid\" id=\"blocks\">\n<tr><th class=\"row\">group \\ parameter</th>");
  for (const auto& p : net.params) put("<th>{}<small>{}</small></th>", escape(p.name), count(p.size()));
  put("</tr>\n");
  auto dropped = [&](int g, int p) {
    for (const auto& [x, y] : a.dropped_blocks)
      if (x == g && y == p) return true;
    return false;
  };
  std::int64_t listed = 0;
  for (int g : a.states) {
    put("<tr><th class=\"row\">{}<small>{} units</small></th>", escape(name_of(net, g)), net.groups[static_cast<std::size_t>(g)].size);
    for (std::size_t p = 0; p < net.params.size(); ++p) {
      const auto pi = static_cast<int>(p);
      const auto macs = a.block_macs[static_cast<std::size_t>(g)][p];
      listed += macs;
      // sensitivity_blocks holds every (state, parameter group), states-major.
      const auto& block = a.sensitivity_blocks[static_cast<std::size_t>(a.state_index[static_cast<std::size_t>(g)]) * net.params.size() + p];
      if (dropped(g, pi))
        put("<td class=\"dropped\" title=\"dropped by layer_local\">dropped</td>");
      else if (!block.nonzero)
        put("<td class=\"pruned\" title=\"pruned\">&middot;</td>");
      else
        put("<td class=\"nonzero\" title=\"values stored / multiply-adds per step\">{}<small>{} MACs</small></td>",
            count(block.nonzeros), count(macs));
    }
    put("</tr>\n");
  }
  for (int g : a.group_order) {
    if (a.state_index[static_cast<std::size_t>(g)] >= 0) continue;
    const auto& row = a.block_macs[static_cast<std::size_t>(g)];
    bool any = false;
    for (auto m : row) any = any || m > 0;
    if (!any) continue;
    put("<tr><th class=\"row\">{}<small>workspace</small></th>", escape(name_of(net, g)));
    for (auto macs : row) {
      listed += macs;
      if (macs > 0)
        put("<td class=\"workspace\" title=\"multiply-adds per step\">{} MACs</td>", count(macs));
      else
        put("<td class=\"pruned\">&middot;</td>");
    }
    put("</tr>\n");
  }
  put("</table>\n");
  put("<p id=\"block-totals\">Multiply-adds per step: {} in the blocks above, {} for the coefficients the update "
      "reads once per step, {} in all (the kernel's sensitivity update). Gradient term (Eqn. 5): {} more.</p>\n",
      count(listed), count(a.coefficient_macs), count(listed + a.coefficient_macs), count(a.gradient_macs_per_step));
  put("<script>{}</script>\n</body>\n</html>\n", script);
  return out;
}

std::optional<std::string> render_svg(const std::string& dot) {
  namespace fs = std::filesystem;
  // The DOT text in a temporary file of this process's own, the SVG beside it.
  // mkstemp's template: it replaces the six X with characters of its own and creates the file.
  std::string pattern = (fs::temp_directory_path() / "loopgrad_graph_XXXXXX").string();
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) throw std::runtime_error("cannot create a temporary file for Graphviz: " + std::generic_category().message(errno));
  const fs::path in = pattern, svg = pattern + ".svg", log = pattern + ".log";
  struct Cleanup {
    std::vector<fs::path> paths;
    ~Cleanup() {
      for (const auto& p : paths) {
        std::error_code ignored;
        fs::remove(p, ignored);
      }
    }
  } cleanup{{in, svg, log}};
  const bool written = ::write(fd, dot.data(), dot.size()) == static_cast<ssize_t>(dot.size());
  ::close(fd);
  if (!written) throw std::runtime_error("cannot write the graph to a temporary file for Graphviz");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::string program = "dot", format = "-Tsvg", flag = "-o", out = svg.string(), source = in.string();
  char* argv[] = {program.data(), format.data(), flag.data(), out.data(), source.data(), nullptr};
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, "dot", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned == ENOENT) return std::nullopt;  // no Graphviz on the PATH
  if (spawned != 0) throw std::runtime_error("cannot run Graphviz's dot: " + std::generic_category().message(spawned));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw std::runtime_error("waiting for Graphviz's dot failed: " + std::generic_category().message(errno));
  auto slurp = [](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  // posix_spawnp reports a missing program through the child's exit status 127 on glibc.
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return std::nullopt;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("Graphviz's dot failed to render the graph: " + slurp(log));
  return slurp(svg);
}

}  // namespace loopgrad::emit
