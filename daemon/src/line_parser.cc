#include "rlaif/daemon/line_parser.h"

#include <nlohmann/json.hpp>

namespace rlaif::daemon {

namespace {

using json = nlohmann::json;

Status Reject(const char* reason, const std::string& detail) {
  return Status::InvalidArgument(std::string(reason) + ": " + detail);
}

bool IsBlank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

// Text of a chat message's content: a string, null (""), or an array of parts
// whose "text" parts are kept.
bool ContentText(const json& content, std::string* out) {
  out->clear();
  if (content.is_null()) return true;
  if (content.is_string()) {
    *out = content.get<std::string>();
    return true;
  }
  if (!content.is_array()) return false;
  bool first = true;
  for (const auto& part : content) {
    if (!part.is_object()) return false;
    auto t = part.find("text");
    if (t == part.end()) continue;  // image/audio parts carry no text
    if (!t->is_string()) return false;
    if (!first) *out += "\n";
    *out += t->get<std::string>();
    first = false;
  }
  return true;
}

// Renders the conversation up to the last user turn (see line_parser.h).
Status RenderChatPrompt(const json& messages, std::string* prompt) {
  if (!messages.is_array()) return Reject("bad_messages", "messages is not an array");
  int last_user = -1;
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object())
      return Reject("bad_messages", "message " + std::to_string(i) + " is not an object");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return Reject("bad_messages", "message " + std::to_string(i) + " has no string \"role\"");
    }
    if (*role == "user") last_user = static_cast<int>(i);
  }
  if (last_user < 0) return Reject("no_user_turn", "the conversation has no user turn");
  std::string text;
  if (last_user == 0) {
    auto c = messages[0].find("content");
    if (c == messages[0].end() || !ContentText(*c, &text)) {
      return Reject("bad_messages", "message 0 has no text content");
    }
    *prompt = std::move(text);
    return Status::Ok();
  }
  prompt->clear();
  for (int i = 0; i <= last_user; ++i) {
    const json& m = messages[i];
    auto c = m.find("content");
    if (c != m.end() && !ContentText(*c, &text)) {
      return Reject("bad_messages", "message " + std::to_string(i) + " has bad content");
    }
    if (c == m.end()) text.clear();
    if (i > 0) *prompt += "\n\n";
    *prompt += m["role"].get<std::string>();
    *prompt += ": ";
    *prompt += text;
  }
  return Status::Ok();
}

Status OptionalString(const json* v, const char* reason, const char* what, std::string* out) {
  out->clear();
  if (v == nullptr || v->is_null()) return Status::Ok();
  if (!v->is_string()) return Reject(reason, std::string(what) + " is not a string");
  *out = v->get<std::string>();
  return Status::Ok();
}

void ReadMetadata(const json* v, ParsedLine* out) {
  out->metadata.clear();
  if (v == nullptr || !v->is_object()) return;
  for (auto it = v->begin(); it != v->end(); ++it) {  // nlohmann objects iterate sorted
    if (it->is_string()) {
      out->metadata.emplace_back(it.key(), it->get<std::string>());
    } else if (it->is_primitive() && !it->is_null()) {
      out->metadata.emplace_back(it.key(), it->dump());
    }
  }
}

void ReadTimestamp(const json* v, ParsedLine* out) {
  out->timestamp.clear();
  if (v == nullptr) return;
  if (v->is_string()) {
    out->timestamp = v->get<std::string>();
  } else if (v->is_number()) {
    out->timestamp = v->dump();
  }
}

const json* Child(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

const json* AtPointer(const json& root, const std::optional<json::json_pointer>& ptr) {
  if (!ptr) return nullptr;
  // contains() never throws for a well-formed pointer, even through arrays.
  try {
    if (!root.contains(*ptr)) return nullptr;
    return &root.at(*ptr);
  } catch (const json::exception&) {
    return nullptr;
  }
}

Status ParseSimple(const json& j, ParsedLine* out) {
  const json* p = Child(j, "prompt");
  if (p == nullptr) return Reject("missing_prompt", "no \"prompt\" field");
  if (!p->is_string()) return Reject("bad_prompt_type", "\"prompt\" is not a string");
  out->prompt = p->get<std::string>();
  if (Status st =
          OptionalString(Child(j, "response"), "bad_response_type", "\"response\"", &out->response);
      !st.ok()) {
    return st;
  }
  if (Status st = OptionalString(Child(j, "model"), "bad_model_type", "\"model\"", &out->model);
      !st.ok()) {
    return st;
  }
  ReadTimestamp(Child(j, "timestamp"), out);
  ReadMetadata(Child(j, "metadata"), out);
  return Status::Ok();
}

Status ParseOpenAiChat(const json& j, ParsedLine* out) {
  const json* req = Child(j, "request");
  if (req == nullptr) return Reject("missing_prompt", "no \"request\" object");
  if (!req->is_object()) return Reject("bad_prompt_type", "\"request\" is not an object");
  const json* messages = Child(*req, "messages");
  if (messages == nullptr) return Reject("missing_prompt", "no \"request.messages\"");
  if (Status st = RenderChatPrompt(*messages, &out->prompt); !st.ok()) return st;
  if (Status st =
          OptionalString(Child(*req, "model"), "bad_model_type", "\"request.model\"", &out->model);
      !st.ok()) {
    return st;
  }
  out->response.clear();
  out->timestamp.clear();
  if (const json* resp = Child(j, "response"); resp != nullptr && !resp->is_null()) {
    if (!resp->is_object()) return Reject("bad_response_type", "\"response\" is not an object");
    if (out->model.empty()) {
      if (Status st = OptionalString(Child(*resp, "model"), "bad_model_type", "\"response.model\"",
                                     &out->model);
          !st.ok()) {
        return st;
      }
    }
    ReadTimestamp(Child(*resp, "created"), out);
    if (const json* choices = Child(*resp, "choices"); choices != nullptr) {
      if (!choices->is_array()) return Reject("bad_response_type", "\"choices\" is not an array");
      if (!choices->empty()) {
        const json* msg = Child((*choices)[0], "message");
        const json* content = msg ? Child(*msg, "content") : nullptr;
        if (content != nullptr && !ContentText(*content, &out->response)) {
          return Reject("bad_response_type", "choices[0].message.content is not text");
        }
      }
    }
  }
  if (const json* ts = Child(j, "timestamp"); ts != nullptr) ReadTimestamp(ts, out);
  ReadMetadata(Child(j, "metadata"), out);
  return Status::Ok();
}

Status ParseCustom(const json& j, const FieldPointers& f, ParsedLine* out) {
  auto ptr = [](const std::string& s) -> std::optional<json::json_pointer> {
    if (s.empty()) return std::nullopt;
    return json::json_pointer(s);  // validated by LineParser::Create
  };
  const json* p = AtPointer(j, ptr(f.prompt));
  if (p == nullptr) return Reject("missing_prompt", "nothing at " + f.prompt);
  if (p->is_array()) {
    if (Status st = RenderChatPrompt(*p, &out->prompt); !st.ok()) return st;
  } else if (p->is_string()) {
    out->prompt = p->get<std::string>();
  } else {
    return Reject("bad_prompt_type", f.prompt + " is neither a string nor a message array");
  }
  if (Status st = OptionalString(AtPointer(j, ptr(f.response)), "bad_response_type",
                                 f.response.c_str(), &out->response);
      !st.ok()) {
    return st;
  }
  if (Status st = OptionalString(AtPointer(j, ptr(f.model)), "bad_model_type", f.model.c_str(),
                                 &out->model);
      !st.ok()) {
    return st;
  }
  ReadTimestamp(AtPointer(j, ptr(f.timestamp)), out);
  ReadMetadata(AtPointer(j, ptr(f.metadata)), out);
  return Status::Ok();
}

}  // namespace

std::string PrecheckLine(std::string_view line) {
  const auto* s = reinterpret_cast<const unsigned char*>(line.data());
  const size_t n = line.size();
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < n;) {
    unsigned char c = s[i];
    if (c < 0x80) {
      if (c == 0) return "nul_byte";
      if (in_string) {
        if (c == '\\') {
          i += 2;  // skip the escaped character (an escape is ASCII when valid)
          continue;
        }
        if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        if (++depth > kMaxJsonDepth) return "too_deep";
      } else if (c == '}' || c == ']') {
        --depth;
      }
      ++i;
      continue;
    }
    // Multi-byte UTF-8: reject overlongs, surrogates and code points > U+10FFFF.
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07;
    } else {
      return "invalid_utf8";
    }
    if (i + len > n) return "invalid_utf8";
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return "invalid_utf8";
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return "invalid_utf8";
    }
    i += len;
  }
  return "";
}

std::string RejectReason(const Status& status) {
  const std::string& m = status.message();
  return m.substr(0, m.find(':'));
}

Result<LineParser> LineParser::Create(const SourceConfig& source) {
  if (source.format != "simple" && source.format != "openai-chat" && source.format != "custom") {
    return Status::InvalidArgument("unknown log format \"" + source.format + "\"");
  }
  if (source.format == "custom") {
    if (source.fields.prompt.empty()) {
      return Status::InvalidArgument("format custom needs fields.prompt");
    }
    for (const std::string* p :
         {&source.fields.prompt, &source.fields.response, &source.fields.model,
          &source.fields.timestamp, &source.fields.metadata}) {
      if (p->empty()) continue;
      try {
        json::json_pointer jp(*p);
      } catch (const json::exception& e) {
        return Status::InvalidArgument("bad JSON pointer \"" + *p + "\": " + e.what());
      }
    }
  }
  LineParser parser;
  parser.format_ = source.format;
  parser.fields_ = source.fields;
  return parser;
}

Status LineParser::Parse(std::string_view line, ParsedLine* out) const {
  if (std::string pre = PrecheckLine(line); !pre.empty()) {
    return Reject(pre.c_str(), pre == "too_deep"
                                   ? "JSON nesting deeper than " + std::to_string(kMaxJsonDepth)
                                   : "the line is not valid UTF-8 text");
  }
  json j;
  try {
    j = json::parse(line.begin(), line.end());
  } catch (const json::exception& e) {
    return Reject("bad_json", e.what());
  }
  if (!j.is_object()) return Reject("not_object", "line is not a JSON object");
  Status st;
  if (format_ == "openai-chat") {
    st = ParseOpenAiChat(j, out);
  } else if (format_ == "custom") {
    st = ParseCustom(j, fields_, out);
  } else {
    st = ParseSimple(j, out);
  }
  if (!st.ok()) return st;
  if (IsBlank(out->prompt)) return Reject("empty_prompt", "the prompt is empty");
  if (out->prompt.find('\0') != std::string::npos ||
      out->response.find('\0') != std::string::npos) {
    return Reject("nul_byte", "the prompt or response contains U+0000");
  }
  return Status::Ok();
}

}  // namespace rlaif::daemon
