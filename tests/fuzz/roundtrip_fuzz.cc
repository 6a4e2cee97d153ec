// Property: any small finite F32/F16/BF16 tensor encodes with every codec deterministically (same bytes twice), and its stored parts and JSON-round-tripped params decode without error to finite values.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/base/dtype.h"
#include "core/base/json.h"
#include "core/base/parallel.h"
#include "core/codec/codec.h"
#include "core/io/safetensors.h"
#include "tests/fuzz/codec_fuzz_format.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

// rtn once converted NaN to an integer here (fixed; the reproducers stay in the corpus). Kept
// as a switch so a future known issue can be fenced off the same way.
constexpr bool kSkipKnownRtnNanCast = false;

float ElementAt(const std::vector<uint8_t>& bytes, hc::DType dtype, size_t i) {
  if (dtype == hc::DType::kF32) {
    float v;
    std::memcpy(&v, bytes.data() + 4 * i, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, bytes.data() + 2 * i, 2);
  return dtype == hc::DType::kF16 ? hc::HalfToFloat(h) : hc::BFloat16ToFloat(h);
}

// Elements encoded at most: hc2's fixed mode (a odd) runs a Viterbi search over 2^(12 - bits)
// states per coefficient, too slow under the sanitizers for the full 4096.
size_t MaxElements(absl::string_view codec, uint8_t a) {
  return codec == "hc2" && (a & 1) ? 1024 : 4096;
}

// hc2 ec with a / 16 == 1: the elements are repeated to at least this many, so that even after
// the cut to whole rows (at most 2047 elements) the tensor's one chunk holds >= 32768 weights
// and is coded as a lane stream (hc2_entropy.h kMinLaneChunk), which smaller tensors never
// reach. Under 65536 (one chunk). Such an input costs about 0.3 s under the sanitizers (two
// encodes with a step search), hence 1 value of a's high nibble in 16, not a whole bit.
constexpr size_t kLaneElements = 32768 + 2048;
bool TilesToLanes(absl::string_view codec, uint8_t a) {
  return codec == "hc2" && (a & 1) == 0 && (a >> 4) == 1;
}

// hc2's tensor shape for n elements and the selector v (0..15): rank 1 for v < 2, else rank 2
// with v rows (v <= 8) or 2^(v - 4) rows (32..2048; rows of under 8 weights get no `rows` or
// `dc` bytes) of n / rows elements (rank 1 again when n < rows). Rank 2 is what lets the
// optional parts "rows" and "dc" appear.
std::vector<int64_t> Hc2Shape(size_t n, int v) {
  const int64_t rows = v < 2 ? 0 : v <= 8 ? v : int64_t{1} << (v - 4);
  if (rows == 0 || static_cast<int64_t>(n) < rows) return {static_cast<int64_t>(n)};
  return {rows, static_cast<int64_t>(n) / rows};
}

}  // namespace

// Input: u8 codec, u8 dtype, u8 option a, u8 option b, then the elements (little-endian; at
// most MaxElements of them, for hc2 maybe repeated (TilesToLanes), then cut to whole rows of
// Hc2Shape).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hc;
  using namespace hc::fuzz;
  FuzzReader in(data, size);
  const absl::string_view codec_name = kFuzzCodecs[in.U8() % kFuzzCodecs.size()];
  const DType dtype = kFuzzFloatTypes[in.U8() % kFuzzFloatTypes.size()];
  const uint8_t a = in.U8(), b = in.U8();
  CodecOptions options;
  if (codec_name == "rtn") {
    options.Set("bits", absl::StrCat(2 + a % 7));
    options.Set("group_size", absl::StrCat(b < 200 ? 1 + b : 128 << (b % 4)));
  } else if (codec_name == "hc1") {
    static constexpr const char* kPresets[] = {"llm", "unet", "mobilenet"};
    options.Set("preset", kPresets[a % 3]);
    if (b & 1) options.Set("fallback_mae", "0");
  } else {
    // hc2: a = mode (bit 0), then bits 2..4 (fixed) or a bpw (ec), and in ec the high nibble
    // 1 the repetition to a lane stream (TilesToLanes); b = tcq (bit 0), dc (bit 1),
    // relative (bits 2-3), rows (bits 4-7, see Hc2Shape). Every option is set in both modes (the
    // ones a mode ignores must not matter).
    static constexpr const char* kBpw[] = {"0.25", "0.5", "1", "2", "3", "4.25", "8", "32"};
    static constexpr const char* kRelative[] = {"0", "0.3", "0.5", "1"};
    options.Set("mode", (a & 1) ? "fixed" : "ec");
    options.Set("bits", absl::StrCat(2 + (a >> 1) % 3));
    options.Set("bpw", kBpw[(a >> 1) % 8]);
    options.Set("tcq", (b & 1) ? "true" : "false");
    options.Set("dc", (b & 2) ? "true" : "false");
    options.Set("relative", kRelative[(b >> 2) & 3]);
  }
  auto codec = CreateCodec(codec_name, options);
  HC_FUZZ_CHECK(codec.ok(), codec.status().ToString());

  // Elements: non-finite values become 0 (the pipeline never hands those to a codec).
  const size_t esize = DTypeSize(dtype);
  std::string rest = in.Rest();
  rest.resize(std::min<size_t>(rest.size() - rest.size() % esize,
                               MaxElements(codec_name, a) * esize));
  std::vector<uint8_t> bytes(rest.begin(), rest.end());
  if (TilesToLanes(codec_name, a) && !bytes.empty()) {
    // Repeated whole to kLaneElements and more: one chunk coded as a lane stream.
    const std::vector<uint8_t> unit = bytes;
    while (bytes.size() < kLaneElements * esize) {
      bytes.insert(bytes.end(), unit.begin(), unit.end());
    }
  }
  // hc2 may see a matrix (Hc2Shape); the elements past its last whole row are dropped.
  std::vector<int64_t> shape = {static_cast<int64_t>(bytes.size() / esize)};
  if (codec_name == "hc2") shape = Hc2Shape(bytes.size() / esize, b >> 4);
  const size_t n = static_cast<size_t>(shape.size() == 1 ? shape[0] : shape[0] * shape[1]);
  bytes.resize(n * esize);
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(ElementAt(bytes, dtype, i))) std::memset(bytes.data() + i * esize, 0, esize);
  }
  // Known bug, not fixed yet (corpus/roundtrip_fuzz/rtn-*.crash reproduce it): rtn's Encode
  // converts NaN to uint32, undefined behaviour (core/codec/rtn.cc, `q[i - b] =
  // static_cast<uint32_t>(v + 0.5f)`), for a group whose minimum rounds to an infinite F16 zero
  // point while its F16 scale is 0 or infinite; it then keeps the tensor raw. Until the fix, such
  // tensors are not given to rtn, so that fuzzing can go on past it. Remove this with the fix
  // and drop the .crash suffixes.
  if (kSkipKnownRtnNanCast && codec_name == "rtn") {
    const size_t g = std::stoul(*options.Get("group_size"));
    for (size_t gb = 0; gb < n; gb += g) {
      float lo = INFINITY;
      for (size_t i = gb; i < std::min(n, gb + g); ++i) lo = std::min(lo, ElementAt(bytes, dtype, i));
      if (!std::isfinite(HalfToFloat(FloatToHalf(lo)))) return 0;
    }
  }
  TensorInfo info;
  info.name = "w";
  info.dtype = dtype;
  info.shape = shape;
  info.numel = n;
  info.end = bytes.size();

  InlineExecutor executor;
  auto enc = (*codec)->Encode(info, bytes, executor);
  HC_FUZZ_CHECK(enc.ok(), enc.status().ToString());
  auto enc2 = (*codec)->Encode(info, bytes, executor);
  HC_FUZZ_CHECK(enc2.ok(), enc2.status().ToString());
  HC_FUZZ_CHECK(enc->raw == enc2->raw, "raw decision differs");
  HC_FUZZ_CHECK(enc->params.Dump() == enc2->params.Dump(), "params differ between runs");
  HC_FUZZ_CHECK(enc->parts.size() == enc2->parts.size(), "part count differs");
  for (size_t k = 0; k < enc->parts.size(); ++k) {
    HC_FUZZ_CHECK(enc->parts[k].suffix == enc2->parts[k].suffix, "suffix differs");
    HC_FUZZ_CHECK(enc->parts[k].bytes == enc2->parts[k].bytes,
                  "part bytes differ between runs: " + enc->parts[k].suffix);
  }
  if (enc->raw) {
    HC_FUZZ_CHECK(enc->parts.empty(), "raw tensor with parts");
    return 0;
  }
  // Decode as a reader of the artifact would: params from their JSON text.
  auto params = ParseJson(enc->params.Dump());
  HC_FUZZ_CHECK(params.ok(), params.status().ToString());
  std::vector<PartView> views;
  for (const EncodedPart& p : enc->parts) {
    const std::optional<uint64_t> nbytes = CheckedByteSize(p.shape, DTypeSize(p.dtype));
    HC_FUZZ_CHECK(nbytes && *nbytes == p.bytes.size(), "part shape does not match its bytes");
    views.push_back(PartView{p.suffix, p.dtype, p.shape, p.bytes});
  }
  auto decoder = (*codec)->PrepareDecoder(info, *params, views);
  HC_FUZZ_CHECK(decoder.ok(), decoder.status().ToString());
  std::vector<float> out(n);
  (*decoder)->DecodeRange(0, absl::MakeSpan(out));
  for (size_t i = 0; i < n; ++i) {
    HC_FUZZ_CHECK(std::isfinite(out[i]), absl::StrCat("element ", i, " decodes to ", out[i]));
  }
  return 0;
}
