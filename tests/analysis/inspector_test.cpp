// The inspector page (loopgrad/emit/inspector.hpp): its numbers against the analysis, and the
// page opened in a real headless browser (Debian's chromium): it loads without a console message,
// its script runs, it shows the network's name and its numbers, and a screenshot is taken.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "../networks.hpp"
#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/emit/inspector.hpp"
#include "loopgrad/emit/report.hpp"
#include "../scratch.hpp"

using namespace loopgrad;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) { return testing::scratch_file("inspector_test", name); }

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// "1234567" -> "1,234,567", as the page prints counts.
std::string grouped(long long n) {
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

bool contains(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

}  // namespace

TEST_CASE("inspector: the per-block multiply-adds add up to the sensitivity update's, and the page shows the analysis") {
  for (const auto& net : {dsl::lower(testing::multi_loop_network()), dsl::lower(cells::lstm_network<3, 8, 2>()),
                          dsl::lower(cells::stacked_rnn_network<3, 4, 5, 2>())}) {
    INFO("network " << net.name);
    const auto a = analysis::analyse(net);
    long long blocks = 0;
    for (std::size_t g = 0; g < net.groups.size(); ++g)
      for (std::size_t p = 0; p < net.params.size(); ++p) {
        const auto macs = a.block_macs[g][p];
        CHECK(macs >= 0);
        blocks += macs;
        // Only a stored block of a state, or a workspace block of a group that is not a state, costs.
        if (macs > 0 && a.state_index[g] >= 0) CHECK(a.pattern(static_cast<int>(g), static_cast<int>(p)).nonzeros > 0);
      }
    CHECK(blocks + a.coefficient_macs == a.macs_per_step);
    const auto html = emit::to_html(net, a, "");
    CHECK(contains(html, "<span id=\"network-name\">" + net.name + "</span>"));
    CHECK(contains(html, "<td>" + grouped(a.macs_per_step) + "</td><td>" + grouped(a.dense_macs_per_step) + "</td>"));
    CHECK(contains(html, "<td>" + grouped(a.sensitivity_values) + "</td><td>" + grouped(a.dense_sensitivity_values) + "</td>"));
    CHECK(contains(html, "apt-get install graphviz"));  // no SVG given: the page says how to get one
    for (const auto& loop : a.loops) CHECK(contains(html, net.groups[static_cast<std::size_t>(loop.states.front())].name));
  }
  // The multi-loop network: its Recurrency-Abstraction violation (a, b) is marked on both cells,
  // and its pruned cross terms are shown as pruned.
  const auto net = dsl::lower(testing::multi_loop_network());
  const auto a = analysis::analyse(net);
  const auto html = emit::to_html(net, a, "");
  std::size_t marks = 0, pruned = 0;
  for (std::size_t at = 0; (at = html.find(">D!</td>", at)) != std::string::npos; ++at) ++marks;
  CHECK(marks == 2);
  for (const auto& t : a.cross_terms) pruned += t.nonzero ? 0 : 1;
  REQUIRE(pruned > 0);
  const auto grid = html.substr(html.find("id=\"cross-terms\""), html.find("id=\"blocks\"") - html.find("id=\"cross-terms\""));
  std::size_t dots = 0;
  for (std::size_t at = 0; (at = grid.find("title=\"pruned\"", at)) != std::string::npos; ++at) ++dots;
  CHECK(dots == pruned);
  // Expressions spell out activations and element-wise products.
  const auto lstm = dsl::lower(cells::lstm_network<3, 8, 2>());
  const auto lstm_html = emit::to_html(lstm, analysis::analyse(lstm), "");
  CHECK(contains(lstm_html, "sigmoid("));
  CHECK(contains(lstm_html, " * "));
}

TEST_CASE("inspector: the page opens in headless chromium without console messages and shows the network's numbers") {
  if (std::system("command -v chromium > /dev/null 2>&1") != 0) {
#ifdef LOOPGRAD_REQUIRE_BROWSER
    FAIL("chromium is not installed, and this build requires it (LOOPGRAD_REQUIRE_BROWSER)");
#else
    MESSAGE("skipped: chromium (Debian's chromium package) is not installed");
    return;
#endif
  }
  const auto net = dsl::lower(testing::multi_loop_network());
  const auto a = analysis::analyse(net);
  const auto svg = emit::render_svg(emit::to_dot(net, a, false));
#ifdef LOOPGRAD_REQUIRE_BROWSER
  REQUIRE_MESSAGE(svg.has_value(), "Graphviz's dot is not installed");
#endif
  const auto page = scratch(net.name + ".html");
  {
    std::ofstream out(page);
    out << emit::to_html(net, a, svg.value_or(""));
  }
  const auto dom = scratch("dom.html"), log = scratch("browser.log"), shot = scratch("inspector.png");
  const std::string browser = "timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
                              "--enable-logging=stderr --v=0 --window-size=1280,1800 ";
  REQUIRE(std::system((browser + "--dump-dom file://" + page.string() + " > " + dom.string() + " 2> " + log.string()).c_str()) == 0);
  const auto text = slurp(dom), messages = slurp(log);
  {
    INFO("the browser's log: " << messages);
    CHECK_FALSE(contains(messages, ":CONSOLE"));  // no error, warning or message from the page
    CHECK(contains(text, "data-ready=\"yes\""));    // its script ran to the end
    CHECK(contains(text, "<span id=\"network-name\">" + net.name + "</span>"));
    CHECK(contains(text, grouped(a.macs_per_step)));
    CHECK(contains(text, grouped(a.dense_macs_per_step)));
    CHECK(contains(text, grouped(a.sensitivity_values)));
    if (svg) CHECK(contains(text, "<svg"));
  }
  REQUIRE(std::system((browser + "--screenshot=" + shot.string() + " file://" + page.string() + " > /dev/null 2>&1").c_str()) == 0);
  const auto png = slurp(shot);
  REQUIRE(png.size() > 10000);
  CHECK(png.compare(1, 3, "PNG") == 0);
  MESSAGE("screenshot of the inspector: " << shot.string() << " (" << png.size() << " bytes)");
}
