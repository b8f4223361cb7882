#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <tuple>
#include <utility>

#include "rlaif/common/json_depth.h"

namespace rlaif::trainer {

namespace {

using json = nlohmann::json;

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;  // +-0
    } else {        // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | mant << 13;  // inf / NaN
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace

int SafeTensorsDtypeSize(std::string_view dtype) {
  static const std::pair<std::string_view, int> kSizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8}};
  for (const auto& [name, size] : kSizes) {
    if (name == dtype) return size;
  }
  return 0;
}

// The file's bytes: a read-only mapping, or a copy held in memory.
struct SafeTensorsFile::Storage {
  std::string copy;
  void* map = nullptr;
  size_t map_size = 0;
  std::string_view bytes() const {
    return map ? std::string_view(static_cast<const char*>(map), map_size) : std::string_view(copy);
  }
  ~Storage() {
    if (map) munmap(map, map_size);
  }
};

SafeTensorsFile::SafeTensorsFile() = default;
SafeTensorsFile::SafeTensorsFile(SafeTensorsFile&&) noexcept = default;
SafeTensorsFile& SafeTensorsFile::operator=(SafeTensorsFile&&) noexcept = default;
SafeTensorsFile::~SafeTensorsFile() = default;

Result<SafeTensorsFile> SafeTensorsFile::Open(const std::string& path) {
  // O_NONBLOCK: a FIFO in the file's place must not block the open.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    const std::string m = path + ": " + std::strerror(err);
    return err == ENOENT ? Status::NotFound(m) : Status::IoError(m);
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::IoError(path + ": not a regular file");
  }
  auto storage = std::make_unique<Storage>();
  if (st.st_size > 0) {
    void* map = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return Status::IoError(path + ": mmap: " + std::strerror(err));
    }
    storage->map = map;
    storage->map_size = static_cast<size_t>(st.st_size);
  }
  ::close(fd);  // the mapping stays valid
  return FromStorage(std::move(storage), path);
}

Result<SafeTensorsFile> SafeTensorsFile::Parse(std::string_view bytes) {
  auto storage = std::make_unique<Storage>();
  storage->copy.assign(bytes);
  return FromStorage(std::move(storage), "safetensors");
}

Result<SafeTensorsFile> SafeTensorsFile::FromStorage(std::unique_ptr<Storage> storage,
                                                     const std::string& what) {
  auto bad = [&what](const std::string& m) { return Status::Corruption(what + ": " + m); };
  const std::string_view bytes = storage->bytes();
  if (bytes.size() < 8) return bad("shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = n << 8 | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  if (n > kMaxHeaderBytes) return bad("header length " + std::to_string(n) + " is implausible");
  if (n > bytes.size() - 8) {
    return bad("header length " + std::to_string(n) + " runs past the end of the file (" +
               std::to_string(bytes.size()) + " bytes)");
  }
  const std::string_view header = bytes.substr(8, n);
  if (JsonNestsDeeperThan(header, kMaxHeaderDepth)) {
    return bad("the header nests deeper than " + std::to_string(kMaxHeaderDepth) + " levels");
  }
  json j = json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return bad("the header is not a JSON object");

  SafeTensorsFile file;
  file.data_ = bytes.substr(8 + n);
  file.header_bytes_ = n;
  file.header_hash_ = Fnv1a(header);
  const uint64_t data_size = file.data_.size();
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ranges;  // non-empty ones
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return bad("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) return bad("__metadata__." + m.key() + " is not a string");
        file.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto tensor_bad = [&](const std::string& m) { return bad("tensor '" + name + "': " + m); };
    if (!v.is_object()) return tensor_bad("entry is not an object");
    SafeTensor t;
    t.name = name;
    const auto dtype = v.find("dtype");
    if (dtype == v.end() || !dtype->is_string()) return tensor_bad("no dtype");
    t.dtype = dtype->get<std::string>();
    const int elem = SafeTensorsDtypeSize(t.dtype);
    if (elem == 0) return tensor_bad("unknown dtype \"" + t.dtype + "\"");
    const auto shape = v.find("shape");
    if (shape == v.end() || !shape->is_array()) return tensor_bad("no shape");
    uint64_t numel = 1;
    for (const auto& d : *shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        return tensor_bad("shape has a negative or non-integer dimension");
      }
      const auto dim = static_cast<uint64_t>(d.get<int64_t>());
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / dim) {
        return tensor_bad("shape overflows");
      }
      numel *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    if (numel > data_size) return tensor_bad("shape has more elements than the file has bytes");
    t.numel = static_cast<int64_t>(numel);
    const auto offsets = v.find("data_offsets");
    if (offsets == v.end() || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
      return tensor_bad("data_offsets is not a pair of non-negative integers");
    }
    t.begin = (*offsets)[0].get<uint64_t>();
    t.end = (*offsets)[1].get<uint64_t>();
    if (t.begin > t.end || t.end > data_size) {
      return tensor_bad("data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                        ") outside the data section (" + std::to_string(data_size) + " bytes)");
    }
    if (t.end - t.begin != numel * static_cast<uint64_t>(elem)) {
      return tensor_bad(std::to_string(t.end - t.begin) + " bytes for " + std::to_string(numel) +
                        " elements of " + t.dtype);
    }
    if (t.end > t.begin) ranges.emplace_back(t.begin, t.end, name);
    file.tensors_.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (std::get<0>(ranges[i]) < std::get<1>(ranges[i - 1])) {
      return bad("tensor '" + std::get<2>(ranges[i]) + "' overlaps the bytes of '" +
                 std::get<2>(ranges[i - 1]) + "'");
    }
  }
  file.storage_ = std::move(storage);
  return file;
}

const SafeTensor* SafeTensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::string_view SafeTensorsFile::Bytes(const SafeTensor& t) const {
  return data_.substr(t.begin, t.end - t.begin);
}

Result<std::vector<float>> SafeTensorsFile::ToFloat32(const SafeTensor& t) const {
  if (t.dtype != "F32" && t.dtype != "BF16" && t.dtype != "F16" && t.dtype != "F64") {
    return Status::InvalidArgument("tensor '" + t.name + "' has dtype " + t.dtype +
                                   ", not a floating-point type (F32, F16, BF16, F64)");
  }
  const std::string_view raw = Bytes(t);
  const auto n = static_cast<size_t>(t.numel);
  std::vector<float> out(n);
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  auto load = [p](size_t i, int bytes) {
    uint64_t v = 0;
    for (int b = bytes - 1; b >= 0; --b) v = v << 8 | p[i * static_cast<size_t>(bytes) + b];
    return v;
  };
  if (t.dtype == "F32") {
    for (size_t i = 0; i < n; ++i) {
      const auto bits = static_cast<uint32_t>(load(i, 4));
      std::memcpy(&out[i], &bits, 4);
    }
  } else if (t.dtype == "BF16") {
    for (size_t i = 0; i < n; ++i) {
      const auto bits = static_cast<uint32_t>(load(i, 2)) << 16;
      std::memcpy(&out[i], &bits, 4);
    }
  } else if (t.dtype == "F16") {
    for (size_t i = 0; i < n; ++i) out[i] = HalfToFloat(static_cast<uint16_t>(load(i, 2)));
  } else if (t.dtype == "F64") {
    for (size_t i = 0; i < n; ++i) {
      const uint64_t bits = load(i, 8);
      double d;
      std::memcpy(&d, &bits, 8);
      out[i] = static_cast<float>(d);
    }
  }
  return out;
}

}  // namespace rlaif::trainer
