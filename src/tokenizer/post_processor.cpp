#include "tokenizer/post_processor.h"

#include <string>

#include "core/error.h"

namespace nibble {

namespace {

void parse_template(const nlohmann::json& j, post_processor& p) {
    if (!j.contains("single") || !j["single"].is_array())
        fail("tokenizer.json: post_processor TemplateProcessing: missing \"single\" array");
    const nlohmann::json specials = j.value("special_tokens", nlohmann::json::object());
    bool seen_sequence = false;
    for (const auto& piece : j["single"]) {
        if (piece.contains("Sequence")) {
            seen_sequence = true;
            continue;
        }
        if (!piece.contains("SpecialToken"))
            fail("tokenizer.json: post_processor TemplateProcessing: unknown template piece {}",
                 piece.dump());
        std::string name = piece["SpecialToken"].at("id").get<std::string>();
        if (!specials.contains(name) || !specials[name].contains("ids"))
            fail(
                "tokenizer.json: post_processor TemplateProcessing: special token \"{}\" has no entry in "
                "\"special_tokens\"",
                name);
        auto& dst = seen_sequence ? p.suffix : p.prefix;
        for (const auto& id : specials[name]["ids"]) dst.push_back(id.get<int32_t>());
    }
}

void parse_into(const nlohmann::json& j, post_processor& p) {
    if (j.is_null()) return;
    if (!j.is_object() || !j.contains("type"))
        fail("tokenizer.json: post_processor: expected an object with a \"type\"");
    std::string type = j["type"].get<std::string>();
    if (type == "Sequence") {
        if (!j.contains("processors") || !j["processors"].is_array())
            fail("tokenizer.json: post_processor Sequence: missing \"processors\" array");
        for (const auto& sub : j["processors"]) parse_into(sub, p);
    } else if (type == "ByteLevel") {
        // Offsets only: no ids are added.
    } else if (type == "TemplateProcessing") {
        parse_template(j, p);
    } else if (type == "RobertaProcessing" || type == "BertProcessing") {
        p.prefix.push_back(j.at("cls").at(1).get<int32_t>());
        p.suffix.push_back(j.at("sep").at(1).get<int32_t>());
    } else {
        fail(
            "tokenizer.json: post_processor type \"{}\" is not supported (TemplateProcessing, ByteLevel, "
            "RobertaProcessing, BertProcessing, Sequence)",
            type);
    }
}

}  // namespace

post_processor post_processor_parse(const nlohmann::json& j) {
    post_processor p;
    parse_into(j, p);
    return p;
}

}  // namespace nibble
