#include "tokenizer/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace nibble {

namespace {

std::optional<std::string> read_text(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) return std::nullopt;
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::shared_ptr<const jinja::jinja_template> compile(const std::string& source, const std::string& where) {
    try {
        return std::make_shared<const jinja::jinja_template>(source);
    } catch (const nibble::error& e) {
        fail("{}: {}", where, e.what());
    }
}

// A special token is a string, {"content": "..."} (AddedToken), or null.
std::optional<std::string> token_string(const nlohmann::ordered_json& j) {
    if (j.is_string()) return j.get<std::string>();
    if (j.is_object() && j.contains("content") && j["content"].is_string())
        return j["content"].get<std::string>();
    return std::nullopt;
}

}  // namespace

chat_template chat_template_from_string(const std::string& source,
                                        std::map<std::string, std::string> special_tokens) {
    chat_template t;
    t.templates["default"] = compile(source, "chat template");
    t.special_tokens = std::move(special_tokens);
    return t;
}

chat_template chat_template_load(const std::string& model_dir) {
    namespace fs = std::filesystem;
    fs::path dir(model_dir);
    chat_template t;
    fs::path config_path = dir / "tokenizer_config.json";
    nlohmann::ordered_json config = nlohmann::ordered_json::object();
    if (auto text = read_text(config_path)) {
        try {
            config = nlohmann::ordered_json::parse(*text);
        } catch (const nlohmann::json::exception& e) {
            fail("{}: invalid JSON: {}", config_path.string(), e.what());
        }
        if (!config.is_object()) fail("{}: expected a JSON object", config_path.string());
    }
    for (const char* name : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
        if (!config.contains(name)) continue;
        if (auto s = token_string(config[name])) t.special_tokens[name] = *s;
    }
    fs::path jinja_path = dir / "chat_template.jinja";
    if (auto text = read_text(jinja_path)) {
        t.templates["default"] = compile(*text, jinja_path.string());
        return t;
    }
    const nlohmann::ordered_json* ct = config.contains("chat_template") ? &config["chat_template"] : nullptr;
    if (ct && ct->is_string()) {
        t.templates["default"] = compile(ct->get<std::string>(), config_path.string() + " chat_template");
    } else if (ct && ct->is_array()) {
        for (const auto& entry : *ct) {
            if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() ||
                !entry.contains("template") || !entry["template"].is_string())
                fail("{}: chat_template entries must be {{\"name\", \"template\"}} objects",
                     config_path.string());
            std::string name = entry["name"].get<std::string>();
            t.templates[name] = compile(entry["template"].get<std::string>(),
                                        config_path.string() + " chat_template '" + name + "'");
        }
    }
    if (t.templates.empty())
        fail("{}: no chat template (no chat_template.jinja, no chat_template in tokenizer_config.json)",
             model_dir);
    return t;
}

std::string chat_template_render(const chat_template& tmpl, const nlohmann::ordered_json& messages,
                                 const render_options& options) {
    std::string name = options.template_name;
    if (name.empty()) {
        if (!options.tools.is_null() && tmpl.templates.count("tool_use"))
            name = "tool_use";
        else if (tmpl.templates.count("default"))
            name = "default";
        else if (tmpl.templates.size() == 1)
            name = tmpl.templates.begin()->first;
    }
    auto it = tmpl.templates.find(name);
    if (it == tmpl.templates.end())
        fail("chat template '{}' not found ({} named templates)", name.empty() ? "default" : name,
             tmpl.templates.size());
    if (!messages.is_array()) fail("messages must be a JSON array");
    if (!options.kwargs.is_object()) fail("chat template kwargs must be a JSON object");

    jinja::value vars = jinja::make_dict();
    jinja::value_dict& d = vars.as_dict();
    d.set("messages", jinja::from_json(messages));
    d.set("tools", jinja::from_json(options.tools));
    d.set("documents", jinja::value(nullptr));
    d.set("add_generation_prompt", jinja::value(options.add_generation_prompt));
    for (const auto& [k, v] : tmpl.special_tokens) d.set(k, jinja::value(v));
    if (options.now) {
        std::time_t now = *options.now;
        d.set("strftime_now", jinja::native_fn([now](jinja::call_args& a) {
                  const jinja::value* f = a.get(0, "format");
                  if (!f || !f->is_string()) fail("strftime_now expects a format string");
                  std::tm tm{};
                  gmtime_r(&now, &tm);
                  char buf[256];
                  size_t n = std::strftime(buf, sizeof buf, f->as_string().c_str(), &tm);
                  return jinja::value(std::string(buf, n));
              }));
    }
    for (auto kv = options.kwargs.begin(); kv != options.kwargs.end(); ++kv)
        d.set(kv.key(), jinja::from_json(kv.value()));
    return it->second->render(vars);
}

}  // namespace nibble
