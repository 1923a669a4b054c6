// nibble perplexity --model DIR --file F --window N [--limit T] [--device cpu|cuda]
//                   [--kv-cache-dtype auto|f32|bf16|fp8] [--json]
// The file's tokens (the first T when given) are cut into chunks tokens[iN : iN+N+1], each scored from an
// empty context; prints the mean negative log-likelihood per predicted token and the perplexity.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "core/error.h"
#include "engine/runner.h"
#include "loader/checkpoint.h"

namespace nibble {

namespace {

const char* k_usage =
    "nibble perplexity --model DIR --file F --window N [--limit T] [--device cpu|cuda]\n"
    "                  [--kv-cache-dtype auto|f32|bf16|fp8] [--json]";

}  // namespace

int cmd_perplexity(command_args args) {
    arg_parser a(args, {"--model", "--file", "--window", "--limit", "--device", "--kv-cache-dtype"},
                 {"--json", "--help"});
    if (a.has("--help")) {
        std::printf("usage: %s\n", k_usage);
        return 0;
    }
    a.expect_positionals(0, 0, k_usage);
    auto model = a.get("--model"), file = a.get("--file");
    if (!model || !file) fail("--model and --file are required; usage: {}", k_usage);
    const int64_t window = a.get_int("--window", 0), limit = a.get_int("--limit", 0);
    if (window < 1) fail("--window must be a positive number of tokens");
    if (limit < 0) fail("--limit must be non-negative");

    runner_options opt;
    opt.device = a.get_or("--device", default_device());
    opt.max_ctx = int32_t(window + 1);
    opt.max_step = int32_t(window + 1);
    opt.kv_dtype = kv_cache_dtype_parse(a.get_or("--kv-cache-dtype", "auto"));
    model_runner r(*model, opt);
    if (window + 1 > r.max_ctx())
        fail("--window {} exceeds the model's context of {} positions", window, r.max_ctx());
    std::vector<int32_t> tokens = r.tok().encode(read_text_file(*file));
    if (limit > 0 && int64_t(tokens.size()) > limit) tokens.resize(size_t(limit));
    if (tokens.size() < 2) fail("{}: fewer than 2 tokens to score", *file);

    const int64_t V = r.config().vocab_size;
    double nll = 0;
    int64_t n_pred = 0, n_chunks = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i + 1 < tokens.size(); i += size_t(window)) {
        size_t len = std::min(tokens.size() - i, size_t(window + 1));
        std::span<const int32_t> chunk(tokens.data() + i, len);
        std::vector<float> logits = r.score(0, chunk);
        for (size_t j = 0; j + 1 < len; ++j) {
            const float* lg = logits.data() + j * size_t(V);
            float m = -INFINITY;
            for (int64_t v = 0; v < V; ++v) m = std::fmax(m, lg[v]);
            double sum = 0;
            for (int64_t v = 0; v < V; ++v) sum += std::exp(double(lg[v] - m));
            nll += -(double(lg[chunk[j + 1]] - m) - std::log(sum));
            ++n_pred;
        }
        ++n_chunks;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double mean = nll / double(n_pred), ppl = std::exp(mean);
    if (a.has("--json")) {
        nlohmann::json j = {{"model", *model},     {"file", *file},           {"window", window},
                            {"limit", limit},      {"tokens", tokens.size()}, {"chunks", n_chunks},
                            {"predicted", n_pred}, {"mean_nll", mean},        {"perplexity", ppl},
                            {"seconds", secs}};
        std::printf("%s\n", j.dump(2).c_str());
    } else {
        std::printf("%s: %zu tokens, %lld chunks of up to %lld, %lld predicted\n", file->c_str(),
                    tokens.size(), (long long)n_chunks, (long long)window + 1, (long long)n_pred);
        std::printf("mean NLL %.6f, perplexity %.4f (%.1f tok/s scored)\n", mean, ppl, double(n_pred) / secs);
    }
    return 0;
}

}  // namespace nibble
