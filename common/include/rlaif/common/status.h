// Status and Result<T>: errors as values, as in RocksDB and Abseil.
//
//   rlaif::Result<int> ParsePort(std::string_view s);
//   auto port = ParsePort("8080");
//   if (!port.ok()) { spdlog::error("{}", port.status().ToString()); return 2; }
//   Use(*port);
//
// Codes and their meaning:
//   kOk               success.
//   kInvalidArgument  the caller's input is malformed; retrying the same input fails again.
//   kNotFound         the named thing does not exist.
//   kAlreadyExists    the thing exists and the call would overwrite it.
//   kUnavailable      a transient failure (network, upstream 5xx, 429); a retry may succeed.
//   kIoError          the filesystem or the store failed (disk full, permission).
//   kCorruption       stored data cannot be decoded.
//   kCancelled        the operation was stopped (shutdown).
//   kInternal         a bug or an unexpected exception.
//   kFailedPrecondition  the system is not in a state where the call can succeed.
//   kResourceExhausted   a limit (budget, size, queue) was reached.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace rlaif {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kUnavailable,
  kIoError,
  kCorruption,
  kCancelled,
  kInternal,
  kFailedPrecondition,
  kResourceExhausted,
};

// Short lowercase name of a code, e.g. "invalid_argument".
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status ResourceExhausted(std::string m) {
    return {StatusCode::kResourceExhausted, std::move(m)};
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid_argument: <message>" or "ok".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Holds either a T or a non-OK Status. Accessing the value of an error Result
// is a programmer error (asserts in debug builds).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok() && "Result constructed from OK status without value");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace rlaif

// Returns early from the enclosing function if `expr` (a Status) is not OK.
#define RLAIF_RETURN_IF_ERROR(expr)            \
  do {                                         \
    ::rlaif::Status _rlaif_st = (expr);        \
    if (!_rlaif_st.ok()) return _rlaif_st;     \
  } while (0)
