// nibble detokenize: ids -> text with the model folder's tokenizer.json.
#include <cstdio>
#include <cstdlib>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

namespace {

const char* k_detokenize_usage =
    "usage: nibble detokenize --model DIR [--skip-special] IDS...\n"
    "  Prints the text of the token ids (separated by spaces or commas).\n"
    "  --skip-special  leave out special tokens (e.g. <|im_end|>)\n";

}  // namespace

int cmd_detokenize(command_args args) {
    for (const std::string& a : args)
        if (a == "--help" || a == "-h") {
            std::fputs(k_detokenize_usage, stdout);
            return 0;
        }
    arg_parser p(args, {"--model"}, {"--skip-special"});
    auto model = p.get("--model");
    if (!model) fail("detokenize: --model DIR is required\n{}", k_detokenize_usage);
    if (p.positionals().empty()) fail("detokenize: no ids given\n{}", k_detokenize_usage);
    tokenizer tok = tokenizer::load(*model);
    std::vector<int32_t> ids;
    for (const std::string& arg : p.positionals()) {
        size_t pos = 0;
        while (pos < arg.size()) {
            size_t end = arg.find_first_of(", ", pos);
            if (end == std::string::npos) end = arg.size();
            std::string item = arg.substr(pos, end - pos);
            pos = end + 1;
            if (item.empty()) continue;
            char* stop = nullptr;
            long v = std::strtol(item.c_str(), &stop, 10);
            if (*stop != '\0') fail("detokenize: \"{}\" is not a token id", item);
            if (v < 0 || v >= tok.n_vocab())
                fail("detokenize: id {} is outside the vocabulary [0, {})", v, tok.n_vocab());
            ids.push_back(int32_t(v));
        }
    }
    std::string text = tok.decode(ids, p.has("--skip-special"));
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    return 0;
}

}  // namespace nibble
