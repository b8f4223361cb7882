// The safetensors reader (trainer/src/safetensors.cc, no LibTorch): any bytes
// either parse into tensors whose byte ranges lie inside the data section,
// match their shape and dtype and do not overlap, or are refused as
// corruption; converting any parsed tensor never reads outside it.
#include <algorithm>
#include <string_view>
#include <vector>

#include "fuzz_target.h"
#include "safetensors.h"

RLAIF_FUZZ_TARGET(safetensors) {
  using rlaif::trainer::SafeTensorsDtypeSize;
  using rlaif::trainer::SafeTensorsFile;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto file = SafeTensorsFile::Parse(bytes);
  if (!file.ok()) {
    FUZZ_CHECK(file.status().code() == rlaif::StatusCode::kCorruption);
    return 0;
  }
  FUZZ_CHECK(size >= 8 + file->header_bytes());
  const uint64_t data_size = size - 8 - file->header_bytes();
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, t] : file->tensors()) {
    FUZZ_CHECK(name == t.name && name != "__metadata__");
    const int elem = SafeTensorsDtypeSize(t.dtype);
    FUZZ_CHECK(elem > 0);
    FUZZ_CHECK(t.begin <= t.end && t.end <= data_size);
    FUZZ_CHECK(t.end - t.begin == static_cast<uint64_t>(t.numel) * static_cast<uint64_t>(elem));
    FUZZ_CHECK(file->Bytes(t).size() == t.end - t.begin);
    if (t.end > t.begin) ranges.emplace_back(t.begin, t.end);
    auto values = file->ToFloat32(t);
    const bool is_float =
        t.dtype == "F32" || t.dtype == "F16" || t.dtype == "BF16" || t.dtype == "F64";
    FUZZ_CHECK(values.ok() == is_float);
    if (values.ok()) FUZZ_CHECK(values->size() == static_cast<size_t>(t.numel));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) FUZZ_CHECK(ranges[i].first >= ranges[i - 1].second);
  return 0;
}
