// Where tests find the shared data (models, golden files) and a scratch directory.
#ifndef HC_TESTS_TESTUTIL_PATHS_H_
#define HC_TESTS_TESTUTIL_PATHS_H_

#include <cstdlib>
#include <filesystem>
#include <string>

namespace hc::testing {

/// ../shared beside the source tree, or $HC_SHARED_DIR.
inline std::string SharedDir() {
  if (const char* d = std::getenv("HC_SHARED_DIR")) return d;
  const char* src = std::getenv("HC_SOURCE_DIR");
  std::filesystem::path p = src ? src : HC_SOURCE_DIR_DEFAULT;
  return (p.parent_path() / "shared").string();
}

/// A shared model file, e.g. ModelPath("ppocrv4-rec-f32.safetensors").
inline std::string ModelPath(const std::string& name) { return SharedDir() + "/models/" + name; }

/// A fresh, empty scratch directory for one test (removed at the start of the next run).
inline std::string ScratchDir(const std::string& name) {
  const char* bin = std::getenv("HC_BINARY_DIR");
  std::filesystem::path p = std::filesystem::path(bin ? bin : HC_BINARY_DIR_DEFAULT) /
                            "test-scratch" / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

}  // namespace hc::testing

#endif  // HC_TESTS_TESTUTIL_PATHS_H_
