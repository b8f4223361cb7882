#include "hf_backbone.h"

#include <algorithm>
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

// The Llama part of ReadHfBackbone (the accessors are its lambdas).
template <typename GetInt, typename GetString, typename GetBool, typename GetDouble,
          typename Corrupt, typename Unsupported>
Status ReadLlama(const json& j, GetInt get_int, GetString get_string, GetBool get_bool,
                 GetDouble get_double, Corrupt corrupt, Unsupported unsupported,
                 HfBackboneInfo* info) {
  const std::pair<const char*, int*> required[] = {
      {"hidden_size", &info->d_model},
      {"num_hidden_layers", &info->layers},
      {"num_attention_heads", &info->heads},
      {"intermediate_size", &info->mlp_hidden},
      {"max_position_embeddings", &info->max_positions},
      {"vocab_size", &info->vocab_size}};
  for (const auto& [key, out] : required) {
    if (!get_int({key}, out))
      return corrupt(std::string(key) + " missing or not a positive integer");
  }
  if (!get_int({"num_key_value_heads"}, &info->kv_heads)) info->kv_heads = info->heads;
  if (!get_int({"head_dim"}, &info->head_dim)) {
    if (info->model_type == "qwen3") {
      info->head_dim = 128;  // Qwen3Config's default, not hidden_size / heads
    } else if (info->model_type == "gemma" || info->model_type == "gemma2") {
      info->head_dim = 256;  // GemmaConfig's and Gemma2Config's default
    } else if (info->d_model % info->heads != 0) {
      return corrupt("num_attention_heads does not divide hidden_size and no head_dim is given");
    } else {
      info->head_dim = info->d_model / info->heads;
    }
  }
  if (info->heads % info->kv_heads != 0) {
    return corrupt("num_key_value_heads " + std::to_string(info->kv_heads) +
                   " does not divide num_attention_heads " + std::to_string(info->heads));
  }
  if (info->head_dim % 2 != 0) return corrupt("head_dim must be even for rotary positions");
  const bool gemma = info->model_type == "gemma" || info->model_type == "gemma2";
  std::string act;
  if (gemma) {
    // GeGLU: hidden_activation, the tanh GELU when unset, as transformers 4
    // reads Gemma's config (since 4.38; Google's reference uses the tanh
    // approximation too). transformers 5's GemmaMLP reads hidden_act instead,
    // which Gemma 1's published configs set to "gelu" (exact): the two
    // versions disagree there; this follows transformers 4 and Google.
    if (!get_string("hidden_activation", "gelu_pytorch_tanh", &act)) {
      return corrupt("hidden_activation is not a string");
    }
    if (act == "gelu_pytorch_tanh" || act == "gelu_new" || act == "gelu_fast") {
      info->activation = "gelu_tanh";
    } else if (act == "gelu") {
      info->activation = "gelu";
    } else {
      return unsupported("hidden_activation \"" + act +
                         "\" is not read (supported: gelu_pytorch_tanh, gelu)");
    }
    info->gemma = true;
  } else {
    if (!get_string("hidden_act", "silu", &act)) return corrupt("hidden_act is not a string");
    if (act != "silu") {
      return unsupported("hidden_act \"" + act + "\" is not read (supported: silu)");
    }
    info->activation = "silu";
  }
  if (info->model_type == "gemma2") {
    // Norms after attention and around the MLP, attention scaled by
    // query_pre_attn_scalar^-0.5 and soft-capped (Gemma2Config's defaults).
    info->sandwich_norm = true;
    if (!get_double("query_pre_attn_scalar", 256, 1e-3, 1e6, &info->query_scale)) {
      return corrupt("query_pre_attn_scalar is not a positive number");
    }
    if (!get_double("attn_logit_softcapping", 50, 1e-3, 1e6, &info->attn_softcap)) {
      return corrupt("attn_logit_softcapping is not a positive number");
    }
    if (j.contains("attn_logit_softcapping") && j["attn_logit_softcapping"].is_null()) {
      info->attn_softcap = 0;  // explicitly off
    }
  }
  if (!get_double("rms_norm_eps", 1e-6, 1e-12, 0.1, &info->layer_norm_eps)) {
    return corrupt("rms_norm_eps is not a small positive number");
  }
  // Sliding-window attention: Mistral's whenever sliding_window is set; Qwen2's
  // and Qwen3's where use_sliding_window turns it on or layer_types names it
  // (transformers >= 4.54). A window of W tokens is full causal attention on
  // sequences of at most W, so such a backbone reads sequences up to W
  // (max_positions), computed exactly.
  bool sliding = false;
  if (info->model_type == "mistral" || info->model_type == "gemma2") {
    // Gemma 2: every other layer. Both configs default to 4096 when the key
    // is absent; null turns it off.
    sliding = !j.contains("sliding_window") || !j["sliding_window"].is_null();
  } else if (!get_bool("use_sliding_window", false, &sliding)) {
    return corrupt("use_sliding_window is not a boolean");
  }
  if (const auto types = j.find("layer_types"); types != j.end() && !types->is_null()) {
    if (!types->is_array()) return corrupt("layer_types is not a list");
    for (const auto& t : *types) {
      if (!t.is_string()) return corrupt("layer_types holds a non-string");
      const std::string& type = t.get_ref<const std::string&>();
      if (type == "sliding_attention") {
        sliding = true;
      } else if (type != "full_attention") {
        return unsupported("layer type \"" + type +
                           "\" is not read (supported: full_attention, sliding_attention)");
      }
    }
  }
  if (sliding) {
    int window = 4096;  // MistralConfig's and Gemma2Config's default
    if (!get_int({"sliding_window"}, &window) && j.contains("sliding_window")) {
      return corrupt("sliding-window attention without a positive sliding_window");
    }
    info->max_positions = std::min(info->max_positions, window);
  }
  if (info->model_type == "mistral") {
    info->attention_bias = false, info->o_bias = false, info->mlp_bias = false;  // none
  } else if (gemma) {
    // Biases on all four attention projections or none; none in the MLP.
    if (!get_bool("attention_bias", false, &info->attention_bias)) {
      return corrupt("attention_bias is not a boolean");
    }
    info->o_bias = info->attention_bias, info->mlp_bias = false;
  } else if (info->model_type == "qwen2") {
    // Qwen2: biases on the q, k and v projections, none on o_proj or the MLP.
    info->attention_bias = true, info->o_bias = false, info->mlp_bias = false;
  } else if (info->model_type == "qwen3") {
    // Qwen3: RMSNorm of each query and key head before the rotary; biases on
    // all four attention projections or none; none in the MLP.
    info->qk_norm = true, info->mlp_bias = false;
    if (!get_bool("attention_bias", false, &info->attention_bias)) {
      return corrupt("attention_bias is not a boolean");
    }
    info->o_bias = info->attention_bias;
  } else {
    if (!get_bool("attention_bias", false, &info->attention_bias) ||
        !get_bool("mlp_bias", false, &info->mlp_bias)) {
      return corrupt("attention_bias or mlp_bias is not a boolean");
    }
    info->o_bias = info->attention_bias;  // Llama: all four projections or none
  }
  // Rotary parameters: top-level rope_theta + rope_scaling (transformers 4),
  // or one rope_parameters object (transformers 5). Both present must agree.
  const auto params = j.find("rope_parameters");
  const bool v5 = params != j.end() && !params->is_null();
  if (v5 && !params->is_object()) return corrupt("rope_parameters is not an object");
  const auto top_scaling = j.find("rope_scaling");
  const json scaling = v5                                                  ? *params
                       : top_scaling != j.end() && !top_scaling->is_null() ? *top_scaling
                                                                           : json();
  if (!scaling.is_null() && !scaling.is_object()) return corrupt("rope_scaling is not an object");
  if (!get_double("rope_theta", 10000, 1, 1e12, &info->rope_theta)) {
    return corrupt("rope_theta is not a positive number");
  }
  if (v5 && params->contains("rope_theta")) {
    const json& t = (*params)["rope_theta"];
    if (!t.is_number() || !(t.get<double>() >= 1)) {
      return corrupt("rope_parameters.rope_theta is not a positive number");
    }
    if (j.contains("rope_theta") && j["rope_theta"].is_number() &&
        j["rope_theta"].get<double>() != t.get<double>()) {
      return corrupt("rope_theta and rope_parameters.rope_theta disagree");
    }
    info->rope_theta = t.get<double>();
  }
  for (const json* where : {&j, &scaling}) {
    auto partial = where->is_object() ? where->find("partial_rotary_factor") : where->end();
    if (where->is_object() && partial != where->end() && !partial->is_null() &&
        !(partial->is_number() && partial->get<double>() == 1.0)) {
      return unsupported("partial_rotary_factor other than 1 is not read");
    }
  }
  if (scaling.is_object()) {
    const std::string type =
        scaling.value("rope_type", json()).is_string() ? scaling["rope_type"].get<std::string>()
        : scaling.value("type", json()).is_string()    ? scaling["type"].get<std::string>()
        : v5                                           ? "default"
                                                       : "";
    if (type == "llama3") {
      auto number = [&](const char* key, double* out) {
        auto it = scaling.find(key);
        if (it == scaling.end() || !it->is_number() || !(it->get<double>() > 0)) return false;
        *out = it->get<double>();
        return true;
      };
      double original = 0;
      if (!number("factor", &info->rope_factor) ||
          !number("low_freq_factor", &info->rope_low_freq_factor) ||
          !number("high_freq_factor", &info->rope_high_freq_factor) ||
          !number("original_max_position_embeddings", &original) ||
          !(info->rope_high_freq_factor > info->rope_low_freq_factor)) {
        return corrupt(
            "rope scaling (llama3) needs positive factor, low_freq_factor < "
            "high_freq_factor and original_max_position_embeddings");
      }
      info->rope_original_max_positions = static_cast<int>(original);
    } else if (type != "default") {
      return unsupported("rope_scaling type \"" + type +
                         "\" is not read (supported: default, llama3)");
    }
  }
  return Status::Ok();
}

}  // namespace

bool IsLlamaFamily(const std::string& model_type) {
  return model_type == "llama" || model_type == "mistral" || model_type == "qwen2" ||
         model_type == "qwen3" || model_type == "gemma" || model_type == "gemma2";
}

bool IsIgnoredBackboneTensor(const std::string& name) {
  auto ends_with = [&name](std::string_view suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return name == "lm_head.weight" || ends_with(".attn.bias") || ends_with(".attn.masked_bias") ||
         ends_with(".rotary_emb.inv_freq");
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
  if (!fs::is_regular_file(config_path, ec)) {
    return Status::InvalidArgument("backbone " + dir_text + ": config.json is not a regular file");
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
  // Typed reads: a field of the wrong type is a corrupt file, not an exception.
  auto get_string = [&j](const char* key, const std::string& absent, std::string* out) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      *out = absent;
      return true;
    }
    if (!it->is_string()) return false;
    *out = it->get<std::string>();
    return true;
  };
  auto get_bool = [&j](const char* key, bool absent, bool* out) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      *out = absent;
      return true;
    }
    if (!it->is_boolean()) return false;
    *out = it->get<bool>();
    return true;
  };

  HfBackboneInfo info;
  info.dir = dir_text;
  if (!get_string("model_type", "", &info.model_type)) return corrupt("model_type is not a string");
  if (info.model_type != "gpt2" && !IsLlamaFamily(info.model_type)) {
    return unsupported("model_type \"" + info.model_type +
                       "\" is not read by this build (supported: gpt2, llama, mistral, qwen2, "
                       "qwen3, gemma, gemma2)");
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
  auto get_double = [&j](const char* key, double absent, double lo, double hi, double* out) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      *out = absent;
      return true;
    }
    if (!it->is_number() || !(it->get<double>() >= lo && it->get<double>() <= hi)) return false;
    *out = it->get<double>();
    return true;
  };
  if (IsLlamaFamily(info.model_type)) {
    RLAIF_RETURN_IF_ERROR(
        ReadLlama(j, get_int, get_string, get_bool, get_double, corrupt, unsupported, &info));
  } else {
    if (!get_int({"n_embd"}, &info.d_model))
      return corrupt("n_embd missing or not a positive integer");
    if (!get_int({"n_layer"}, &info.layers))
      return corrupt("n_layer missing or not a positive integer");
    if (!get_int({"n_head"}, &info.heads))
      return corrupt("n_head missing or not a positive integer");
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
    std::string act;
    if (!get_string("activation_function", "gelu_new", &act)) {
      return corrupt("activation_function is not a string");
    }
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
    bool scaled = true, by_layer = false, cross = false;
    if (!get_bool("scale_attn_weights", true, &scaled) ||
        !get_bool("scale_attn_by_inverse_layer_idx", false, &by_layer) ||
        !get_bool("add_cross_attention", false, &cross)) {
      return corrupt(
          "scale_attn_weights, scale_attn_by_inverse_layer_idx or add_cross_attention "
          "is not a boolean");
    }
    if (!scaled) return unsupported("scale_attn_weights false (unscaled attention) is not read");
    if (by_layer) return unsupported("scale_attn_by_inverse_layer_idx is not read");
    if (cross) return unsupported("cross-attention is not read");
  }
  // An int, or a list of them (Llama 3 Instruct's end-of-turn ids): the first.
  auto eos = j.find("eos_token_id");
  if (eos != j.end() && eos->is_array() && !eos->empty()) eos = eos->begin();
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
    // A sample of the data too (all of it would be gigabytes): 4 KiB at 16
    // evenly spaced places of each tensor, so weights replaced by others of
    // the same shapes change the identity.
    for (const auto& [name, t] : st->tensors()) {
      if (name == "score.weight") {  // *ForSequenceClassification: [num_labels, hidden]
        if (t.shape.size() != 2 || t.shape[1] != info.d_model || t.shape[0] < 1 ||
            t.shape[0] > 4096) {
          return Status::Corruption("backbone " + dir_text +
                                    ": tensor 'score.weight' is not [num_labels, hidden_size]");
        }
        info.score_rows = static_cast<int>(t.shape[0]);
      }
      const std::string_view bytes = st->Bytes(t);
      if (bytes.size() <= (64u << 10)) {
        h = Fnv1a(h, bytes);
        continue;
      }
      for (size_t k = 0; k < 16; ++k) {
        h = Fnv1a(h, bytes.substr((bytes.size() - (4u << 10)) / 15 * k, 4u << 10));
      }
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  info.identity = hex;
  if (fs::exists(dir / "tokenizer.json", ec)) {
    info.tokenizer_file = (dir / "tokenizer.json").string();
  }
  return info;
}

}  // namespace rlaif::trainer
