#include "server/openai_api.h"

#include <cmath>

#include "core/error.h"
#include "tokenizer/jinja_eval.h"

namespace nibble {

using json = nlohmann::json;

namespace {

const char* status_type(int status) {
    switch (status) {
        case 400:
            return "BadRequestError";
        case 401:
            return "AuthenticationError";
        case 404:
            return "NotFoundError";
        case 503:
            return "ServiceUnavailableError";
        default:
            return "InternalServerError";
    }
}

[[noreturn]] void bad(const std::string& param, const std::string& message) {
    throw api_error(400, message, param);
}

// Field getters that name the field in their 400.
const json* field(const json& body, const char* name) {
    auto it = body.find(name);
    return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::optional<double> get_number(const json& body, const char* name) {
    const json* v = field(body, name);
    if (!v) return std::nullopt;
    if (!v->is_number()) bad(name, fmt::format("'{}' must be a number", name));
    return v->get<double>();
}

std::optional<int64_t> get_int(const json& body, const char* name) {
    const json* v = field(body, name);
    if (!v) return std::nullopt;
    if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()) {
        // 1e30 is integral but no int64: converting it would be undefined
        if (std::fabs(v->get<double>()) >= 9.2e18) bad(name, fmt::format("'{}' is out of range", name));
        return int64_t(v->get<double>());
    }
    if (!v->is_number_integer()) bad(name, fmt::format("'{}' must be an integer", name));
    return v->get<int64_t>();
}

std::optional<bool> get_bool(const json& body, const char* name) {
    const json* v = field(body, name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) bad(name, fmt::format("'{}' must be a boolean", name));
    return v->get<bool>();
}

std::vector<int32_t> get_ids(const json& v, const char* name, const served_model& m) {
    if (!v.is_array()) bad(name, fmt::format("'{}' must be a list of token ids", name));
    std::vector<int32_t> ids;
    const int64_t n_vocab = m.runner->tok().n_vocab();
    for (const json& x : v) {
        if (!x.is_number_integer()) bad(name, fmt::format("'{}' must be a list of token ids", name));
        int64_t id = x.get<int64_t>();
        if (id < 0 || id >= n_vocab)
            bad(name, fmt::format("token id {} is out of vocabulary (size {})", id, n_vocab));
        ids.push_back(int32_t(id));
    }
    return ids;
}

void check_model(const json& body, const served_model& m) {
    const json* v = field(body, "model");
    if (!v) return;  // vLLM serves the first model when none is named
    if (!v->is_string()) bad("model", "'model' must be a string");
    if (v->get<std::string>() != m.name)
        throw api_error(404, fmt::format("The model `{}` does not exist.", v->get<std::string>()), "model");
}

void not_supported(const json& body, const char* name) {
    const json* v = field(body, name);
    if (!v) return;
    bad(name, fmt::format("'{}' is not supported yet", name));
}

// Messages with list-of-parts content flattened to strings (text parts joined by "\n").
json::array_t normalize_messages(const json& messages) {
    if (!messages.is_array() || messages.empty()) bad("messages", "'messages' must be a non-empty list");
    json::array_t out;
    for (const json& msg : messages) {
        if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string())
            bad("messages", "each message must be an object with a string 'role'");
        json m = msg;
        if (msg.contains("content") && msg["content"].is_array()) {
            std::string text;
            bool first = true;
            for (const json& part : msg["content"]) {
                if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
                    !part["text"].is_string())
                    bad("messages", "only text content parts are supported");
                if (!first) text += "\n";
                text += part["text"].get<std::string>();
                first = false;
            }
            m["content"] = text;
        } else if (msg.contains("content") && !msg["content"].is_string() && !msg["content"].is_null()) {
            bad("messages", "message content must be a string or a list of text parts");
        }
        out.push_back(m);
    }
    return out;
}

std::vector<int32_t> chat_prompt(const json& body, const served_model& m) {
    if (!m.tmpl) bad("messages", "this model has no chat template");
    json::array_t msgs = normalize_messages(body["messages"]);
    render_options ro;
    ro.add_generation_prompt = get_bool(body, "add_generation_prompt").value_or(true);
    if (const json* kw = field(body, "chat_template_kwargs")) {
        if (!kw->is_object()) bad("chat_template_kwargs", "'chat_template_kwargs' must be an object");
        ro.kwargs = nlohmann::ordered_json::parse(kw->dump());
    }
    std::string text;
    try {
        text = chat_template_render(*m.tmpl, nlohmann::ordered_json::parse(json(msgs).dump()), ro);
    } catch (const jinja::template_error& e) {
        bad("messages", e.what());
    } catch (const error& e) {
        bad("messages", e.what());
    }
    // The template adds BOS itself (vLLM: add_special_tokens false for chat).
    return m.runner->tok().encode(text, get_bool(body, "add_special_tokens").value_or(false));
}

std::vector<int32_t> completion_prompt(const json& body, const served_model& m) {
    const json* p = field(body, "prompt");
    if (!p) bad("prompt", "'prompt' is required");
    const json* v = p;
    if (p->is_array() && !p->empty() && (p->front().is_string() || p->front().is_array())) {
        if (p->size() != 1) bad("prompt", "only one prompt per request is supported yet");
        v = &p->front();
    }
    if (v->is_string())
        return m.runner->tok().encode(v->get<std::string>(),
                                      get_bool(body, "add_special_tokens").value_or(true));
    if (v->is_array()) return get_ids(*v, "prompt", m);
    bad("prompt", "'prompt' must be a string or a list of token ids");
}

}  // namespace

api_error::api_error(int status_, const std::string& message, std::string param_)
    : std::runtime_error(message), status(status_), type(status_type(status_)), param(std::move(param_)) {}

json api_error_body(int status, const std::string& message, const std::string& param,
                    const std::string& type) {
    return {{"error",
             {{"message", message},
              {"type", type.empty() ? status_type(status) : type},
              {"param", param.empty() ? json(nullptr) : json(param)},
              {"code", status}}}};
}

api_request api_parse_generation(const json& body, const served_model& m, bool chat) {
    if (!body.is_object()) bad("", "the request body must be a JSON object");
    check_model(body, m);
    api_request r;
    r.chat = chat;
    if (const json* n = field(body, "n"); n && !(n->is_number_integer() && n->get<int64_t>() == 1))
        bad("n", "only n = 1 is supported yet");
    if (chat) {
        const bool lp = get_bool(body, "logprobs").value_or(false);
        const int64_t top = get_int(body, "top_logprobs").value_or(0);
        if (top < 0 || top > api_max_logprobs)
            bad("top_logprobs",
                fmt::format("top_logprobs must be in [0, {}], got {}", api_max_logprobs, top));
        if (top > 0 && !lp) bad("top_logprobs", "when using `top_logprobs`, `logprobs` must be set to true");
        if (lp) r.n_logprobs = int32_t(top);
    } else if (auto lp = get_int(body, "logprobs")) {
        if (*lp < 0 || *lp > api_max_logprobs)
            bad("logprobs", fmt::format("logprobs must be in [0, {}], got {}", api_max_logprobs, *lp));
        r.n_logprobs = int32_t(*lp);
    }
    if (chat) not_supported(body, "tools");
    if (const json* rf = field(body, "response_format");
        rf && !(rf->is_object() && rf->value("type", "") == "text"))
        bad("response_format", "'response_format' is not supported yet");
    if (const json* u = field(body, "user"); u && !u->is_string()) bad("user", "'user' must be a string");
    r.stream = get_bool(body, "stream").value_or(false);
    if (const json* so = field(body, "stream_options")) {
        if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
        r.include_usage = get_bool(*so, "include_usage").value_or(false);
    }
    if (chat && !field(body, "messages")) bad("messages", "'messages' is required");
    r.prompt = chat ? chat_prompt(body, m) : completion_prompt(body, m);
    if (r.prompt.empty()) bad("prompt", "the prompt is empty");
    r.skip_special = get_bool(body, "skip_special_tokens").value_or(true);

    sampling_params req;
    req.temperature = get_number(body, "temperature");
    req.top_p = get_number(body, "top_p");
    if (auto k = get_int(body, "top_k")) req.top_k = int32_t(std::clamp<int64_t>(*k, -2, INT32_MAX));
    req.min_p = get_number(body, "min_p");
    req.repetition_penalty = get_number(body, "repetition_penalty");
    req.presence_penalty = get_number(body, "presence_penalty").value_or(0.0);
    req.frequency_penalty = get_number(body, "frequency_penalty").value_or(0.0);
    req.seed = get_int(body, "seed");
    req.max_tokens = get_int(body, "max_tokens");
    if (!chat && !req.max_tokens) req.max_tokens = 16;  // vLLM's CompletionRequest default (OpenAI's)
    if (chat) {
        if (auto mct = get_int(body, "max_completion_tokens")) req.max_tokens = mct;
    }
    req.min_tokens = get_int(body, "min_tokens").value_or(0);
    req.ignore_eos = get_bool(body, "ignore_eos").value_or(false);
    if (const json* st = field(body, "stop")) {
        if (st->is_string()) {
            req.stop.push_back(st->get<std::string>());
        } else if (st->is_array()) {
            for (const json& s : *st) {
                if (!s.is_string()) bad("stop", "'stop' must be a string or a list of strings");
                req.stop.push_back(s.get<std::string>());
            }
        } else {
            bad("stop", "'stop' must be a string or a list of strings");
        }
    }
    if (const json* ids = field(body, "stop_token_ids"))
        req.stop_token_ids = get_ids(*ids, "stop_token_ids", m);
    if (const json* lb = field(body, "logit_bias")) {
        if (!lb->is_object()) bad("logit_bias", "'logit_bias' must be an object of token id -> bias");
        for (auto& [k, v] : lb->items()) {
            if (!v.is_number()) bad("logit_bias", "logit_bias values must be numbers");
            int32_t id = 0;
            try {
                id = std::stoi(k);
            } catch (...) {
                bad("logit_bias", fmt::format("logit_bias key '{}' is not a token id", k));
            }
            req.logit_bias.emplace_back(id, v.get<float>());
        }
    }
    try {
        sampling_params_validate(req, m.runner->tok().n_vocab());
        r.params = sampling_params_resolve(req, m.gen, m.runner->tok().eos_id());
        sampling_params_validate(r.params, m.runner->tok().n_vocab());
    } catch (const invalid_param& e) {
        bad(e.param, e.what());
    }

    const int64_t max_len = m.runner->max_ctx(), n_prompt = int64_t(r.prompt.size());
    if (n_prompt >= max_len)
        bad(chat ? "messages" : "prompt",
            fmt::format(
                "This model's maximum context length is {} tokens. However, your request has {} input "
                "tokens. Please reduce the length of the input messages.",
                max_len, n_prompt));
    if (req.max_tokens && *req.max_tokens > max_len - n_prompt)  // not n_prompt + max: INT64_MAX overflows
        bad(chat && field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
            fmt::format(
                "This model's maximum context length is {} tokens. However, you requested {} output "
                "tokens and your prompt contains at least {} input tokens, for a total of at least {} "
                "tokens. Please reduce the length of the input prompt or the number of requested "
                "output tokens.",
                max_len, *req.max_tokens, n_prompt,
                *req.max_tokens > INT64_MAX - n_prompt ? INT64_MAX : n_prompt + *req.max_tokens));
    return r;
}

std::vector<int32_t> api_parse_tokenize(const json& body, const served_model& m) {
    if (!body.is_object()) bad("", "the request body must be a JSON object");
    check_model(body, m);
    if (field(body, "messages")) return chat_prompt(body, m);
    const json* p = field(body, "prompt");
    if (!p || !p->is_string()) bad("prompt", "'prompt' must be a string");
    return m.runner->tok().encode(p->get<std::string>(), get_bool(body, "add_special_tokens").value_or(true));
}

std::vector<int32_t> api_parse_detokenize(const json& body, const served_model& m) {
    if (!body.is_object()) bad("", "the request body must be a JSON object");
    check_model(body, m);
    const json* t = field(body, "tokens");
    if (!t) bad("tokens", "'tokens' is required");
    return get_ids(*t, "tokens", m);
}

json api_models(const served_model& m) {
    json card = {{"id", m.name},
                 {"object", "model"},
                 {"created", m.created},
                 {"owned_by", "nibble"},
                 {"root", m.dir},
                 {"parent", nullptr},
                 {"max_model_len", m.runner->max_ctx()},
                 {"permission", json::array()}};
    return {{"object", "list"}, {"data", json::array({card})}};
}

json api_usage(int64_t n_prompt, int64_t n_generated) {
    return {{"prompt_tokens", n_prompt},
            {"completion_tokens", n_generated},
            {"total_tokens", n_prompt + n_generated}};
}

}  // namespace nibble
