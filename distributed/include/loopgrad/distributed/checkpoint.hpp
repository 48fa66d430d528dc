#pragma once
// One consistent checkpoint of a DataParallel run, written by all its ranks together into a
// directory that every rank can read and write (one machine's disk, or a shared file system):
//
//   DIR/g<G>.run.safetensors        parameters, optimizer, the user's metadata (written once, by rank 0)
//   DIR/g<G>.stream<b>.safetensors  stream b's learner: state, sensitivity, accumulated gradient
//   DIR/manifest.safetensors        names the network, the learner, the stream count and generation G
//
// Every file is a loopgrad checkpoint file (checksummed, written to a temporary and renamed). The
// manifest is renamed into place last, after every rank has written its streams, so the directory
// always holds one whole checkpoint: a save that fails or is killed leaves the previous one in
// force (its files are removed only once the new manifest is in place). A load reads the files of
// the streams that rank now runs, so a run resumes on the same number of ranks or on another
// (streams redistributed), bit for bit.
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "loopgrad/distributed/data_parallel.hpp"
#include "loopgrad/runtime/checkpoint.hpp"

namespace loopgrad::distributed {

namespace detail {

inline std::filesystem::path manifest_path(const std::filesystem::path& dir) { return dir / "manifest.safetensors"; }
// Names built by appending: g++ 12 at -O3 warns falsely (-Wrestrict) on "g" + std::to_string(g).
inline std::filesystem::path run_path(const std::filesystem::path& dir, std::int64_t g) {
  std::string name = "g";
  name += std::to_string(g);
  name += ".run.safetensors";
  return dir / name;
}
inline std::filesystem::path stream_path(const std::filesystem::path& dir, std::int64_t g, std::size_t b) {
  std::string name = "g";
  name += std::to_string(g);
  name += ".stream";
  name += std::to_string(b);
  name += ".safetensors";
  return dir / name;
}

/// The generation a file of a checkpoint directory belongs to ("g12.stream3.safetensors": 12), if any.
inline std::optional<std::int64_t> generation_of(const std::filesystem::path& file) {
  const std::string name = file.filename().string();
  if (name.size() < 2 || name[0] != 'g' || !std::isdigit(static_cast<unsigned char>(name[1]))) return std::nullopt;
  std::size_t end = 1;
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  if (end == name.size() || name[end] != '.' || end > 18) return std::nullopt;
  return std::stoll(name.substr(1, end - 1));
}

/// What a phase met on this rank, for Communicator::agree.
template <class F>
std::optional<std::string> attempt(F&& f) {
  try {
    f();
    return std::nullopt;
  } catch (const std::exception& e) {
    return std::string(e.what());
  }
}

}  // namespace detail

/// Saves a DataParallel run (collective): `params` and `optimizer` (the same on every rank) once,
/// every stream's learner, and the user's metadata, into `dir` (created if missing). Throws
/// CollectiveError on every rank when any rank's part fails; the directory then still holds the
/// previous checkpoint, whole.
template <class Learner, class Optimizer>
void save_checkpoint(const std::filesystem::path& dir, const std::string& network,
                     const std::vector<typename DataParallel<Learner>::Scalar>& params, const DataParallel<Learner>& run,
                     const Optimizer& optimizer, const std::map<std::string, std::string>& user_metadata = {}) {
  namespace rt = loopgrad::runtime;
  const Communicator& comm = run.communicator();
  const std::string what = "saving the checkpoint '" + dir.string() + "'";
  const Learner& first = run.learner(0);
  const std::string algorithm = rt::algorithm_name(first);
  // Rank 0 makes the directory and picks a generation no file there has.
  std::int64_t generation = 1;
  auto prepared = comm.rank() != 0 ? std::nullopt : detail::attempt([&] {
    std::filesystem::create_directories(dir);
    for (const auto& entry : std::filesystem::directory_iterator(dir))
      if (const auto g = detail::generation_of(entry.path())) generation = std::max(generation, *g + 1);
  });
  comm.agree(what + " (making the directory)", prepared);
  detail::check(MPI_Bcast(&generation, 1, MPI_INT64_T, 0, comm.get()), "MPI_Bcast");
  // Every rank writes its streams; rank 0 the run's parameters and optimizer.
  auto written = detail::attempt([&] {
    const auto share = run.share();
    for (std::size_t i = 0; i < share.size(); ++i) {
      const Learner& l = run.learner(i);
      auto f = rt::detail::new_checkpoint({}, network, algorithm, l.steps(), l.gradient_ready());
      f.metadata["distributed.stream"] = std::to_string(share.begin + i);
      f.metadata["distributed.generation"] = std::to_string(generation);
      rt::put_learner(f, l);
      rt::detail::write_checkpoint(detail::stream_path(dir, generation, share.begin + i), f);
    }
    if (comm.rank() == 0) {
      auto f = rt::detail::new_checkpoint(user_metadata, network, algorithm, first.steps(), first.gradient_ready());
      f.metadata["distributed.generation"] = std::to_string(generation);
      f.metadata["distributed.streams"] = std::to_string(run.streams());
      rt::detail::put(f, "params", params);
      rt::save_optimizer(optimizer, f);
      rt::detail::write_checkpoint(detail::run_path(dir, generation), f);
    }
  });
  comm.agree(what + " (writing the streams)", written);
  // Every file is in place: the manifest makes them the checkpoint, then the old ones go.
  auto committed = comm.rank() != 0 ? std::nullopt : detail::attempt([&] {
    auto f = rt::detail::new_checkpoint({}, network, algorithm, first.steps(), first.gradient_ready());
    f.metadata["distributed.generation"] = std::to_string(generation);
    f.metadata["distributed.streams"] = std::to_string(run.streams());
    f.metadata["distributed.ranks_at_save"] = std::to_string(comm.size());
    rt::detail::write_checkpoint(detail::manifest_path(dir), f);
    for (const auto& entry : std::filesystem::directory_iterator(dir))
      if (const auto g = detail::generation_of(entry.path()); g && *g != generation) {
        std::error_code ignored;  // a file left behind costs space, not correctness
        std::filesystem::remove(entry.path(), ignored);
      }
  });
  comm.agree(what + " (writing the manifest)", committed);
}

/// Restores what save_checkpoint wrote into `params`, `optimizer` and the learners of `run`
/// (collective; any number of ranks: each rank reads the streams it runs now). Everything is read
/// and checked on every rank (checksums, network, learner, stream count, sizes, generation) before
/// anything changes; if any rank finds a fault, every rank throws CollectiveError and nothing has
/// changed anywhere.
template <class Learner, class Optimizer>
void load_checkpoint(const std::filesystem::path& dir, const std::string& network,
                     std::vector<typename DataParallel<Learner>::Scalar>& params, DataParallel<Learner>& run,
                     Optimizer& optimizer) {
  namespace rt = loopgrad::runtime;
  using T = typename DataParallel<Learner>::Scalar;
  const Communicator& comm = run.communicator();
  const std::string algorithm = rt::algorithm_name(run.learner(0));
  std::vector<T> new_params;
  Optimizer new_optimizer = optimizer;
  std::vector<rt::Commit> commits;
  auto staged = detail::attempt([&] {
    const std::string where = "distributed checkpoint '" + dir.string() + "'";
    const auto manifest = rt::detail::open_checkpoint(detail::manifest_path(dir), network, algorithm, where + " (manifest)");
    const auto generation = rt::detail::integer(rt::detail::meta(manifest, "distributed.generation", where),
                                                "distributed.generation", where);
    const auto streams = rt::detail::integer(rt::detail::meta(manifest, "distributed.streams", where),
                                             "distributed.streams", where);
    if (static_cast<std::size_t>(streams) != run.streams())
      throw rt::safetensors::SafetensorsError(where + " holds " + std::to_string(streams) + " streams; this run has " +
                                              std::to_string(run.streams()));
    auto same_generation = [&](const rt::safetensors::File& f, const std::string& in) {
      if (rt::detail::meta(f, "distributed.generation", in) != std::to_string(generation))
        throw rt::safetensors::SafetensorsError(in + " belongs to generation " +
                                                rt::detail::meta(f, "distributed.generation", in) + ", the manifest to " +
                                                std::to_string(generation));
    };
    const auto run_file = detail::run_path(dir, generation);
    const std::string run_where = "checkpoint '" + run_file.string() + "'";
    const auto shared = rt::detail::open_checkpoint(run_file, network, algorithm, run_where);
    same_generation(shared, run_where);
    new_params = rt::detail::take<T>(shared, "params", params.size(), run_where);
    rt::load_optimizer(new_optimizer, shared, run_where, params.size());
    const auto share = run.share();
    for (std::size_t i = 0; i < share.size(); ++i) {
      const auto file = detail::stream_path(dir, generation, share.begin + i);
      const std::string in = "checkpoint '" + file.string() + "'";
      const auto f = rt::detail::open_checkpoint(file, network, algorithm, in);
      same_generation(f, in);
      if (rt::detail::meta(f, "distributed.stream", in) != std::to_string(share.begin + i))
        throw rt::safetensors::SafetensorsError(in + " holds stream " + rt::detail::meta(f, "distributed.stream", in) +
                                                ", not " + std::to_string(share.begin + i));
      commits.push_back(rt::read_learner(f, run.learner(i), in));
    }
  });
  comm.agree("loading the checkpoint '" + dir.string() + "'", staged);
  params = std::move(new_params);
  optimizer = std::move(new_optimizer);
  for (const auto& commit : commits) commit();
  run.restored();
}

}  // namespace loopgrad::distributed
