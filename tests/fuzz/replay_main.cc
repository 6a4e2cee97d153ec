// Runs files through a fuzz target's LLVMFuzzerTestOneInput without libFuzzer (after zstd's
// regression_driver.c), so the committed corpus is a regression test in the normal build.
//
//   fuzz_replay_X FILE_OR_DIR...   each file once, directories recursively, sorted; files named
//                                  *.crash are skipped (known, not yet fixed reproducers).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path p = argv[i];
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
    } else {
      files.push_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  int run = 0, skipped = 0;
  for (const auto& f : files) {
    if (f.extension() == ".crash") {
      std::fprintf(stderr, "skip (known crash) %s\n", f.c_str());
      ++skipped;
      continue;
    }
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "cannot read %s\n", f.c_str());
      return 1;
    }
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
    std::fprintf(stderr, "run %s (%zu bytes)\n", f.c_str(), bytes.size());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ++run;
  }
  std::printf("replayed %d file(s), skipped %d\n", run, skipped);
  if (run == 0) {
    std::fprintf(stderr, "no corpus files given\n");
    return 1;
  }
  return 0;
}
