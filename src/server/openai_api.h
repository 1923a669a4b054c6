// OpenAI-compatible request parsing and response shapes (vLLM's semantics; see
// shared/spec/serving.md sections 1.2-1.5). Plain JSON in, engine requests out; no sockets.
//
// Errors a client causes are thrown as api_error and answered with vLLM's envelope
// {"error": {"message", "type", "param", "code"}} and its status (400 BadRequestError,
// 404 NotFoundError for an unknown model name).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/generation_config.h"

namespace nibble {

struct api_error : std::runtime_error {
    int status;
    std::string type, param;
    api_error(int status_, const std::string& message, std::string param_ = "");
};

// The envelope for a status and message; param null when empty.
nlohmann::json api_error_body(int status, const std::string& message, const std::string& param = "",
                              const std::string& type = "");

// What the server knows about the model it serves.
struct served_model {
    std::string name;  // --served-model-name (what "model" must equal)
    std::string dir;   // the model folder (ModelCard.root)
    const model_runner* runner = nullptr;
    std::optional<chat_template> tmpl;  // none: chat requests are 400
    generation_config gen;
    int64_t created = 0;  // unix seconds, for /v1/models
};

// A parsed /v1/completions or /v1/chat/completions request.
struct api_request {
    bool chat = false;
    bool stream = false;
    bool include_usage = false;
    std::vector<int32_t> prompt;
    sampling_params params;  // resolved with generation_config and validated
    bool skip_special = true;
    int32_t n_logprobs = -1;  // -1: no logprobs; else top logprobs per token (completions "logprobs",
                              // chat "top_logprobs" with "logprobs": true), at most api_max_logprobs
};
inline constexpr int32_t api_max_logprobs = 20;  // vLLM's default --max-logprobs

// Parses and validates a request body; throws api_error. max_tokens defaults to 16 for completions
// and to the rest of the context for chat (vLLM's defaults).
api_request api_parse_generation(const nlohmann::json& body, const served_model& m, bool chat);
// /tokenize: {"prompt" | "messages", "add_special_tokens", "add_generation_prompt"} -> ids.
std::vector<int32_t> api_parse_tokenize(const nlohmann::json& body, const served_model& m);
// /detokenize: {"tokens"} -> ids (each in the vocabulary).
std::vector<int32_t> api_parse_detokenize(const nlohmann::json& body, const served_model& m);

// The /v1/models list.
nlohmann::json api_models(const served_model& m);
// The usage object.
nlohmann::json api_usage(int64_t n_prompt, int64_t n_generated);

}  // namespace nibble
