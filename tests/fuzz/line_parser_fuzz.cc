// Log-line parsers (daemon/src/line_parser.cc). The first byte picks the
// format (simple, openai-chat, custom with fixed pointers); the rest is the
// line. Checks: no crash, and an accepted line has a non-blank prompt that is
// valid UTF-8 without NUL bytes, as the rest of the pipeline assumes; a
// rejected line has one of the documented reasons (ParseRejectReasons).
#include <algorithm>
#include <optional>
#include <string>

#include "fuzz_target.h"
#include "rlaif/daemon/line_parser.h"

namespace {

const rlaif::daemon::LineParser& Parser(int which) {
  static const auto parsers = [] {
    std::vector<rlaif::daemon::LineParser> out;
    for (const char* format : {"simple", "openai-chat", "custom"}) {
      rlaif::SourceConfig source;
      source.path = "/dev/null";
      source.format = format;
      if (source.format == "custom") {
        source.fields.prompt = "/req/input";
        source.fields.response = "/out/0/text";
        source.fields.model = "/req/model";
        source.fields.timestamp = "/ts";
        source.fields.metadata = "/meta";
      }
      auto p = rlaif::daemon::LineParser::Create(source);
      if (!p.ok()) std::abort();
      out.push_back(std::move(*p));
    }
    return out;
  }();
  return parsers[which % parsers.size()];
}

}  // namespace

RLAIF_FUZZ_TARGET(line_parser) {
  // The oracle itself, once: it must tell these apart.
  static const bool oracle_ok = [] {
    using rlaif::fuzz::ValidUtf8;
    return ValidUtf8("caf\xc3\xa9 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf") && ValidUtf8("") &&
           !ValidUtf8("\xc0\xaf") && !ValidUtf8("\xed\xa0\x80") && !ValidUtf8("\xf4\x90\x80\x80") &&
           !ValidUtf8("ok \xe2\x82") && !ValidUtf8("\x80") && !ValidUtf8("\xff");
  }();
  FUZZ_CHECK(oracle_ok);
  if (size == 0) return 0;
  const auto& parser = Parser(data[0]);
  std::string_view line(reinterpret_cast<const char*>(data) + 1, size - 1);
  (void)rlaif::daemon::PrecheckLine(line);
  rlaif::daemon::ParsedLine out;
  rlaif::Status st = parser.Parse(line, &out);
  if (st.ok()) {
    FUZZ_CHECK(out.prompt.find_first_not_of(" \t\r\n") != std::string::npos);
    FUZZ_CHECK(out.prompt.find('\0') == std::string::npos);
    FUZZ_CHECK(out.response.find('\0') == std::string::npos);
    FUZZ_CHECK(rlaif::fuzz::ValidUtf8(out.prompt));
    FUZZ_CHECK(rlaif::fuzz::ValidUtf8(out.response));
  } else {
    FUZZ_CHECK(st.code() == rlaif::StatusCode::kInvalidArgument);
    // One of the documented reasons, each a metric series from the start.
    const std::string reason = rlaif::daemon::RejectReason(st);
    const auto& known = rlaif::daemon::ParseRejectReasons();
    FUZZ_CHECK(std::find(known.begin(), known.end(), reason) != known.end());
  }
  return 0;
}
