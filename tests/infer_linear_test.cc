// Fused linear layers (core/infer/linear.h) against decode-then-multiply, on tensors encoded by
// the real codecs. Tolerance: |y - y_ref| <= 1e-5 * ||w_r||_2 * ||x_b||_2 (+ 1e-30), with y_ref
// the float64 dot product of the decoder's float32 row and x. Why 1e-5 (about 170 float32 ulps of
// the Cauchy-Schwarz bound): the kernels sum <= 4096 products in float32 through 16 lanes and
// per-block partial sums (error <= ~cols/16 * u relative to sum |w x| <= sqrt(cols) ||w|| ||x||
// in the worst case, far less in practice), and hc2 works on Rot(x) / 128 (7 exact-order
// butterfly stages, an orthogonal map up to the scale, so its float32 error is about 7 u ||x||
// per block). The observed error is ~1e-7 relative; a wrong code, window, scale or sign gives
// errors of order 1e-2 and more.
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/simd.h"
#include "core/codec/codec.h"
#include "core/infer/linear.h"
#include "core/pipeline/tbb_executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::StatusIs;
using ::testing::HasSubstr;

// Gaussian weights with 0.2 % outliers at +-12 sigma, fixed seed.
std::vector<float> Weights(int64_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 0.03f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> w(n);
  for (float& v : w) v = u(rng) < 0.002f ? (u(rng) < 0.5f ? -0.36f : 0.36f) : g(rng);
  return w;
}

// One encoded weight: parts kept alive, the decoded float32 matrix, and a Linear over it.
struct Encoded {
  std::vector<std::vector<uint8_t>> bytes;
  LinearWeight weight;
  std::vector<float> decoded;
};

Encoded Encode(const std::string& codec_name, const CodecOptions& options, int64_t rows,
               int64_t cols, uint32_t seed) {
  Encoded e;
  const std::vector<float> w = Weights(rows * cols, seed);
  auto codec = CreateCodec(codec_name, options);
  EXPECT_TRUE(codec.ok()) << codec.status();
  TensorInfo info;
  info.name = "w";
  info.dtype = DType::kF32;
  info.shape = {rows, cols};
  info.numel = static_cast<uint64_t>(rows * cols);
  info.end = info.numel * 4;
  InlineExecutor ex;
  auto enc = (*codec)->Encode(
      info, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(w.data()), info.end), ex);
  EXPECT_TRUE(enc.ok()) << enc.status();
  EXPECT_FALSE(enc->raw) << enc->raw_reason;
  e.weight.codec = codec_name;
  e.weight.dtype = DType::kF32;
  e.weight.shape = info.shape;
  e.weight.params = enc->params;
  for (EncodedPart& p : enc->parts) e.bytes.push_back(std::move(p.bytes));
  for (size_t i = 0; i < enc->parts.size(); ++i) {
    e.weight.parts.push_back(
        PartView{enc->parts[i].suffix, enc->parts[i].dtype, enc->parts[i].shape, e.bytes[i]});
  }
  auto dec = (*codec)->PrepareDecoder(info, e.weight.params, e.weight.parts);
  EXPECT_TRUE(dec.ok()) << dec.status();
  e.decoded.resize(info.numel);
  (*dec)->DecodeRange(0, absl::MakeSpan(e.decoded));
  return e;
}

// A raw F16 / F32 weight: the bytes are the "encoding", the widened values the decoded matrix.
Encoded Dense(DType dt, int64_t rows, int64_t cols, uint32_t seed) {
  Encoded e;
  const std::vector<float> w = Weights(rows * cols, seed);
  e.bytes.emplace_back(w.size() * DTypeSize(dt));
  NarrowFromF32(dt, w.data(), w.size(), e.bytes[0].data());
  e.decoded.resize(w.size());
  WidenToF32(dt, e.bytes[0].data(), w.size(), e.decoded.data());
  e.weight.codec = "raw";
  e.weight.dtype = dt;
  e.weight.shape = {rows, cols};
  e.weight.parts.push_back(PartView{"", dt, {rows, cols}, e.bytes[0]});
  return e;
}

std::vector<float> Inputs(int batch, int64_t ld, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(batch * ld));
  for (float& v : x) v = g(rng);
  return x;
}

// Runs the layer and checks every output against the float64 reference within the tolerance.
std::vector<float> CheckAgainstReference(const Encoded& e, const Linear& lin, int batch,
                                         Executor& ex) {
  const int64_t rows = lin.rows(), cols = lin.cols();
  const int64_t ldx = cols + 3, ldy = rows + 1;  // strides above the shape on purpose
  const std::vector<float> x = Inputs(batch, ldx, 99 + batch);
  std::vector<float> y(static_cast<size_t>(batch * ldy), -1.0f);
  EXPECT_THAT(lin.Apply(x, ldx, batch, absl::MakeSpan(y), ldy, ex), IsOk());
  for (int b = 0; b < batch; ++b) {
    double xn = 0;
    for (int64_t c = 0; c < cols; ++c) xn += double{x[b * ldx + c]} * x[b * ldx + c];
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0, wn = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double w = e.decoded[r * cols + c];
        ref += w * x[b * ldx + c];
        wn += w * w;
      }
      const double tol = 1e-5 * std::sqrt(wn * xn) + 1e-30;
      EXPECT_NEAR(y[b * ldy + r], ref, tol)
          << lin.kind() << (SimdAllowed() ? " simd" : " scalar") << " row " << r << " batch row "
          << b << " of " << batch;
    }
  }
  return y;
}

struct Case {
  std::string codec;
  CodecOptions options;
  int64_t rows, cols;
};

std::vector<Case> Cases() {
  std::vector<Case> v;
  for (const char* bits : {"2", "3", "4"}) {
    v.push_back({"hc2", {{"mode", "fixed"}, {"bits", bits}}, 19, 384});
  }
  v.push_back({"hc2", {{"mode", "fixed"}, {"bits", "4"}}, 3, 128});
  for (const char* bits : {"2", "3", "4", "5", "8"}) {
    v.push_back({"rtn", {{"bits", bits}, {"group_size", "128"}}, 21, 256});
  }
  v.push_back({"rtn", {{"bits", "4"}, {"group_size", "32"}}, 9, 96});
  v.push_back({"rtn", {{"bits", "4"}, {"group_size", "64"}}, 11, 192});
  v.push_back({"rtn", {{"bits", "4"}, {"group_size", "256"}}, 6, 512});
  v.push_back({"hc1", {{"preset", "llm"}, {"fallback_mae", "0"}}, 23, 130});
  v.push_back({"hc1", {{"preset", "llm"}, {"fallback_mae", "0"}}, 5, 66});
  v.push_back({"hc1", {{"preset", "unet"}}, 17, 64});
  return v;
}

TEST(InferLinearTest, FusedMatchesDecodeThenMultiply) {
  InlineExecutor ex;
  uint32_t seed = 1;
  for (const Case& c : Cases()) {
    const Encoded e = Encode(c.codec, c.options, c.rows, c.cols, seed++);
    HC_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> lin, CreateLinear(e.weight));
    for (int batch : {1, 3, 4, 16}) {
      CheckAgainstReference(e, *lin, batch, ex);
      ScopedScalarOnly scalar;
      CheckAgainstReference(e, *lin, batch, ex);
    }
    if (c.codec == "hc2") {  // the pair-table and gather kernels on the same codes
      const std::string bits = *c.options.Get("bits");
      const std::string table = LinearHasAvx512() ? "-pairs" : "-gather";
      EXPECT_EQ(lin->kind(), "hc2-fixed-" + bits +
                                 (bits == "4" && LinearHasHc2Integer() ? "-int" : table));
      LinearOptions o;
      o.hc2_integer = false;
      HC_ASSERT_OK_AND_ASSIGN(lin, CreateLinear(e.weight, o));
      EXPECT_EQ(lin->kind(), "hc2-fixed-" + bits + table);
      for (int batch : {1, 2, 16}) CheckAgainstReference(e, *lin, batch, ex);
      o.hc2_pair_table = false;
      HC_ASSERT_OK_AND_ASSIGN(lin, CreateLinear(e.weight, o));
      EXPECT_EQ(lin->kind(), "hc2-fixed-" + bits + "-gather");
      for (int batch : {1, 2, 16}) CheckAgainstReference(e, *lin, batch, ex);
    }
  }
}

TEST(InferLinearTest, DenseMatchesReference) {
  InlineExecutor ex;
  for (DType dt : {DType::kF16, DType::kF32}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{5, 37}, {20, 64}, {3, 1}, {33, 250}}) {
      const Encoded e = Dense(dt, rows, cols, static_cast<uint32_t>(rows * cols));
      HC_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> lin, CreateLinear(e.weight));
      EXPECT_EQ(lin->kind(), dt == DType::kF16 ? "f16" : "f32");
      for (int batch : {1, 2, 5, 16}) {
        CheckAgainstReference(e, *lin, batch, ex);
        ScopedScalarOnly scalar;
        CheckAgainstReference(e, *lin, batch, ex);
      }
    }
  }
}

// Every output is computed by one thread in a fixed order: the bits do not depend on the thread
// count. The fused kernels also accumulate a batch row the same way in every batch chunk width,
// so an input row gives the same outputs in any slot of a batch of the same size (the dense
// baselines keep more partial sums at widths 1 and 2, so they are not tested for that).
TEST(InferLinearTest, ResultsDoNotDependOnThreadsOrSlot) {
  InlineExecutor inline_ex;
  TbbExecutor pool(2);
  for (const Case& c : Cases()) {
    const Encoded e = Encode(c.codec, c.options, c.rows, c.cols, 77);
    HC_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> lin, CreateLinear(e.weight));
    const int64_t rows = c.rows, cols = c.cols;
    for (int batch : {1, 5, 16}) {
      const std::vector<float> x = Inputs(batch, cols, 5);
      std::vector<float> y1(batch * rows), y2(batch * rows), y3(batch * rows);
      ASSERT_THAT(lin->Apply(x, cols, batch, absl::MakeSpan(y1), rows, inline_ex), IsOk());
      ASSERT_THAT(lin->Apply(x, cols, batch, absl::MakeSpan(y2), rows, pool), IsOk());
      EXPECT_EQ(y1, y2) << lin->kind();
      // The batch rows reversed give the outputs reversed, bit for bit.
      std::vector<float> xr(x.size());
      for (int b = 0; b < batch; ++b) {
        std::copy(x.begin() + b * cols, x.begin() + (b + 1) * cols,
                  xr.begin() + (batch - 1 - b) * cols);
      }
      ASSERT_THAT(lin->Apply(xr, cols, batch, absl::MakeSpan(y3), rows, pool), IsOk());
      for (int b = 0; b < batch; ++b) {
        EXPECT_TRUE(std::equal(y3.begin() + (batch - 1 - b) * rows, y3.begin() + (batch - b) * rows,
                               y1.begin() + b * rows))
            << lin->kind() << " batch " << batch << " row " << b;
      }
    }
  }
}

TEST(InferLinearTest, KindsAndBytes) {
  const Encoded h = Encode("hc2", {{"mode", "fixed"}, {"bits", "4"}}, 4, 256, 3);
  HC_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> lin, CreateLinear(h.weight));
  EXPECT_EQ(lin->kind(), LinearHasHc2Integer() ? "hc2-fixed-4-int"
                         : LinearHasAvx512()     ? "hc2-fixed-4-pairs"
                                                 : "hc2-fixed-4-gather");
  EXPECT_EQ(lin->weight_bytes(), 4u * 256 * 4 / 8 + 2u * 8);  // codes + one F16 scale per block
  const Encoded r = Encode("rtn", {{"bits", "4"}, {"group_size", "128"}}, 4, 256, 3);
  HC_ASSERT_OK_AND_ASSIGN(lin, CreateLinear(r.weight));
  EXPECT_EQ(lin->kind(), LinearHasHc2Integer() ? "rtn-4-g128-int" : "rtn-4-g128");
  EXPECT_EQ(lin->weight_bytes(), 4u * 256 * 4 / 8 + 4u * 8);
  LinearOptions o;
  o.rtn_integer = false;
  HC_ASSERT_OK_AND_ASSIGN(lin, CreateLinear(r.weight, o));
  EXPECT_EQ(lin->kind(), "rtn-4-g128");
}

// Edge inputs for the integer kernels (X of `lin.cols()` values, a multiple of 128, at least
// 384): all zeros; one huge and one tiny value with a constant block; the same with a zero block;
// plain Gaussian. Checks the AVX-512 kernel against its scalar reference (same rounded X, exact
// integer sums: only float32 accumulation differs), both against the float64 reference of the
// decoded weights within the stated tolerance, and that NaN in X gives NaN out.
void CheckEdgeInputs(const Encoded& e, const Linear& lin, const std::string& what) {
  InlineExecutor ex;
  const int64_t rows = lin.rows(), cols = lin.cols();
  std::vector<std::vector<float>> inputs;
  inputs.push_back(std::vector<float>(cols, 0.0f));
  std::vector<float> x = Inputs(1, cols, 3);
  x[5] = 1e30f;     // one huge value: the rest of its block rounds to 0
  x[200] = 1e-30f;  // tiny
  for (int i = 256; i < 384; ++i) x[i] = -2.5f;  // a constant block
  inputs.push_back(x);
  for (int i = 128; i < 256; ++i) x[i] = 0.0f;  // and a zero block
  inputs.push_back(x);
  inputs.push_back(Inputs(1, cols, 4));
  for (const std::vector<float>& in : inputs) {
    std::vector<float> ys(rows), yv(rows);
    ASSERT_THAT(lin.Apply(in, cols, 1, absl::MakeSpan(yv), rows, ex), IsOk());
    {
      ScopedScalarOnly scalar;
      ASSERT_THAT(lin.Apply(in, cols, 1, absl::MakeSpan(ys), rows, ex), IsOk());
    }
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0, mag = 0, wn = 0, xn = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double w = e.decoded[r * cols + c];
        ref += w * in[c];
        mag += std::fabs(w) * std::fabs(in[c]);
        wn += w * w;
        xn += double{in[c]} * in[c];
      }
      // X's rounding: <= 1/65278 of each block's largest value, bounded here through the
      // Cauchy-Schwarz product of the row and X norms.
      const double tol = 1e-5 * std::sqrt(wn * xn) + 1e-30;
      EXPECT_NEAR(yv[r], ys[r], 1e-6 * mag + 1e-30) << what << " row " << r;
      EXPECT_NEAR(yv[r], ref, tol) << what << " row " << r;
    }
  }
  std::vector<float> nan_x = Inputs(1, cols, 5), y(rows);
  nan_x[130] = std::numeric_limits<float>::quiet_NaN();
  ASSERT_THAT(lin.Apply(nan_x, cols, 1, absl::MakeSpan(y), rows, ex), IsOk());
  for (int64_t r = 0; r < rows; ++r) EXPECT_TRUE(std::isnan(y[r])) << what << " row " << r;
}

// hc2's integer kernel on hand-made codebook 2 records (all-zero, all-one and random symbol bytes,
// scales spanning F16) and edge inputs (zero blocks, one huge or tiny value, a block that is all
// one value, NaN): the AVX-512 kernel against its scalar reference (same rounded X, exact integer
// sums, so only float32 accumulation differs), both against the float64 reference of the decoded
// weights within the rounding of X to 16 bits, and NaN in X gives NaN out (CheckEdgeInputs).
TEST(InferLinearTest, Hc2IntegerKernelOnEdgeInputs) {
  if (!LinearHasHc2Integer()) GTEST_SKIP() << "no AVX-512 VBMI + GFNI + VNNI here";
  const int64_t rows = 5, cols = 384;
  std::mt19937 rng(11);
  for (int fill : {0, 0xFF, -1}) {
    std::vector<uint8_t> sym(static_cast<size_t>(rows * cols / 2));
    for (uint8_t& b : sym) b = fill >= 0 ? static_cast<uint8_t>(fill) : static_cast<uint8_t>(rng());
    std::vector<uint8_t> scales(2 * rows * cols / 128);
    const uint16_t halves[] = {0x3C00, 0x0001, 0x7BFF, 0x0000, 0xB800, 0x2E66};
    for (size_t i = 0; i < scales.size() / 2; ++i) {
      const uint16_t h = halves[i % 6];
      scales[2 * i] = static_cast<uint8_t>(h & 0xFF);
      scales[2 * i + 1] = static_cast<uint8_t>(h >> 8);
    }
    LinearWeight w;
    w.codec = "hc2";
    w.dtype = DType::kF32;
    w.shape = {rows, cols};
    w.params = JsonValue::Object()
                   .Add("mode", JsonValue::String("fixed"))
                   .Add("bits", JsonValue::Int(4))
                   .Add("window", JsonValue::Int(12))
                   .Add("codebook", JsonValue::Int(2));
    w.parts = {PartView{"symbols", DType::kU8, {static_cast<int64_t>(sym.size())}, sym},
               PartView{"scales", DType::kF16, {rows * cols / 128}, scales}};
    Encoded e;
    e.weight = w;
    auto codec = CreateCodec("hc2", {});
    ASSERT_THAT(codec, IsOk());
    TensorInfo info;
    info.dtype = DType::kF32;
    info.shape = w.shape;
    info.numel = static_cast<uint64_t>(rows * cols);
    info.end = info.numel * 4;
    HC_ASSERT_OK_AND_ASSIGN(auto dec, (*codec)->PrepareDecoder(info, w.params, w.parts));
    e.decoded.resize(info.numel);
    dec->DecodeRange(0, absl::MakeSpan(e.decoded));
    HC_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> lin, CreateLinear(w));
    ASSERT_EQ(lin->kind(), "hc2-fixed-4-int");
    CheckEdgeInputs(e, *lin, absl::StrCat("fill ", fill));
  }
}

// rtn's integer kernel on real 4-bit codes (Gaussian weights with outliers, so many groups'
// zero points are far from the middle code) for groups of 64, 128 and 256, on the same edge
// inputs.
TEST(InferLinearTest, RtnIntegerKernelOnEdgeInputs) {
  if (!LinearHasHc2Integer()) GTEST_SKIP() << "no AVX-512 VBMI + GFNI + VNNI here";
  for (const char* group : {"64", "128", "256"}) {
    const Encoded e = Encode("rtn", {{"bits", "4"}, {"group_size", group}}, 7, 512, 21);
    HC_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> lin, CreateLinear(e.weight));
    ASSERT_EQ(lin->kind(), absl::StrCat("rtn-4-g", group, "-int"));
    CheckEdgeInputs(e, *lin, absl::StrCat("group ", group));
  }
}

TEST(InferLinearTest, UnsupportedLayoutsAreRejected) {
  // hc2 blocks straddle rows when cols % 128 != 0.
  Encoded e = Encode("hc2", {{"mode", "fixed"}, {"bits", "4"}}, 4, 192, 1);
  EXPECT_THAT(CreateLinear(e.weight).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("cols % 128")));
  e = Encode("hc2", {{"bpw", "4.25"}}, 4, 256, 1);  // entropy-coded mode
  EXPECT_THAT(CreateLinear(e.weight).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("\"fixed\" only")));
  e = Encode("rtn", {{"bits", "4"}, {"group_size", "128"}}, 3, 192, 1);
  EXPECT_THAT(CreateLinear(e.weight).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("groups of 128")));
  e = Encode("hc1", {{"preset", "llm"}, {"fallback_mae", "0"}}, 5, 33, 1);
  EXPECT_THAT(CreateLinear(e.weight).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("cols is even")));
  // A weight that is not 2-D.
  e = Encode("rtn", {{"bits", "4"}, {"group_size", "128"}}, 2, 256, 1);
  e.weight.shape = {512};
  EXPECT_THAT(CreateLinear(e.weight).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2-D")));
  // Parts that do not match the shape: the codec's own checks (DataLoss).
  e = Encode("rtn", {{"bits", "4"}, {"group_size", "128"}}, 2, 256, 1);
  e.weight.shape = {4, 256};
  EXPECT_THAT(CreateLinear(e.weight).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("rtn")));
  EXPECT_THAT(CreateLinear(LinearWeight{"zstd", DType::kF32, {2, 2}, {}, {}}).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("zstd")));
  std::vector<uint8_t> bf16(8);
  EXPECT_THAT(CreateDenseLinear(DType::kBF16, 2, 2, bf16).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("BF16")));
  EXPECT_THAT(CreateDenseLinear(DType::kF16, 2, 3, bf16).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("8 bytes")));
}

TEST(InferLinearTest, ApplyChecksArguments) {
  const Encoded e = Dense(DType::kF32, 4, 8, 1);
  HC_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> lin, CreateLinear(e.weight));
  InlineExecutor ex;
  std::vector<float> x(8 * 17), y(4 * 17);
  EXPECT_THAT(lin->Apply(x, 8, 0, absl::MakeSpan(y), 4, ex),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batch 0")));
  EXPECT_THAT(lin->Apply(x, 8, 17, absl::MakeSpan(y), 4, ex),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batch 17")));
  EXPECT_THAT(lin->Apply(x, 7, 1, absl::MakeSpan(y), 4, ex),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("strides")));
  EXPECT_THAT(lin->Apply(absl::MakeConstSpan(x).first(15), 8, 2, absl::MakeSpan(y), 4, ex),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs 16")));
}

}  // namespace
}  // namespace hc
