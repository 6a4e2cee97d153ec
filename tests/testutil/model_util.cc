#include "tests/testutil/model_util.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "core/base/dtype.h"
#include "core/base/status_macros.h"
#include "core/io/safetensors_file.h"
#include "core/io/safetensors_writer.h"
#include "core/io/shard_index.h"
#include "tests/testutil/paths.h"

namespace hc::testing {

std::vector<std::string> SharedModels() {
  return {ModelPath("ppocrv4-rec-f32.safetensors"), ModelPath("faceres-f16.safetensors"),
          ModelPath("movenet-thunder-f16.safetensors"), ModelPath("fmnist-cnn-f32.safetensors"),
          ModelPath("sotu-bytelm-14m-f16/model.safetensors.index.json")};
}

absl::Status WriteBf16Copy(const std::string& src, const std::string& dst) {
  HC_ASSIGN_OR_RETURN(auto in, SafetensorsFile::Open(src));
  HC_ASSIGN_OR_RETURN(auto out, SafetensorsWriter::Create(dst));
  const auto& tensors = in->header().tensors;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    auto data = in->TensorData(i);
    if (t.dtype != DType::kF32) {
      HC_RETURN_IF_ERROR(out->Add(t.name, t.dtype, t.shape, data));
      continue;
    }
    std::vector<float> x(t.numel);
    WidenToF32(DType::kF32, data.data(), t.numel, x.data());
    std::vector<uint8_t> b(2 * t.numel);
    NarrowFromF32(DType::kBF16, x.data(), x.size(), b.data());
    HC_RETURN_IF_ERROR(out->Add(t.name, DType::kBF16, t.shape, b));
  }
  return out->Finish(in->header().metadata);
}

absl::StatusOr<std::string> SplitIntoShards(const std::string& src, const std::string& dir,
                                            int shards) {
  HC_ASSIGN_OR_RETURN(auto in, SafetensorsFile::Open(src));
  const auto& tensors = in->header().tensors;
  std::vector<std::pair<std::string, std::string>> weight_map;
  const size_t per = (tensors.size() + shards - 1) / shards;
  for (int s = 0; s < shards; ++s) {
    const std::string name = absl::StrCat("model-0000", s + 1, "-of-0000", shards, ".safetensors");
    HC_ASSIGN_OR_RETURN(auto out, SafetensorsWriter::Create(absl::StrCat(dir, "/", name)));
    for (size_t i = s * per; i < std::min(tensors.size(), (s + 1) * per); ++i) {
      HC_RETURN_IF_ERROR(out->Add(tensors[i].name, tensors[i].dtype, tensors[i].shape, in->TensorData(i)));
      weight_map.emplace_back(tensors[i].name, name);
    }
    HC_RETURN_IF_ERROR(out->Finish({{"shard", absl::StrCat(s)}}));
  }
  const std::string index = absl::StrCat(dir, "/model.safetensors.index.json");
  std::ofstream(index) << EncodeShardIndex(
      JsonValue::Object().Add("total_size", JsonValue::Int(static_cast<int64_t>(in->header().data_bytes))),
      weight_map);
  return index;
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TensorInfo FlatTensorInfo(DType dtype, int64_t numel) {
  TensorInfo info;
  info.name.push_back('t');  // not = "t": g++ 12 -Wrestrict false positive in this file
  info.dtype = dtype;
  info.shape = {numel};
  info.numel = static_cast<uint64_t>(numel);
  info.begin = 0;
  info.end = info.numel * DTypeSize(dtype);
  return info;
}

}  // namespace hc::testing
