// nibble template: render a conversation with a model's chat template and print the prompt
// exactly (no newline added), to diff against transformers' apply_chat_template.
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace nibble {

namespace {

const char* k_template_usage =
    "nibble template --model DIR --messages FILE.json [--add-generation-prompt] [--kwargs JSON]\n"
    "                [--tools FILE.json] [--template-name NAME] [--now UNIX_SECONDS]";

nlohmann::ordered_json parse_json(const std::string& text, const std::string& what) {
    try {
        return nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        fail("{}: invalid JSON: {}", what, e.what());
    }
}

nlohmann::ordered_json read_json_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("cannot read {}", path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return parse_json(ss.str(), path);
}

}  // namespace

int cmd_template(command_args args) {
    arg_parser p(args, {"--model", "--messages", "--kwargs", "--tools", "--template-name", "--now"},
                 {"--add-generation-prompt", "--help"});
    if (p.has("--help")) {
        std::printf("usage: %s\n", k_template_usage);
        return 0;
    }
    p.expect_positionals(0, 0, k_template_usage);
    auto model = p.get("--model");
    auto messages_path = p.get("--messages");
    if (!model || !messages_path) fail("--model and --messages are required; usage: {}", k_template_usage);

    chat_template tmpl = chat_template_load(*model);
    nlohmann::ordered_json messages = read_json_file(*messages_path);
    // A file holding {"messages": [...]} (an OpenAI request body) works too.
    if (messages.is_object() && messages.contains("messages")) messages = messages["messages"];

    render_options opt;
    opt.add_generation_prompt = p.has("--add-generation-prompt");
    if (auto tools = p.get("--tools")) opt.tools = read_json_file(*tools);
    if (auto kwargs = p.get("--kwargs")) opt.kwargs = parse_json(*kwargs, "--kwargs");
    if (!opt.kwargs.is_object()) fail("--kwargs must be a JSON object");
    opt.template_name = p.get_or("--template-name", "");
    if (p.has("--now")) opt.now = std::time_t(p.get_int("--now", 0));

    std::string prompt;
    try {
        prompt = chat_template_render(tmpl, messages, opt);
    } catch (const jinja::template_error& e) {
        fail("the chat template raised an exception: {}", e.what());
    }
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    std::fflush(stdout);
    return 0;
}

}  // namespace nibble
