// Stable content hashing for ids that must not change across versions,
// platforms or restarts (prompt ids, pair ids, holdout split).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace rlaif {

// 64-bit FNV-1a. Stable forever: stored keys depend on it.
uint64_t Hash64(std::string_view data, uint64_t seed = 0);

// Hash64 of several fields, each length-prefixed so ("ab","c") != ("a","bc").
uint64_t HashFields(std::initializer_list<std::string_view> fields);

// 16 lowercase hex digits.
std::string HexId(uint64_t h);

// A value in [0,1) derived from the hash; used for deterministic sampling and splits.
double HashToUnit(uint64_t h);

}  // namespace rlaif
