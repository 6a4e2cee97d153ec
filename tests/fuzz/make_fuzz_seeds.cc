// Writes the seed files of the fuzz corpora (tests/fuzz/README.md):
//   make_fuzz_seeds MODELS_DIR CORPUS_DIR
// MODELS_DIR holds fmnist-cnn-f32.safetensors; CORPUS_DIR is tests/fuzz/corpus. Existing files of
// the same names are overwritten; other corpus files are left alone. Output is deterministic.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/base/dtype.h"
#include "core/codec/codec.h"
#include "core/codec/hc2_fixed.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_file.h"
#include "core/pipeline/pipeline.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "hyperc/v1/hyperc.pb.h"
#include "tests/fuzz/codec_fuzz_format.h"

namespace hc::fuzz {
namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "make_fuzz_seeds: %s\n", what.c_str());
  std::exit(1);
}

void Write(const std::filesystem::path& path, absl::string_view bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.good()) Die("cannot write " + path.string());
  std::printf("%s (%zu bytes)\n", path.c_str(), bytes.size());
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Die("cannot read " + path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A safetensors file holding the named tensors of `src` (same bytes, in the given order).
std::string Subset(const SafetensorsFile& src, const std::vector<std::string>& names,
                   const StringMap& metadata) {
  std::vector<TensorInfo> tensors;
  std::string data;
  for (const std::string& name : names) {
    for (size_t i = 0; i < src.header().tensors.size(); ++i) {
      TensorInfo t = src.header().tensors[i];
      if (t.name != name) continue;
      const auto bytes = src.TensorData(i);
      t.begin = data.size();
      data.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      t.end = data.size();
      tensors.push_back(t);
    }
  }
  const std::string json = EncodeSafetensorsHeader(tensors, metadata);
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((json.size() >> (8 * i)) & 0xff));
  return out + json + data;
}

void PutU32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A codec_decode_fuzz input for `enc`, the encoding of `info` (codec_fuzz_format.h).
std::string CodecInput(int codec, int dtype, const TensorInfo& info, const EncodedTensor& enc) {
  std::string s;
  s.push_back(static_cast<char>(codec));
  s.push_back(static_cast<char>(dtype));
  s.push_back(static_cast<char>(info.shape.size()));
  for (int64_t d : info.shape) PutU32(&s, static_cast<uint32_t>(d));
  s += enc.params.Dump();
  s.push_back('\0');
  s.push_back(static_cast<char>(enc.parts.size()));
  for (const EncodedPart& p : enc.parts) {
    s += p.suffix;
    s.push_back('\0');
    s.push_back(static_cast<char>(p.dtype));
    PutU32(&s, static_cast<uint32_t>(p.bytes.size()));
    s.append(p.bytes.begin(), p.bytes.end());
  }
  for (int i = 0; i < 16; ++i) PutU32(&s, 0x9e3779b9u * (i + 1));
  return s;
}

// Deterministic weights: a sine damped by exp(-decay i), with a few outliers.
std::vector<float> Weights(size_t n, float scale, float decay = 0.001f) {
  std::vector<float> w(n);
  for (size_t i = 0; i < n; ++i) {
    const float t = static_cast<float>(i);
    w[i] = scale * std::sin(0.37f * t) * std::exp(-decay * t);
    if (i % 97 == 5) w[i] *= 8;
  }
  return w;
}

std::vector<uint8_t> AsDType(const std::vector<float>& w, DType d) {
  std::vector<uint8_t> out;
  for (float v : w) {
    if (d == DType::kF32) {
      const auto* p = reinterpret_cast<const uint8_t*>(&v);
      out.insert(out.end(), p, p + 4);
    } else {
      const uint16_t h = d == DType::kF16 ? FloatToHalf(v) : FloatToBFloat16(v);
      out.push_back(static_cast<uint8_t>(h & 0xff));
      out.push_back(static_cast<uint8_t>(h >> 8));
    }
  }
  return out;
}

int Main(int argc, char** argv) {
  if (argc != 3) Die("usage: make_fuzz_seeds MODELS_DIR CORPUS_DIR");
  const std::filesystem::path corpus = argv[2];
  auto model = SafetensorsFile::Open(std::string(argv[1]) + "/fmnist-cnn-f32.safetensors");
  if (!model.ok()) Die(model.status().ToString());

  // safetensors_header_fuzz: a tiny real model, and edge cases.
  const std::string tiny = Subset(**model, {"c1.bias", "c1.weight", "f2.bias"},
                                  {{"source", "fmnist-cnn-f32 subset"}});
  const auto header_dir = corpus / "safetensors_header_fuzz";
  Write(header_dir / "seed-fmnist-tiny.safetensors", tiny);
  Write(header_dir / "seed-empty-header.safetensors", std::string("\x02\0\0\0\0\0\0\0{}", 10));
  {
    const std::string json =
        R"({"__metadata__":{"a":"b"},"z":{"dtype":"F16","shape":[0,3],"data_offsets":[0,0]},)"
        R"("x":{"dtype":"I32","shape":[],"data_offsets":[0,4]},)"
        R"("y":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]}})";
    std::string f;
    for (int i = 0; i < 8; ++i) f.push_back(static_cast<char>((json.size() >> (8 * i)) & 0xff));
    Write(header_dir / "seed-edge-cases.safetensors", f + json + std::string(8, '\x3c'));
  }

  // artifact_decode_fuzz: rtn and hc1 artifacts of fmnist-cnn-f32 without its largest tensor
  // (f1.weight, 3.2 MB), and a few mutations of them.
  const std::string tmp = (std::filesystem::temp_directory_path() /
                           absl::StrCat("hc-fuzz-seeds-", getpid())).string();
  std::filesystem::create_directories(tmp);
  const std::string src = tmp + "/fmnist-small.safetensors";
  Write(src, Subset(**model, {"c1.bias", "c1.weight", "c2.bias", "c2.weight", "f1.bias",
                              "f2.bias", "f2.weight"},
                    (*model)->header().metadata));
  const auto art_dir = corpus / "artifact_decode_fuzz";
  struct ArtifactCase {
    std::string tag;  // file names: seed-fmnist-TAG.hyc, mut-fmnist-TAG-*.hyc
    std::string codec;
    CodecOptions options;
    std::string param;  // a record parameter whose value's first byte the "-param" mutation flips
  };
  const std::vector<ArtifactCase> artifacts = {
      {"rtn", "rtn", {}, "bits"},
      {"hc1", "hc1", {{"preset", "mobilenet"}}, "n"},
      // ec with rows and dc bytes on the matrices; fixed rate with codebook 2.
      {"hc2", "hc2", {{"dc", "true"}}, "step"},
      {"hc2-fixed", "hc2", {{"mode", "fixed"}, {"bits", "3"}}, "bits"},
      {"hc2-lanes", "hc2", {{"bpw", "2"}, {"dc", "true"}}, "step"},
  };
  // hc2 ec of a tensor large enough for a lane stream (>= 32768 weights in a chunk): the first
  // 16 rows of f1.weight (16 x 3136), at 2 bits per weight with dc.
  const std::string lanes_src = tmp + "/fmnist-f1-rows.safetensors";
  {
    const auto& tensors = (*model)->header().tensors;
    size_t f1 = tensors.size();
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].name == "f1.weight") f1 = i;
    }
    if (f1 == tensors.size() || tensors[f1].dtype != DType::kF32 || tensors[f1].shape.size() != 2) {
      Die("fmnist-cnn-f32 has no F32 matrix f1.weight");
    }
    TensorInfo t = tensors[f1];
    t.shape[0] = 16;
    t.numel = static_cast<uint64_t>(16 * t.shape[1]);
    t.begin = 0;
    t.end = 4 * t.numel;
    const auto bytes = (*model)->TensorData(f1).subspan(0, t.end);
    const std::string json = EncodeSafetensorsHeader({t}, {{"source", "fmnist-cnn-f32 rows"}});
    std::string f;
    for (int i = 0; i < 8; ++i) f.push_back(static_cast<char>((json.size() >> (8 * i)) & 0xff));
    Write(lanes_src, f + json + std::string(bytes.begin(), bytes.end()));
  }
  for (const ArtifactCase& a : artifacts) {
    CompressOptions o;
    o.codec = a.codec;
    o.codec_options = a.options;
    o.threads = 1;
    o.sync = false;
    const std::string out = absl::StrCat(tmp, "/", a.tag, ".hyc");
    auto r = CompressModel(a.tag == "hc2-lanes" ? lanes_src : src, out, o);
    if (!r.ok()) Die(r.status().ToString());
    const std::string art = ReadAll(out);
    Write(art_dir / absl::StrCat("seed-fmnist-", a.tag, ".hyc"), art);
    std::string m = art;
    m[m.size() - 100] ^= 0x10;  // a flipped code bit: part checksum
    Write(art_dir / absl::StrCat("mut-fmnist-", a.tag, "-databit.hyc"), m);
    m = art.substr(0, art.size() - 1);  // truncated
    Write(art_dir / absl::StrCat("mut-fmnist-", a.tag, "-truncated.hyc"), m);
    m = art;
    // A codec parameter changed (the metadata checksum catches it); the records are JSON
    // inside a JSON string, so the key's quotes are escaped.
    const std::string key = absl::StrCat(R"(\")", a.param, R"(\":)");
    const size_t at = m.find(key);
    if (at != std::string::npos) {
      m[at + key.size()] ^= 0x01;
      Write(art_dir / absl::StrCat("mut-fmnist-", a.tag, "-param.hyc"), m);
    }
  }
  std::filesystem::remove_all(tmp);

  // codec_decode_fuzz and roundtrip_fuzz: small tensors through each codec and dtype.
  const auto codec_dir = corpus / "codec_decode_fuzz";
  const auto rt_dir = corpus / "roundtrip_fuzz";
  InlineExecutor executor;
  struct Case {
    int codec;
    CodecOptions options;
    std::vector<int64_t> shape;
    std::string tag;
  };
  const std::vector<Case> cases = {
      {0, {}, {300}, "rtn-default"},
      {0, {{"bits", "2"}, {"group_size", "7"}}, {100}, "rtn-b2-g7"},
      {0, {{"bits", "8"}, {"group_size", "1"}}, {33}, "rtn-b8-g1"},
      {0, {{"bits", "3"}, {"group_size", "64"}}, {1001}, "rtn-b3-g64"},
      {1, {{"preset", "llm"}, {"fallback_mae", "0"}}, {400}, "hc1-llm"},
      {1, {{"preset", "unet"}}, {257}, "hc1-unet"},
      {1, {{"preset", "mobilenet"}}, {1000}, "hc1-mobilenet"},
      // hc2 ec on matrices (parts stream, index, rows; dc adds dc), ec on a vector without
      // tcq or rows, and fixed rate (codebook 2, part symbols) with a partial last block.
      {2, {}, {16, 64}, "hc2-ec"},
      {2, {{"dc", "true"}}, {16, 64}, "hc2-ec-dc"},
      {2, {{"bpw", "2"}, {"tcq", "false"}, {"relative", "0"}}, {300}, "hc2-ec-b2-notcq"},
      // Chunks of >= 32768 weights are lane streams (hc2_entropy.h kMinLaneChunk): one lane
      // chunk with rows and dc; a lane chunk then a short (revision 1) one at a low rate.
      {2, {{"bpw", "1"}, {"dc", "true"}}, {64, 576}, "hc2-ec-lanes"},
      {2, {{"bpw", "0.5"}, {"relative", "0"}}, {75000}, "hc2-ec-2chunks"},
      {2, {{"mode", "fixed"}, {"bits", "2"}}, {4, 80}, "hc2-fixed-b2"},
      {2, {{"mode", "fixed"}, {"bits", "3"}}, {300}, "hc2-fixed-b3"},
      {2, {{"mode", "fixed"}, {"bits", "4"}}, {2, 128}, "hc2-fixed-b4"},
  };
  for (const Case& c : cases) {
    auto codec = CreateCodec(kFuzzCodecs[c.codec], c.options);
    if (!codec.ok()) Die(codec.status().ToString());
    const size_t n = static_cast<size_t>(
        std::accumulate(c.shape.begin(), c.shape.end(), int64_t{1}, std::multiplies<>()));
    for (int d = 0; d < 3; ++d) {
      const DType dtype = kFuzzFloatTypes[d];
      // Undamped for the large (lane stream) cases, which would otherwise be mostly zeros.
      const std::vector<uint8_t> bytes =
          AsDType(Weights(n, 0.05f, n > 4096 ? 0.0f : 0.001f), dtype);
      TensorInfo info;
      info.name = "w";
      info.dtype = dtype;
      info.shape = c.shape;
      info.numel = n;
      info.end = bytes.size();
      auto enc = (*codec)->Encode(info, bytes, executor);
      if (!enc.ok()) Die(enc.status().ToString());
      const std::string tag = absl::StrCat(c.tag, "-", DTypeName(dtype));
      if (!enc->raw) Write(codec_dir / ("seed-" + tag + ".bin"), CodecInput(c.codec, d, info, *enc));
    }
  }
  {
    // A version 4 fixed record (codebook 1: part "codes", no `codebook` param), still decoded.
    const std::vector<float> w = Weights(300, 0.05f);
    TensorInfo info;
    info.name = "w";
    info.dtype = DType::kF32;
    info.shape = {300};
    info.numel = 300;
    info.end = 4 * 300;
    const EncodedTensor enc = hc2::EncodeFixedTensor(w.data(), 300, 4, executor,
                                                     hc2::kCodebookTrained);
    if (enc.raw) Die("hc2 fixed codebook 1 seed went raw");
    Write(codec_dir / "seed-hc2-fixed-cb1-b4-F32.bin", CodecInput(2, 0, info, enc));
  }
  // roundtrip_fuzz: codec, dtype, option bytes a and b (roundtrip_fuzz.cc), then the elements.
  // hc2: ec at 4.25 bpw on 4 rows with tcq, dc and relative 1; ec at 1 bpw on 32 rows, tcq
  // only; ec at 3 bpw on a vector with dc (ignored there); fixed at 2 bits on 2 rows, 3 bits on
  // a vector, 4 bits on 3 rows; ec at 3 bpw repeated to a lane stream, 32 rows with dc only.
  const std::vector<std::vector<uint8_t>> rt_options = {
      {0, 0, 2, 127},  {0, 1, 0, 6},    {0, 2, 6, 0},   {1, 0, 0, 1},
      {1, 1, 1, 0},    {1, 2, 2, 1},    {2, 0, 10, 0x4f}, {2, 1, 4, 0x91},
      {2, 2, 6, 0x02}, {2, 0, 1, 0x20}, {2, 1, 3, 0x00}, {2, 2, 5, 0x33},
      {2, 1, 0x18, 0x92}};
  for (size_t i = 0; i < rt_options.size(); ++i) {
    const DType dtype = kFuzzFloatTypes[rt_options[i][1]];
    std::vector<uint8_t> s = rt_options[i];
    const std::vector<uint8_t> w = AsDType(Weights(256 + 37 * i, 0.02f + 0.1f * i), dtype);
    s.insert(s.end(), w.begin(), w.end());
    Write(rt_dir / absl::StrCat("seed-", i, ".bin"), std::string(s.begin(), s.end()));
  }

  // request_options_fuzz: serialized hyperc.v1.CompressOptions.
  const auto req_dir = corpus / "request_options_fuzz";
  // Deterministic serialization: map entries (codec_options) sorted by key, not in the
  // process's hash order.
  auto write_proto = [&](const std::string& name, const hyperc::v1::CompressOptions& p) {
    std::string bytes;
    {
      google::protobuf::io::StringOutputStream stream(&bytes);
      google::protobuf::io::CodedOutputStream coded(&stream);
      coded.SetSerializationDeterministic(true);
      if (!p.SerializeToCodedStream(&coded)) Die("cannot serialize " + name);
    }
    Write(req_dir / ("seed-" + name + ".pb"), bytes);
  };
  hyperc::v1::CompressOptions p;
  write_proto("empty", p);
  (*p.mutable_codec_options())["bits"] = "3";
  (*p.mutable_codec_options())["group_size"] = "64";
  p.set_codec("rtn");
  p.add_skip("bias$");
  write_proto("rtn", p);
  p.Clear();
  p.set_codec("hc1");
  (*p.mutable_codec_options())["preset"] = "unet";
  (*p.mutable_codec_options())["n"] = "225,1600";
  (*p.mutable_codec_options())["class_max"] = "4";
  p.add_skip("^layer\\.(0|1)\\.");
  write_proto("hc1", p);
  p.Clear();
  p.set_codec("nope");
  p.add_skip("(");
  write_proto("bad", p);
  return 0;
}

}  // namespace
}  // namespace hc::fuzz

int main(int argc, char** argv) { return hc::fuzz::Main(argc, argv); }
