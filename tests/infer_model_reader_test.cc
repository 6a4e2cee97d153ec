// The decode API (core/infer/model_reader.h) on a real sharded model: the shared sotu-bytelm
// (F16, two shards) compressed with hc2's fixed mode (layer 0 coded, the rest skipped, i.e. raw)
// and with rtn. Rows decode to exactly the full decode's values, F16 output matches
// `hyperc decompress` bit for bit, raw tensors come back exact, and fused layers over the real
// tensors match decode-then-multiply (tolerance of infer_linear_test.cc).
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/base/dtype.h"
#include "core/infer/model_reader.h"
#include "core/io/safetensors_file.h"
#include "core/pipeline/pipeline.h"
#include "core/pipeline/tbb_executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;

constexpr char kModel[] = "sotu-bytelm-14m-f16";
constexpr char kCoded[] = "model.layers.0.mlp.gate_proj.weight";  // [1024, 384], hc2 fixed
constexpr char kRaw[] = "model.layers.1.mlp.gate_proj.weight";    // skipped: raw F16

std::string Index() {
  return hc::testing::SharedDir() + "/models/" + kModel + "/model.safetensors.index.json";
}

class ModelReaderTest : public ::testing::Test {
 protected:
  // Compresses once per process, into a directory of its own (ctest runs the cases of this
  // suite as concurrent processes).
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(Index())) return;
    dir_ = new std::string(
        hc::testing::ScratchDir("infer_model_reader_" + std::to_string(::getpid())));
    error_ = new std::string();
    CompressOptions o;
    o.codec = "hc2";
    o.codec_options.Set("mode", "fixed");
    o.codec_options.Set("bits", "4");
    o.skip = {"layers\\.[1-9]", "embed", "lm_head"};
    o.threads = 2;
    auto s = CompressModel(Index(), *dir_ + "/hc2", o);
    if (!s.ok()) *error_ = s.status().ToString();
    auto d = DecompressModel(*dir_ + "/hc2", *dir_ + "/hc2-out", 2);
    if (error_->empty() && !d.ok()) *error_ = d.status().ToString();
  }
  static void TearDownTestSuite() {
    if (dir_ != nullptr) std::filesystem::remove_all(*dir_);
    delete dir_;
    delete error_;
  }
  void SetUp() override {
    if (dir_ == nullptr) GTEST_SKIP() << "no shared model " << Index();
    ASSERT_TRUE(error_->empty()) << *error_;
  }
  static std::string* dir_;
  static std::string* error_;
};
std::string* ModelReaderTest::error_ = nullptr;
std::string* ModelReaderTest::dir_ = nullptr;

// The bytes of tensor `name` in the safetensors files of `dir`.
std::vector<uint8_t> TensorBytes(const std::string& dir, const std::string& name) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    auto f = SafetensorsFile::Open(e.path().string());
    EXPECT_TRUE(f.ok()) << f.status();
    const auto& ts = (*f)->header().tensors;
    for (size_t i = 0; i < ts.size(); ++i) {
      if (ts[i].name == name) {
        auto d = (*f)->TensorData(i);
        return std::vector<uint8_t>(d.begin(), d.end());
      }
    }
  }
  ADD_FAILURE() << "no tensor " << name << " in " << dir;
  return {};
}

TEST_F(ModelReaderTest, OpensDirectoryAndIndexAndListsEveryTensor) {
  HC_ASSERT_OK_AND_ASSIGN(auto a, ModelReader::Open(*dir_ + "/hc2"));
  HC_ASSERT_OK_AND_ASSIGN(auto b, ModelReader::Open(*dir_ + "/hc2/hyperc.index.json"));
  EXPECT_EQ(a->TensorNames(), b->TensorNames());
  EXPECT_THAT(a->TensorNames(), Contains(kCoded));
  EXPECT_THAT(a->TensorNames(), Contains(kRaw));
  HC_ASSERT_OK_AND_ASSIGN(const TensorRecord* rec, a->Find(kCoded));
  EXPECT_EQ(rec->codec, "hc2");
  HC_ASSERT_OK_AND_ASSIGN(rec, a->Find(kRaw));
  EXPECT_EQ(rec->codec, "raw");
  HC_ASSERT_OK_AND_ASSIGN(auto shape, a->RowShape(kCoded));
  EXPECT_EQ(shape, std::make_pair(int64_t{1024}, int64_t{384}));
}

TEST_F(ModelReaderTest, RowsEqualFullDecodeAndDecompress) {
  HC_ASSERT_OK_AND_ASSIGN(auto m, ModelReader::Open(*dir_ + "/hc2"));
  TbbExecutor ex(2);
  for (const char* name : {kCoded, kRaw}) {
    HC_ASSERT_OK_AND_ASSIGN(auto shape, m->RowShape(name));
    const auto [rows, len] = shape;
    std::vector<float> full(rows * len);
    ASSERT_THAT(m->DecodeTensor(name, absl::MakeSpan(full), ex), IsOk());
    // F16 rows are exactly what decompress wrote.
    const std::vector<uint8_t> want = TensorBytes(*dir_ + "/hc2-out", name);
    std::vector<uint16_t> half(rows * len);
    ASSERT_THAT(m->DecodeRowsF16(name, 0, rows, absl::MakeSpan(half)), IsOk());
    ASSERT_EQ(want.size(), half.size() * 2);
    EXPECT_EQ(std::memcmp(want.data(), half.data(), want.size()), 0) << name;
    // Raw F16 values widen exactly.
    if (std::string(name) == kRaw) {
      std::vector<float> w(rows * len);
      WidenToF32(DType::kF16, want.data(), w.size(), w.data());
      EXPECT_EQ(w, full);
    }
    // Row ranges, including empty ones and ranges not on 128-element blocks (384 = 3 blocks,
    // so a row starting mid-tensor is block aligned; single rows and odd spans are tested).
    for (auto [r0, r1] :
         {std::pair<int64_t, int64_t>{0, 1}, {5, 6}, {7, 130}, {rows - 3, rows}, {11, 11}}) {
      std::vector<float> part((r1 - r0) * len);
      ASSERT_THAT(m->DecodeRows(name, r0, r1, absl::MakeSpan(part)), IsOk());
      EXPECT_TRUE(std::equal(part.begin(), part.end(), full.begin() + r0 * len))
          << name << " rows " << r0 << ".." << r1;
    }
  }
}

TEST_F(ModelReaderTest, FusedLayersOverRealTensors) {
  HC_ASSERT_OK_AND_ASSIGN(auto m, ModelReader::Open(*dir_ + "/hc2"));
  InlineExecutor ex;
  for (const char* name : {kCoded, kRaw}) {
    HC_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> lin, m->CreateLinear(name));
    EXPECT_EQ(lin->kind().substr(0, 5), std::string(name) == kCoded ? "hc2-f" : "f16");
    const int64_t rows = lin->rows(), cols = lin->cols();
    std::vector<float> w(rows * cols);
    ASSERT_THAT(m->DecodeTensor(name, absl::MakeSpan(w), ex), IsOk());
    const int batch = 4;
    std::mt19937 rng(3);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(batch * cols), y(batch * rows);
    for (float& v : x) v = g(rng);
    ASSERT_THAT(lin->Apply(x, cols, batch, absl::MakeSpan(y), rows, ex), IsOk());
    for (int b = 0; b < batch; ++b) {
      double xn = 0;
      for (int64_t c = 0; c < cols; ++c) xn += double{x[b * cols + c]} * x[b * cols + c];
      for (int64_t r = 0; r < rows; ++r) {
        double ref = 0, wn = 0;
        for (int64_t c = 0; c < cols; ++c) {
          ref += double{w[r * cols + c]} * x[b * cols + c];
          wn += double{w[r * cols + c]} * w[r * cols + c];
        }
        ASSERT_NEAR(y[b * rows + r], ref, 1e-5 * std::sqrt(wn * xn)) << name << " row " << r;
      }
    }
  }
  // A 1-D tensor has no fused layer.
  EXPECT_THAT(m->CreateLinear("model.norm.weight").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model.norm.weight")));
}

TEST_F(ModelReaderTest, Errors) {
  HC_ASSERT_OK_AND_ASSIGN(auto m, ModelReader::Open(*dir_ + "/hc2"));
  InlineExecutor ex;
  std::vector<float> buf(384);
  EXPECT_THAT(m->DecodeRows("nope", 0, 1, absl::MakeSpan(buf)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(m->Find("nope").status(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(m->DecodeRows(kCoded, 1024, 1025, absl::MakeSpan(buf)),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("[1024, 1025)")));
  EXPECT_THAT(m->DecodeRows(kCoded, 3, 2, absl::MakeSpan(buf)),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("rows")));
  EXPECT_THAT(m->DecodeRows(kCoded, 0, 2, absl::MakeSpan(buf)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("need 768")));
  EXPECT_THAT(m->DecodeTensor(kCoded, absl::MakeSpan(buf), ex),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs 393216")));
  EXPECT_THAT(ModelReader::Open(*dir_ + "/missing.safetensors").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

// A corrupted part is caught by its checksum on first use, with the file and tensor named.
TEST_F(ModelReaderTest, ChecksumMismatchIsDataLoss) {
  const std::string src = *dir_ + "/hc2";
  const std::string bad = *dir_ + "/bad";
  std::filesystem::remove_all(bad);
  std::filesystem::copy(src, bad);
  HC_ASSERT_OK_AND_ASSIGN(auto clean, ModelReader::Open(bad));
  HC_ASSERT_OK_AND_ASSIGN(const TensorRecord* rec, clean->Find(kCoded));
  ASSERT_EQ(rec->parts.size(), 2u);
  // Flip the last byte of the shard holding layer 0 (its data region ends with some part).
  std::string shard;
  for (const auto& e : std::filesystem::directory_iterator(bad)) {
    if (e.path().filename().string().find("00001") != std::string::npos) shard = e.path();
  }
  ASSERT_FALSE(shard.empty());
  clean.reset();
  {
    std::FILE* f = std::fopen(shard.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, -1, SEEK_END);
    const int c = std::fgetc(f);
    std::fseek(f, -1, SEEK_END);
    std::fputc(c ^ 0x5A, f);
    std::fclose(f);
  }
  HC_ASSERT_OK_AND_ASSIGN(auto m, ModelReader::Open(bad));
  int data_loss = 0;
  std::vector<float> buf;
  for (const std::string& name : m->TensorNames()) {
    HC_ASSERT_OK_AND_ASSIGN(auto shape, m->RowShape(name));
    buf.resize(shape.second);
    if (shape.first == 0) continue;
    const absl::Status s = m->DecodeRows(name, 0, 1, absl::MakeSpan(buf));
    if (s.code() == absl::StatusCode::kDataLoss) {
      EXPECT_THAT(s.message(), HasSubstr("checksum"));
      ++data_loss;
    }
  }
  EXPECT_EQ(data_loss, 1);
}

}  // namespace
}  // namespace hc
