// Property: for every registered codec, PrepareDecoder on arbitrary params and parts either fails with DataLoss/InvalidArgument or returns a decoder whose DecodeRange stays in bounds for every range inside the tensor (run under ASan + UBSan).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/base/dtype.h"
#include "core/base/json.h"
#include "core/codec/codec.h"
#include "core/io/safetensors.h"
#include "tests/fuzz/codec_fuzz_format.h"
#include "tests/fuzz/fuzz_util.h"

// Tensors above this many elements are not decoded whole (DecodeRange samples them).
constexpr uint64_t kMaxWholeDecode = uint64_t{1} << 16;
// Largest tensor the harness describes at all.
constexpr uint64_t kMaxNumel = uint64_t{1} << 26;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hc;
  using namespace hc::fuzz;
  FuzzReader in(data, size);
  const absl::string_view codec_name = kFuzzCodecs[in.U8() % kFuzzCodecs.size()];
  TensorInfo info;
  info.name = "fuzz";
  info.dtype = kFuzzFloatTypes[in.U8() % kFuzzFloatTypes.size()];
  const int rank = in.U8() % 5;
  for (int i = 0; i < rank; ++i) info.shape.push_back(in.U32());
  const std::optional<uint64_t> numel = CheckedByteSize(info.shape, 1);
  if (!numel || *numel > kMaxNumel) return 0;
  info.numel = *numel;
  info.begin = 0;
  info.end = info.numel * DTypeSize(info.dtype);

  auto params = ParseJson(in.Until('\0'));
  if (!params.ok()) return 0;

  std::vector<std::string> storage;  // part bytes, kept alive for the views
  std::vector<PartView> parts;
  const int nparts = in.U8() % 5;
  storage.reserve(nparts);
  for (int i = 0; i < nparts; ++i) {
    PartView p;
    p.suffix = in.Until('\0');
    p.dtype = static_cast<DType>(in.U8() % kFuzzDTypeCount);
    const size_t esize = DTypeSize(p.dtype);
    size_t len = std::min<size_t>(in.U32(), in.remaining());
    len -= len % esize;
    // Exactly len bytes; copied so ASan sees the real bounds of each part.
    std::string bytes;
    for (size_t k = 0; k < len; ++k) bytes.push_back(static_cast<char>(in.U8()));
    storage.push_back(std::move(bytes));
    p.shape = {static_cast<int64_t>(len / esize)};
    p.bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(storage.back().data()),
                                  storage.back().size());
    parts.push_back(std::move(p));
  }

  auto codec = CreateCodec(codec_name, {});
  HC_FUZZ_CHECK(codec.ok(), codec.status().ToString());
  auto decoder = (*codec)->PrepareDecoder(info, *params, parts);
  if (!decoder.ok()) {
    HC_FUZZ_CHECK(CodeIn(decoder.status(),
                         {absl::StatusCode::kDataLoss, absl::StatusCode::kInvalidArgument}),
                  decoder.status().ToString());
    return 0;
  }
  if (info.numel == 0) return 0;
  // Whole tensor when small, else a few ranges chosen by the input (one at each end).
  std::vector<float> out;
  if (info.numel <= kMaxWholeDecode) {
    out.assign(info.numel, 0.0f);
    (*decoder)->DecodeRange(0, absl::MakeSpan(out));
  }
  for (int i = 0; i < 8; ++i) {
    uint64_t begin = in.U64() % info.numel;
    if (i == 0) begin = 0;
    const uint64_t left = info.numel - begin;
    uint64_t len = 1 + in.U64() % std::min<uint64_t>(left, 4096);
    if (i == 1) begin = info.numel - (len = std::min<uint64_t>(len, info.numel));
    out.assign(len, 0.0f);
    (*decoder)->DecodeRange(begin, absl::MakeSpan(out));
  }
  return 0;
}
