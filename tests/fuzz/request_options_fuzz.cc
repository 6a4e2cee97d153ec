// Property: any hyperc.v1.CompressOptions a client can send, converted by FromProto and passed to TensorCompressor::Create (and, if accepted, used on a small tensor), never crashes and is rejected only with InvalidArgument.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/base/parallel.h"
#include "core/io/safetensors.h"
#include "core/pipeline/pipeline.h"
#include "google/protobuf/stubs/logging.h"
#include "hyperc/v1/hyperc.pb.h"
#include "server/proto_convert.h"
#include "tests/fuzz/fuzz_util.h"

// Protobuf logs every string field that is not UTF-8; quiet, that is most inputs.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hc;
  using namespace hc::fuzz;
  hyperc::v1::CompressOptions proto;
  if (!proto.ParseFromArray(data, static_cast<int>(size))) return 0;
  CompressOptions options = server::FromProto(proto);
  options.threads = 1;
  auto compressor = TensorCompressor::Create(options);
  if (!compressor.ok()) {
    HC_FUZZ_CHECK(compressor.status().code() == absl::StatusCode::kInvalidArgument,
                  compressor.status().ToString());
    return 0;
  }
  // Accepted options must work on an ordinary tensor (two names: skip rules match either).
  std::vector<float> w(64);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.05f * std::sin(0.7f * static_cast<float>(i));
  const absl::Span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(w.data()),
                                        w.size() * sizeof(float));
  InlineExecutor executor;
  for (const char* name : {"layer.0.weight", "fc.bias"}) {
    TensorInfo info;
    info.name = name;
    info.dtype = DType::kF32;
    info.shape = {8, 8};
    info.numel = 64;
    info.end = bytes.size();
    auto r = (*compressor)->Compress(info, bytes, executor);
    HC_FUZZ_CHECK(r.ok() || r.status().code() == absl::StatusCode::kInvalidArgument,
                  r.status().ToString());
  }
  return 0;
}
