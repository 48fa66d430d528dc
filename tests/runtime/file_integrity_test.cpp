// Files that are damaged, edited or not files at all are refused with a message naming the file
// and what is wrong, and nothing is loaded: safetensors files whose tensors do not tile the data
// exactly, names used twice, headers too long for the file, shapes whose sizes overflow, paths
// that are directories or FIFOs; checkpoints whose metadata numbers are not plain integers in
// range, or whose contents no longer match their checksum. Writes are atomic for concurrent
// writers too, and never replace what is not a regular file.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "../compare.hpp"
#include "../networks.hpp"
#include "loopgrad/emit/write_file.hpp"
#include "loopgrad/runtime/checkpoint.hpp"
#include "loopgrad/runtime/checksum.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "../scratch.hpp"

using namespace loopgrad;
namespace fs = std::filesystem;
namespace st = loopgrad::runtime::safetensors;

namespace {

fs::path scratch(const std::string& name) { return testing::scratch_file("integrity_test", name); }

// A safetensors file byte by byte: the 8-byte header length (which may lie), the header, the data.
fs::path raw_file(const std::string& name, std::uint64_t header_length, const std::string& header, const std::string& data) {
  const auto path = scratch(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(&header_length), 8);
  out << header << data;
  return path;
}
fs::path raw_file(const std::string& name, const std::string& header, const std::string& data) {
  return raw_file(name, header.size(), header, data);
}

std::string doubles(std::initializer_list<double> values) {
  std::string out(values.size() * 8, '\0');
  std::memcpy(out.data(), std::data(values), out.size());
  return out;
}

void refused(const fs::path& path, const std::string& message) {
  INFO("file " << path.filename().string());
  CHECK_THROWS_WITH_AS(st::read(path), doctest::Contains(message.c_str()), st::SafetensorsError);
}

}  // namespace

TEST_CASE("a well-formed hand-written safetensors file reads back its values") {
  const auto path = raw_file("good.safetensors",
                             R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},)"
                             R"("b":{"dtype":"F64","shape":[1,1],"data_offsets":[16,24]},"e":{"dtype":"F64","shape":[0],"data_offsets":[24,24]}})",
                             doubles({1.5, -2, 7}));
  const auto f = st::read(path);
  CHECK(f.tensors.at("a").values<double>("a") == std::vector<double>{1.5, -2});
  CHECK(f.tensors.at("b").values<double>("b") == std::vector<double>{7});
  CHECK(f.tensors.at("e").values<double>("e").empty());
}

TEST_CASE("safetensors files whose tensors do not tile the data section exactly are refused") {
  const std::string two = R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})";
  // The header length a few bytes short: the header still parses (it ends in padding), but the data
  // section then starts early and every value would be read shifted.
  const std::string padded = two + "    ";
  refused(raw_file("short_length.safetensors", padded.size() - 3, padded, doubles({1, 2})), "the tensors cover 16 of its 19 data bytes");
  // Bytes inserted into the header's padding, the length left as it was.
  refused(raw_file("inserted.safetensors", padded.size(), padded + "    ", doubles({1, 2})), "the tensors cover 16 of its 20");
  // Trailing bytes.
  refused(raw_file("trailing.safetensors", two, doubles({1, 2}) + "xyz"), "the tensors cover 16 of its 19 data bytes");
  // Overlapping and aliased ranges.
  refused(raw_file("overlap.safetensors",
                   R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"b":{"dtype":"F64","shape":[2],"data_offsets":[8,24]}})",
                   doubles({1, 2, 3})),
          "tensor 'b': its bytes start at 8, inside another tensor's");
  refused(raw_file("alias.safetensors",
                   R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"b":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})",
                   doubles({1, 2})),
          "its bytes start at 0, inside another tensor's");
  // A gap.
  refused(raw_file("gap.safetensors",
                   R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"F64","shape":[1],"data_offsets":[16,24]}})",
                   doubles({1, 2, 3})),
          "tensor 'b': its bytes start at 16, leaving a gap after byte 8");
  // A range that does not start at 0 (an unaligned start) is a gap too.
  refused(raw_file("offset.safetensors", R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[4,12]}})", std::string(12, '\0')),
          "leaving a gap after byte 0");
}

TEST_CASE("safetensors names used twice, absurd header lengths and overflowing shapes are refused") {
  refused(raw_file("twice.safetensors",
                   R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"a":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}})",
                   doubles({1, 2})),
          "the name 'a' appears twice");
  refused(raw_file("twice_meta.safetensors", R"({"__metadata__":{"k":"1","k":"2"}})", ""), "the name 'k' appears twice");
  // A header length of 2^40 is refused before anything is allocated.
  refused(raw_file("huge_header.safetensors", std::uint64_t(1) << 40, "{}", ""), "more than the 100000000 a safetensors header may have");
  refused(raw_file("long_header.safetensors", 1000, "{}", ""), "its header claims 1000 bytes but the file has 2");
  // 2^61 doubles claimed to lie in 0 bytes: the byte count overflows 64 bits.
  refused(raw_file("overflow.safetensors", R"({"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})", ""),
          "its shape has more bytes than 2^64");
  refused(raw_file("overflow2.safetensors", R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""),
          "its shape has more bytes than 2^64");
  refused(raw_file("negative.safetensors", R"({"a":{"dtype":"F64","shape":[-1],"data_offsets":[0,0]}})", ""),
          "shape entries must be non-negative integers");
  st::Tensor t;
  t.dtype = "F64";
  t.shape = {std::int64_t(1) << 40, std::int64_t(1) << 40};
  CHECK_THROWS_AS(t.element_count(), st::SafetensorsError);
}

TEST_CASE("paths that are not regular files are refused by the reader and never replaced by a write") {
  const auto dir = scratch("a_directory");
  fs::create_directories(dir);
  refused(dir, "it is not a regular file");
  const auto fifo = scratch("a_fifo");
  fs::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  refused(fifo, "it is not a regular file");  // and does not block waiting for a writer
  refused(scratch("missing.safetensors"), "no such file");
  CHECK_THROWS_WITH(emit::write_file_atomically(fifo, "x"), doctest::Contains("it is not a regular file"));
  CHECK(fs::is_fifo(fifo));
  const auto link = scratch("a_link");
  fs::remove(link);
  fs::create_symlink(scratch("target"), link);
  CHECK_THROWS_WITH(emit::write_file_atomically(link, "x"), doctest::Contains("symbolic link"));
  CHECK(fs::is_symlink(fs::symlink_status(link)));
}

TEST_CASE("writes are atomic: concurrent writers of one path leave one complete file, and stale temporaries go") {
  const auto path = scratch("shared.txt");
  const std::string a(1 << 16, 'a'), b(1 << 16, 'b');
  std::vector<std::string> errors(3);
  std::thread first([&] {
    try {
      for (int i = 0; i < 40; ++i) emit::write_file_atomically(path, a);
    } catch (const std::exception& e) {
      errors[0] = e.what();
    }
  });
  std::thread second([&] {
    try {
      for (int i = 0; i < 40; ++i) emit::write_file_atomically(path, b);
    } catch (const std::exception& e) {
      errors[1] = e.what();
    }
  });
  // A reader meanwhile sees either no file yet or a whole one.
  std::thread reader([&] {
    for (int i = 0; i < 200; ++i) {
      std::ifstream in(path, std::ios::binary);
      if (!in) continue;
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (text != a && text != b) errors[2] = "a reader saw " + std::to_string(text.size()) + " bytes";
    }
  });
  first.join();
  second.join();
  reader.join();
  for (const auto& e : errors) CHECK(e.empty());
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK((text == a || text == b));
  // A temporary left by a writer that was killed (its process is gone) is removed by the next write.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  REQUIRE(dead > 0);
  int status = 0;
  ::waitpid(dead, &status, 0);
  const auto stale = fs::path(path.string() + ".tmp." + std::to_string(dead) + ".0");
  std::ofstream(stale) << "half";
  emit::write_file_atomically(path, a);
  CHECK_FALSE(fs::exists(stale));
  for (const auto& entry : fs::directory_iterator(path.parent_path()))
    CHECK(entry.path().filename().string().find("shared.txt.tmp") == std::string::npos);
}

TEST_CASE("a write of the content a file already holds leaves it alone, time stamp included") {
  const auto path = scratch("unchanged.hpp");
  emit::write_file_atomically(path, "// generated\n");
  const auto past = fs::last_write_time(path) - std::chrono::hours(1);
  fs::last_write_time(path, past);
  emit::write_file_atomically(path, "// generated\n");
  CHECK(fs::last_write_time(path) == past);
  emit::write_file_atomically(path, "// generated, changed\n");
  CHECK(fs::last_write_time(path) != past);
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text == "// generated, changed\n");
}

TEST_CASE("CRC-32C matches its standard check value") {
  const std::string text = "123456789";
  CHECK(runtime::crc32c(0, text.data(), text.size()) == 0xE3069283u);
  // Incremental: the CRC of a then b is the CRC of a + b, across the eight-byte path.
  const std::string long_text = "The quick brown fox jumps over the lazy dog, twice: the quick brown fox.";
  const auto whole = runtime::crc32c(0, long_text.data(), long_text.size());
  CHECK(runtime::crc32c(runtime::crc32c(0, long_text.data(), 13), long_text.data() + 13, long_text.size() - 13) == whole);
  CHECK(runtime::crc32c(0, "", 0) == 0u);
}

TEST_CASE("checkpoints: edited contents fail the checksum, and metadata numbers are parsed strictly with ranges") {
  using Kernel = runtime::Interpreter<double>;
  const auto net = dsl::lower(testing::multi_loop_network());
  const Kernel k(net);
  auto params = runtime::initial_params<double>(net, 3);
  const auto seq = testing::random_sequence<double>(net, k.input_size(), 10, 2);
  runtime::ExactRtrl<Kernel, double> learner(k, 3);
  runtime::Adam<double> adam;
  for (std::size_t t = 0; t < seq.size(); ++t) {
    learner.observe(params, seq.inputs[t].data(), seq.target(t));
    if (learner.gradient_ready()) adam.apply(params, learner.gradient());
  }
  const auto good = scratch("good.checkpoint.safetensors");
  runtime::save_checkpoint(good, net.name, params, learner, adam);
  runtime::BlockedRtrl<Kernel, double> blocked(k, 4);
  for (std::size_t t = 0; t < seq.size(); ++t) blocked.observe(params, seq.inputs[t].data(), seq.target(t));
  const auto good_blocked = scratch("good_blocked.checkpoint.safetensors");
  runtime::save_checkpoint(good_blocked, net.name, params, blocked, adam);

  std::vector<double> into(params.size(), 0.0);
  runtime::ExactRtrl<Kernel, double> fresh(k, 3);
  runtime::BlockedRtrl<Kernel, double> fresh_blocked(k, 4);
  runtime::Adam<double> fresh_adam;
  runtime::load_checkpoint(good, net.name, into, fresh, fresh_adam);
  CHECK(into == params);
  runtime::load_checkpoint(good_blocked, net.name, into, fresh_blocked, fresh_adam);
  CHECK(fresh_blocked.state() == blocked.state());

  // Edits: a changed digit in the metadata, a changed parameter value.
  auto edited = [&](const fs::path& from, const std::string& name, auto change, bool reseal) {
    auto f = st::read(from);
    change(f);
    if (reseal) f.metadata["loopgrad.checksum"] = runtime::detail::checksum(f);
    const auto path = scratch(name);
    st::write(path, f);
    return path;
  };
  auto refused_checkpoint = [&](const fs::path& path, const std::string& message) {
    INFO("checkpoint " << path.filename().string());
    std::fill(into.begin(), into.end(), 0.0);
    CHECK_THROWS_WITH_AS(runtime::load_checkpoint(path, net.name, into, fresh, fresh_adam), doctest::Contains(message.c_str()),
                         st::SafetensorsError);
    CHECK(into == std::vector<double>(params.size(), 0.0));
  };
  auto refused_blocked = [&](const fs::path& path, const std::string& message) {
    INFO("checkpoint " << path.filename().string());
    CHECK_THROWS_WITH_AS(runtime::load_checkpoint(path, net.name, into, fresh_blocked, fresh_adam), doctest::Contains(message.c_str()),
                         st::SafetensorsError);
  };
  refused_checkpoint(edited(good, "digit.safetensors", [](st::File& f) { f.metadata["steps"] = "11"; }, false),
                     "its checksum does not match its contents");
  refused_checkpoint(edited(good, "value.safetensors",
                            [](st::File& f) { f.tensors["params"].bytes[3] ^= 1; }, false),
                     "its checksum does not match its contents");
  refused_checkpoint(edited(good, "unsealed.safetensors", [](st::File& f) { f.metadata.erase("loopgrad.checksum"); }, false),
                     "has no checksum");
  // Numbers that are not plain non-negative integers, even with a matching checksum.
  for (const std::string text : {"-1", "500abc", "1e3", " 5", "+5", "", "99999999999999999999"})
    refused_checkpoint(edited(good, "steps.safetensors", [&](st::File& f) { f.metadata["steps"] = text; }, true),
                       "metadata 'steps' is '" + text + "', not a non-negative integer");
  refused_checkpoint(edited(good, "adam.safetensors", [](st::File& f) { f.metadata["optimizer.steps"] = "-1"; }, true),
                     "metadata 'optimizer.steps' is '-1', not a non-negative integer");
  refused_checkpoint(edited(good, "ready.safetensors", [](st::File& f) { f.metadata["gradient_ready"] = "yes"; }, true),
                     "metadata 'gradient_ready' is 'yes', not 0 or 1");
  refused_checkpoint(edited(good, "format.safetensors", [](st::File& f) { f.metadata["loopgrad.checkpoint"] = "3"; }, true),
                     "has checkpoint format '3'");
  refused_blocked(edited(good_blocked, "length.safetensors", [](st::File& f) { f.metadata["block_length"] = "0"; }, true),
                  "metadata 'block_length' is 0, outside 1..");
  refused_blocked(edited(good_blocked, "pending.safetensors", [](st::File& f) { f.metadata["block.pending"] = "9"; }, true),
                  "metadata 'block.pending' is 9, outside 0..2");
}
