// nibble tokenize: text -> ids with the model folder's tokenizer.json (a folder holding only the
// tokenizer files is enough).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

namespace {

const char* k_tokenize_usage =
    "usage: nibble tokenize --model DIR [--file F | TEXT] [--json] [--no-add-special] [--no-parse-special]\n"
    "  Prints the token ids of TEXT (or of file F, or of stdin), space-separated.\n"
    "  --json              print {\"ids\": [...], \"tokens\": [...]} (tokens as vocabulary strings)\n"
    "  --no-add-special    do not add the BOS/EOS ids of the post-processor\n"
    "  --no-parse-special  treat special-token text (e.g. <|im_start|>) as plain text\n";

std::string read_all(std::istream& in) {
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

int cmd_tokenize(command_args args) {
    for (const std::string& a : args)
        if (a == "--help" || a == "-h") {
            std::fputs(k_tokenize_usage, stdout);
            return 0;
        }
    arg_parser p(args, {"--model", "--file"}, {"--json", "--no-add-special", "--no-parse-special"});
    p.expect_positionals(0, 1, k_tokenize_usage);
    auto model = p.get("--model");
    if (!model) fail("tokenize: --model DIR is required\n{}", k_tokenize_usage);
    std::string text;
    if (auto file = p.get("--file")) {
        if (!p.positionals().empty()) fail("tokenize: give either --file or TEXT, not both");
        std::ifstream f(*file, std::ios::binary);
        if (!f) fail("tokenize: cannot open {}", *file);
        text = read_all(f);
    } else if (!p.positionals().empty()) {
        text = p.positionals()[0];
    } else {
        text = read_all(std::cin);
    }
    tokenizer tok = tokenizer::load(*model);
    std::vector<int32_t> ids = tok.encode(text, !p.has("--no-add-special"), !p.has("--no-parse-special"));
    if (p.has("--json")) {
        nlohmann::json j;
        j["ids"] = ids;
        auto& toks = j["tokens"] = nlohmann::json::array();
        for (int32_t id : ids) toks.push_back(tok.token_text(id));
        std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
        std::string line;
        for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
        std::printf("%s\n", line.c_str());
    }
    return 0;
}

}  // namespace nibble
