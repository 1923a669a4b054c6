// nibble side of the tokenizer benchmark: encodes a JSON array of strings (written by
// tokenizer_bench.mjs) on one thread and prints MB/s, first pass (cold word cache) and second.
//   tokenizer_bench MODEL_DIR TEXTS.json [NAME]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: tokenizer_bench MODEL_DIR TEXTS.json [NAME]\n");
        return 2;
    }
    try {
        std::ifstream f(argv[2]);
        if (!f) nibble::fail("cannot open {}", argv[2]);
        std::stringstream ss;
        ss << f.rdbuf();
        std::vector<std::string> texts = nlohmann::json::parse(ss.str()).get<std::vector<std::string>>();
        size_t n_bytes = 0;
        for (const std::string& t : texts) n_bytes += t.size();
        const char* name = argc > 3 ? argv[3] : "model";

        auto t0 = std::chrono::steady_clock::now();
        nibble::tokenizer tok = nibble::tokenizer::load(argv[1]);
        double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("nibble  %s load: %.2f s (regex JIT: %s)\n", name, load_s,
                    tok.regex_jit() ? "yes" : "no");
        for (int pass = 1; pass <= 2; ++pass) {
            size_t n_tokens = 0;
            auto t1 = std::chrono::steady_clock::now();
            for (const std::string& t : texts) n_tokens += tok.encode(t, false).size();
            double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
            std::printf("nibble  %s pass %d: %.2f MB, %zu tokens, %.2f s, %.2f MB/s\n", name, pass,
                        n_bytes / 1e6, n_tokens, s, n_bytes / 1e6 / s);
        }
    } catch (const nibble::error& e) {
        std::fprintf(stderr, "tokenizer_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
