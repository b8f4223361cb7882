#include "hf_backbone.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "safetensors.h"

namespace rlaif::trainer {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

Result<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError(path.string() + ": cannot read");
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) return Status::IoError(path.string() + ": read failed");
  return s.str();
}

uint64_t Fnv1a(uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace

bool IsIgnoredGpt2Tensor(const std::string& name) {
  auto ends_with = [&name](std::string_view suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return name == "lm_head.weight" || ends_with(".attn.bias") || ends_with(".attn.masked_bias");
}

Result<HfBackboneInfo> ReadHfBackbone(const std::string& dir_text) {
  const fs::path dir(dir_text);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return Status::NotFound("backbone " + dir_text + ": no such directory");
  const fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path, ec)) {
    return Status::NotFound("backbone " + dir_text + ": no config.json");
  }
  auto text = ReadText(config_path);
  if (!text.ok()) return text.status();
  const json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  auto corrupt = [&](const std::string& m) {
    return Status::Corruption("backbone " + dir_text + ": config.json: " + m);
  };
  auto unsupported = [&](const std::string& m) {
    return Status::InvalidArgument("backbone " + dir_text + ": " + m);
  };
  if (!j.is_object()) return corrupt("not a JSON object");

  HfBackboneInfo info;
  info.dir = dir_text;
  info.model_type = j.value("model_type", std::string());
  if (info.model_type != "gpt2") {
    return unsupported("model_type \"" + info.model_type +
                       "\" is not read by this build (supported: gpt2)");
  }
  auto get_int = [&j](std::initializer_list<const char*> keys, int* out) {
    for (const char* key : keys) {
      auto it = j.find(key);
      if (it != j.end() && it->is_number_integer() && it->get<int64_t>() > 0 &&
          it->get<int64_t>() <= (1 << 24)) {
        *out = it->get<int>();
        return true;
      }
    }
    return false;
  };
  if (!get_int({"n_embd"}, &info.d_model))
    return corrupt("n_embd missing or not a positive integer");
  if (!get_int({"n_layer"}, &info.layers))
    return corrupt("n_layer missing or not a positive integer");
  if (!get_int({"n_head"}, &info.heads)) return corrupt("n_head missing or not a positive integer");
  if (!get_int({"n_positions", "n_ctx"}, &info.max_positions)) {
    return corrupt("n_positions missing or not a positive integer");
  }
  if (!get_int({"vocab_size"}, &info.vocab_size)) {
    return corrupt("vocab_size missing or not a positive integer");
  }
  if (info.d_model % info.heads != 0) {
    return corrupt("n_head " + std::to_string(info.heads) + " does not divide n_embd " +
                   std::to_string(info.d_model));
  }
  const auto inner = j.find("n_inner");
  if (inner != j.end() && !inner->is_null()) {
    if (!inner->is_number_integer() || inner->get<int64_t>() <= 0) {
      return corrupt("n_inner is not a positive integer");
    }
    const int64_t n = inner->get<int64_t>();
    if (n % info.d_model != 0) {
      return unsupported("n_inner " + std::to_string(n) + " is not a multiple of n_embd " +
                         std::to_string(info.d_model));
    }
    info.mlp_ratio = static_cast<int>(n / info.d_model);
  }
  const std::string act = j.value("activation_function", std::string("gelu_new"));
  if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast") {
    info.activation = "gelu_tanh";  // three spellings of the same tanh approximation
  } else if (act == "gelu") {
    info.activation = "gelu";
  } else {
    return unsupported("activation_function \"" + act +
                       "\" is not read (supported: gelu_new, "
                       "gelu_pytorch_tanh, gelu_fast, gelu)");
  }
  const auto eps = j.find("layer_norm_epsilon");
  if (eps != j.end()) {
    if (!eps->is_number() || !(eps->get<double>() > 0) || eps->get<double>() > 0.1) {
      return corrupt("layer_norm_epsilon is not a small positive number");
    }
    info.layer_norm_eps = eps->get<double>();
  }
  if (!j.value("scale_attn_weights", true)) {
    return unsupported("scale_attn_weights false (unscaled attention) is not read");
  }
  if (j.value("scale_attn_by_inverse_layer_idx", false)) {
    return unsupported("scale_attn_by_inverse_layer_idx is not read");
  }
  if (j.value("add_cross_attention", false)) return unsupported("cross-attention is not read");
  const auto eos = j.find("eos_token_id");
  if (eos != j.end() && eos->is_number_integer() && eos->get<int64_t>() >= 0 &&
      eos->get<int64_t>() < info.vocab_size) {
    info.eos_token_id = eos->get<int>();
  }

  // Weights: one file, or an index of shards.
  if (fs::exists(dir / "model.safetensors", ec)) {
    info.weight_files.push_back((dir / "model.safetensors").string());
  } else if (fs::exists(dir / "model.safetensors.index.json", ec)) {
    auto index_text = ReadText(dir / "model.safetensors.index.json");
    if (!index_text.ok()) return index_text.status();
    const json index = json::parse(*index_text, nullptr, false);
    const auto map = index.is_object() ? index.find("weight_map") : index.end();
    if (map == index.end() || !map->is_object()) {
      return Status::Corruption("backbone " + dir_text +
                                ": model.safetensors.index.json has no weight_map");
    }
    std::set<std::string> shards;
    for (const auto& file : *map) {
      if (!file.is_string() || file.get<std::string>().empty() ||
          file.get<std::string>().find('/') != std::string::npos) {
        return Status::Corruption("backbone " + dir_text +
                                  ": model.safetensors.index.json names a bad shard");
      }
      shards.insert(file.get<std::string>());
    }
    for (const auto& s : shards) info.weight_files.push_back((dir / s).string());
  } else if (fs::exists(dir / "pytorch_model.bin", ec)) {
    return unsupported(
        "only pytorch_model.bin (pickled weights) is there; this build reads "
        "safetensors: save the model with safe_serialization=True");
  } else {
    return Status::NotFound("backbone " + dir_text + ": no model.safetensors");
  }

  uint64_t h = Fnv1a(0xcbf29ce484222325ULL, *text);
  for (const auto& file : info.weight_files) {
    auto st = SafeTensorsFile::Open(file);
    if (!st.ok()) return st.status();
    char buf[40];
    std::snprintf(buf, sizeof buf, "%016llx:%llu",
                  static_cast<unsigned long long>(st->header_hash()),
                  static_cast<unsigned long long>(fs::file_size(file, ec)));
    h = Fnv1a(h, buf);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  info.identity = hex;
  if (fs::exists(dir / "tokenizer.json", ec))
    info.tokenizer_file = (dir / "tokenizer.json").string();
  return info;
}

}  // namespace rlaif::trainer
