// nibble: one binary, several subcommands.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"

namespace {

struct command {
    const char* name;
    int (*run)(nibble::command_args);
    const char* summary;
};

const command k_commands[] = {
    {"run", nibble::cmd_run, "generate text from a prompt, or chat, on the CPU; reports tok/s and GB/s"},
    {"serve", nibble::cmd_serve, "OpenAI-compatible HTTP server with continuous batching (vLLM's flags)"},
    {"bench", nibble::cmd_bench, "prefill and decode tok/s per batch size against the measured roofline"},
    {"inspect", nibble::cmd_inspect, "parameters, formats and bytes per token; predicted decode speed"},
    {"quantize", nibble::cmd_quantize, "quantize a BF16/F16/F32 checkpoint to NVFP4, FP8 or MXFP4"},
    {"perplexity", nibble::cmd_perplexity, "windowed perplexity of a text file"},
    {"synth", nibble::cmd_synth, "write a random-weight checkpoint for a config.json, in any scheme"},
    {"template", nibble::cmd_template, "render a conversation with a model folder's chat template"},
    {"tokenize", nibble::cmd_tokenize, "text -> token ids with a model folder's tokenizer.json"},
    {"detokenize", nibble::cmd_detokenize, "token ids -> text with a model folder's tokenizer.json"},
};

void usage(FILE* f) {
    std::fprintf(f,
                 "usage: nibble COMMAND [ARGS...]   (nibble COMMAND --help for its options)\n\ncommands:\n");
    for (const command& c : k_commands) std::fprintf(f, "  %-12s %s\n", c.name, c.summary);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    std::string name = argv[1];
    if (name == "--help" || name == "-h" || name == "help") {
        usage(stdout);
        return 0;
    }
    if (name == "--version") {
        std::printf("nibble %s\n", NIBBLE_VERSION);
        return 0;
    }
    std::vector<std::string> args(argv + 2, argv + argc);
    for (const command& c : k_commands) {
        if (name != c.name) continue;
        try {
            return c.run(args);
        } catch (const nibble::error& e) {
            std::fprintf(stderr, "nibble %s: error: %s\n", c.name, e.what());
            return 1;
        }
    }
    std::fprintf(stderr, "nibble: unknown command '%s'\n", name.c_str());
    usage(stderr);
    return 2;
}
