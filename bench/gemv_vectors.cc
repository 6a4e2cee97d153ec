// hyperc-gemv-vectors: writes test vectors for the CUDA GEMV kernels (bench/gemv_cuda/main.cu),
// made with the real encoders, so the device program (which cannot link core/) checks its fused
// kernels against the codecs' own decoders.
//
//   hyperc-gemv-vectors OUT_FILE
//
// Records (format in bench/gemv_cuda/main.cu): a random matrix (Gaussian, per-row scales from 0.5
// to 2, one outlier in 64 weights times 8) encoded by hc2 fixed mode at 4 and 2 bits and by rtn
// 4-bit group 128; 16 Gaussian vectors x; y_ref = the matrix decoded by the codec's DecodeRange
// (float32), times x, in double. The hc2 records carry the normative codebook C_k.
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/base/parallel.h"
#include "core/base/status_macros.h"
#include "core/codec/codec.h"
#include "core/codec/hc2_fixed.h"

namespace hc {
namespace {

constexpr int kBatch = 16;

struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> w;
};

Matrix RandomMatrix(int64_t rows, int64_t cols, std::mt19937_64& rng) {
  Matrix m{rows, cols, std::vector<float>(static_cast<size_t>(rows * cols))};
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::uniform_real_distribution<float> u(0.5f, 2.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float s = 0.02f * u(rng);
    for (int64_t c = 0; c < cols; ++c) {
      float v = s * n(rng);
      if (rng() % 64 == 0) v *= 8.0f;
      m.w[static_cast<size_t>(r * cols + c)] = v;
    }
  }
  return m;
}

std::vector<PartView> Views(const EncodedTensor& enc) {
  std::vector<PartView> v;
  for (const EncodedPart& p : enc.parts) v.push_back({p.suffix, p.dtype, p.shape, p.bytes});
  return v;
}

void Put(std::vector<uint8_t>& out, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}

// One record: header, parts, codebook (hc2), x, y_ref from `dec`.
absl::Status AppendRecord(uint32_t kind, uint32_t bits, const Matrix& m, const EncodedTensor& enc,
                          const TensorDecoder& dec, const std::vector<float>& x,
                          std::vector<uint8_t>& out) {
  const EncodedPart* codes = nullptr;
  const EncodedPart* scales = nullptr;
  for (const EncodedPart& p : enc.parts) {
    if (p.suffix == "codes" || p.suffix == "symbols") codes = &p;
    if (p.suffix == "scales") scales = &p;
  }
  if (enc.raw || codes == nullptr || scales == nullptr) {
    return absl::InternalError("encoder kept the matrix raw or without codes/scales");
  }
  const uint32_t h[5] = {kind, bits, static_cast<uint32_t>(m.rows), static_cast<uint32_t>(m.cols),
                         kBatch};
  Put(out, h, sizeof(h));
  const uint64_t nc = codes->bytes.size(), ns = scales->bytes.size();
  Put(out, &nc, 8);
  Put(out, codes->bytes.data(), nc);
  Put(out, &ns, 8);
  Put(out, scales->bytes.data(), ns);
  if (kind == 0) {
    Put(out, hc2::TrellisCodebook(static_cast<int>(bits), hc2::kCodebookStructured),
        4096 * sizeof(float));
  }
  Put(out, x.data(), x.size() * sizeof(float));
  std::vector<float> row(static_cast<size_t>(m.cols));
  std::vector<double> y(static_cast<size_t>(kBatch * m.rows));
  for (int64_t r = 0; r < m.rows; ++r) {
    dec.DecodeRange(static_cast<uint64_t>(r * m.cols), absl::MakeSpan(row));
    for (int b = 0; b < kBatch; ++b) {
      double acc = 0;
      for (int64_t c = 0; c < m.cols; ++c) {
        acc += static_cast<double>(row[c]) * x[static_cast<size_t>(b * m.cols + c)];
      }
      y[static_cast<size_t>(b * m.rows + r)] = acc;
    }
  }
  Put(out, y.data(), y.size() * sizeof(double));
  return absl::OkStatus();
}

absl::Status Run(const char* path) {
  std::mt19937_64 rng(20261130);
  InlineExecutor ex;
  std::vector<uint8_t> out;
  Put(out, "HCGV0001", 8);
  const uint32_t count = 3;
  Put(out, &count, 4);
  // 203 rows: uneven row ranges per GPU block and partial row groups.
  for (const auto& [bits, rows] : {std::pair<int, int64_t>{4, 203}, {2, 128}}) {
    const Matrix m = RandomMatrix(rows, 4096, rng);
    std::normal_distribution<float> n(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(kBatch * m.cols));
    for (float& v : x) v = n(rng);
    const EncodedTensor enc = hc2::EncodeFixedTensor(m.w.data(), rows * m.cols, bits, ex);
    const std::vector<PartView> views = Views(enc);
    HC_ASSIGN_OR_RETURN(auto dec, hc2::PrepareFixedDecoder(rows * m.cols, enc.params, views));
    HC_RETURN_IF_ERROR(AppendRecord(0, static_cast<uint32_t>(bits), m, enc, *dec, x, out));
  }
  {
    const Matrix m = RandomMatrix(128, 4096, rng);
    std::normal_distribution<float> n(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(kBatch * m.cols));
    for (float& v : x) v = n(rng);
    HC_ASSIGN_OR_RETURN(auto codec, CreateCodec("rtn", {{"bits", "4"}, {"group_size", "128"}}));
    TensorInfo info;
    info.name = "w";
    info.dtype = DType::kF32;
    info.shape = {m.rows, m.cols};
    info.numel = static_cast<uint64_t>(m.rows * m.cols);
    info.end = info.numel * sizeof(float);
    const absl::Span<const uint8_t> data(reinterpret_cast<const uint8_t*>(m.w.data()), info.end);
    HC_ASSIGN_OR_RETURN(EncodedTensor enc, codec->Encode(info, data, ex));
    HC_ASSIGN_OR_RETURN(auto dec, codec->PrepareDecoder(info, enc.params, Views(enc)));
    HC_RETURN_IF_ERROR(AppendRecord(1, 4, m, enc, *dec, x, out));
  }
  FILE* f = std::fopen(path, "wb");
  if (f == nullptr) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  const bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  if (std::fclose(f) != 0 || !ok) return absl::DataLossError(absl::StrCat("short write to ", path));
  std::printf("wrote %zu bytes to %s\n", out.size(), path);
  return absl::OkStatus();
}

}  // namespace
}  // namespace hc

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_FILE\n", argv[0]);
    return 2;
  }
  const absl::Status s = hc::Run(argv[1]);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
