// Chat templates: load a model's Jinja chat template and render conversations into a prompt,
// byte-identical to transformers' apply_chat_template(tokenize=False).
//
// Where the template comes from (as transformers): `chat_template.jinja` in the model folder
// if present, else `chat_template` in tokenizer_config.json — a string, or a list of
// {"name", "template"} (picked at render: options.template_name, else "tool_use" when tools are
// given and such a template exists, else "default"). Special tokens (bos/eos/pad/unk: a string
// or an {"content": ...} object) become variables when set.
//
// Render variables: messages, tools (none when not given), documents (none),
// add_generation_prompt, the special tokens, then options.kwargs (e.g. enable_thinking), which
// override everything before them. Errors: nibble::error (no template, bad JSON, syntax errors
// with line and column); a template's raise_exception(...) throws jinja::template_error
// whose what() is the template's message (an HTTP 400 for the server).
#pragma once

#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/jinja_eval.h"

namespace nibble {

struct chat_template {
    // Named templates; a single template is named "default".
    std::map<std::string, std::shared_ptr<const jinja::jinja_template>> templates;
    std::map<std::string, std::string> special_tokens;  // "bos_token" -> "<|begin_of_text|>", ...
};

struct render_options {
    bool add_generation_prompt = false;
    nlohmann::ordered_json tools;                                      // null: no tools
    nlohmann::ordered_json kwargs = nlohmann::ordered_json::object();  // extra variables
    std::optional<std::time_t> now;  // pins strftime_now (formatted as UTC); unset: local time
    std::string template_name;       // "" picks as described above
};

// Reads the chat template and special tokens of a model folder (only tokenizer files are needed).
// Fails when the folder has no chat template.
chat_template chat_template_load(const std::string& model_dir);

// One template from its source text; `special_tokens` as in chat_template.
chat_template chat_template_from_string(const std::string& source,
                                        std::map<std::string, std::string> special_tokens = {});

// Renders `messages` (a JSON array of {"role", "content", ...}; content may be a string or a list
// of parts, passed to the template as is). JSON key order is kept (ordered_json).
std::string chat_template_render(const chat_template& tmpl, const nlohmann::ordered_json& messages,
                                 const render_options& options = {});

}  // namespace nibble
