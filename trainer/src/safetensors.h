// Reading the safetensors format (Hugging Face's weight files: an 8-byte
// little-endian header length N, N bytes of JSON naming each tensor's dtype,
// shape and byte range, then the raw little-endian data), for loading a
// pretrained backbone (hf_backbone.h). Plain C++: no LibTorch, so the parser
// is unit-tested and fuzzed on its own.
//
//   auto file = SafeTensorsFile::Open("model.safetensors");
//   if (!file.ok()) return file.status();
//   const SafeTensor* t = file->Find("wte.weight");
//   auto values = file->ToFloat32(*t);  // F32, F16, BF16 or F64 -> float
//
// Everything in the header is checked before any tensor is read: a header
// length past the end of the file or above kMaxHeaderBytes, JSON that is not
// an object of tensor entries, an unknown dtype, a negative or overflowing
// shape, a byte range out of the data section, of the wrong size for its
// shape and dtype, or overlapping another tensor's: all kCorruption, with the
// tensor's name in the message.
//
// The file is mapped, not read: replacing it in place (truncating it) while a
// backbone loads would fault the process; write a new directory instead.
//
// Thread safety: immutable after Open/Parse; const calls may run concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rlaif/common/status.h"

namespace rlaif::trainer {

struct SafeTensor {
  std::string name;
  std::string dtype;           // as written: "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;  // [] for a scalar
  int64_t numel = 1;
  uint64_t begin = 0, end = 0;  // byte range within the data section
};

class SafeTensorsFile {
 public:
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the format's own limit
  // Arrays and objects nested deeper than this in the header are refused
  // before it is parsed (a well-formed header nests 3 deep).
  static constexpr int kMaxHeaderDepth = 8;

  // Maps `path` read-only (nothing is copied until ToFloat32). kNotFound if
  // it does not exist, kIoError if unreadable, kCorruption as above.
  static Result<SafeTensorsFile> Open(const std::string& path);
  // The same checks on a file's bytes held in memory (tests, fuzzing); the
  // returned object keeps its own copy.
  static Result<SafeTensorsFile> Parse(std::string_view bytes);

  SafeTensorsFile(SafeTensorsFile&&) noexcept;
  SafeTensorsFile& operator=(SafeTensorsFile&&) noexcept;
  ~SafeTensorsFile();

  // nullptr if there is no tensor of that name.
  const SafeTensor* Find(const std::string& name) const;
  // By name (the "__metadata__" entry is not a tensor and is not listed).
  const std::map<std::string, SafeTensor>& tensors() const { return tensors_; }
  // "__metadata__" string pairs, if any.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The values of a floating-point tensor as float32, in storage order.
  // kInvalidArgument for a non-float dtype (the message names it).
  Result<std::vector<float>> ToFloat32(const SafeTensor& t) const;
  // The tensor's raw bytes.
  std::string_view Bytes(const SafeTensor& t) const;
  uint64_t header_bytes() const { return header_bytes_; }
  // FNV-1a of the JSON header: names, dtypes, shapes and offsets (a cheap
  // identity for a multi-gigabyte file; the data itself is not hashed).
  uint64_t header_hash() const { return header_hash_; }

 private:
  struct Storage;
  SafeTensorsFile();
  static Result<SafeTensorsFile> FromStorage(std::unique_ptr<Storage> storage,
                                             const std::string& what);

  std::unique_ptr<Storage> storage_;
  std::string_view data_;  // the data section, within storage_
  std::map<std::string, SafeTensor> tensors_;
  std::map<std::string, std::string> metadata_;
  uint64_t header_bytes_ = 0;
  uint64_t header_hash_ = 0;
};

// Bytes per element of a safetensors dtype name; 0 if unknown.
int SafeTensorsDtypeSize(std::string_view dtype);

}  // namespace rlaif::trainer
