// Working memory of each codec on a large tensor: the peak resident memory that compressing a
// synthetic 64M-weight F16 tensor adds (encoding and statistics) stays within the codec's own
// estimate (Codec::EncodeMemory, which the pipeline schedules on), and for rtn and hc2 that
// estimate stays far below a float32 copy of the tensor. Each codec runs in a child process (this
// binary again, filtered to EncodeMemoryChild.Run) so that its peak is its own.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/dtype.h"
#include "core/pipeline/pipeline.h"
#include "core/pipeline/tbb_executor.h"
#include "gtest/gtest.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/status_matchers.h"

extern char** environ;

namespace hc {
namespace {

constexpr char kChildEnv[] = "HC_MEMORY_TEST_CODEC";

// Peak resident set of this process so far, in bytes.
uint64_t PeakRss() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

// A [rows, cols] F16 tensor of roughly Gaussian values (std 0.02, the sum of four uniforms),
// written directly as F16 so that no float copy raises the peak before the measurement.
std::vector<uint8_t> F16Tensor(int64_t numel, uint64_t seed) {
  std::vector<uint8_t> out(2 * numel);
  uint64_t s = seed;
  for (int64_t i = 0; i < numel; ++i) {
    float sum = 0;
    for (int k = 0; k < 4; ++k) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      sum += static_cast<float>(s >> 40) / static_cast<float>(1 << 24) - 0.5f;
    }
    const uint16_t h = FloatToHalf(0.02f * 1.7320508f * sum);
    out[2 * i] = static_cast<uint8_t>(h);
    out[2 * i + 1] = static_cast<uint8_t>(h >> 8);
  }
  return out;
}

TensorInfo Info(int64_t rows, int64_t cols) {
  TensorInfo t = ::hc::testing::FlatTensorInfo(DType::kF16, rows * cols);
  t.shape = {rows, cols};
  return t;
}

CompressOptions OptionsFor(const std::string& codec) {
  CompressOptions o;
  o.codec = codec;
  // hc1 without its raw fallback, so that the tensor is always encoded in full.
  if (codec == "hc1") o.codec_options = {{"preset", "llm"}, {"fallback_mae", "0"}};
  return o;
}

// Runs in the child only (the parent's test sets kChildEnv).
TEST(EncodeMemoryChild, Run) {
  const char* codec = std::getenv(kChildEnv);
  if (codec == nullptr) GTEST_SKIP() << "run by EncodeMemoryTest in a child process";
  HC_ASSERT_OK_AND_ASSIGN(auto tc, TensorCompressor::Create(OptionsFor(codec)));
  TbbExecutor ex(2);
  // A small tensor first: threads, tables and codebook layouts exist before the baseline.
  const TensorInfo small = Info(256, 1024);
  HC_ASSERT_OK(tc->Compress(small, F16Tensor(small.numel, 1), ex).status());

  const TensorInfo info = Info(8192, 8192);  // 64M weights, 128 MiB of input
  const std::vector<uint8_t> data = F16Tensor(info.numel, 2);
  const uint64_t before = PeakRss();
  HC_ASSERT_OK_AND_ASSIGN(TensorCompressor::Result r, tc->Compress(info, data, ex));
  const uint64_t growth = PeakRss() - before;
  EXPECT_NE(r.record.codec, "raw") << r.record.raw_reason;

  const uint64_t estimate = tc->EncodeMemory(info);
  // Generous: a quarter over the estimate plus 64 MiB (allocator, threads, statistics chunks).
  EXPECT_LE(growth, estimate + estimate / 4 + (uint64_t{64} << 20))
      << codec << ": peak grew by " << (growth >> 20) << " MiB, estimate " << (estimate >> 20)
      << " MiB";
  if (std::string(codec) != "hc1") {
    // Chunked codecs: well under the 4 bytes per weight of a float32 copy of the tensor.
    EXPECT_LE(estimate, 2 * info.numel) << codec;
  }
  std::printf("%s: peak grew by %llu MiB for %llu weights (estimate %llu MiB)\n", codec,
              static_cast<unsigned long long>(growth >> 20),
              static_cast<unsigned long long>(info.numel),
              static_cast<unsigned long long>(estimate >> 20));
}

class EncodeMemoryTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EncodeMemoryTest, PeakWithinEstimate) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's shadow memory and quarantine inflate the peak";
#endif
  ASSERT_EQ(::setenv(kChildEnv, GetParam().c_str(), 1), 0);
  std::string self = "/proc/self/exe", filter = "--gtest_filter=EncodeMemoryChild.Run";
  char* argv[] = {self.data(), filter.data(), nullptr};
  pid_t pid = 0;
  const int err = ::posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, environ);
  ::unsetenv(kChildEnv);
  ASSERT_EQ(err, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's failures are in the log above";
}

INSTANTIATE_TEST_SUITE_P(Codecs, EncodeMemoryTest, ::testing::Values("rtn", "hc1", "hc2"));

}  // namespace
}  // namespace hc
