// nibble run [--model DIR] [--prompt TEXT | --chat] [--max-tokens N] [--temperature T] [--top-p P]
//            [--top-k K] [--min-p P] [--seed S] [--ignore-eos] [--max-model-len N] [--device cpu|cuda]
//            [--kv-cache-dtype auto|f32|bf16|fp8] [--eager] [--json]
// Generates from a prompt (completed exactly as given: no chat template, no BOS unless the tokenizer
// adds one) or chats through the model's template; streams text, then reports prefill and decode tok/s,
// bytes read per token, the achieved bandwidth and a short hash of the last logits.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "core/error.h"
#include "core/model_bytes.h"
#include "engine/runner.h"
#include "engine/sampler.h"
#include "engine/stop_checker.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/generation_config.h"

namespace nibble {

namespace {

const char* k_usage =
    "nibble run [--model DIR] [--prompt TEXT | --chat] [--max-tokens N] [--temperature T] [--top-p P]\n"
    "           [--top-k K] [--min-p P] [--seed S] [--ignore-eos] [--max-model-len N] [--device cpu|cuda]\n"
    "           [--kv-cache-dtype auto|f32|bf16|fp8] [--eager] [--json]";

struct gen_stats {
    int64_t n_prompt = 0, n_generated = 0;
    double prefill_s = 0, decode_s = 0;
    std::vector<float> last_logits;
    std::string finish;
};

using clock_type = std::chrono::steady_clock;

// Generates after `prompt` in slot 0; `emit` receives text as it becomes final.
gen_stats generate(model_runner& r, std::span<const int32_t> prompt, const sampling_params& sp,
                   std::vector<int32_t>& out_ids, const std::function<void(const std::string&)>& emit) {
    gen_stats st;
    st.n_prompt = int64_t(prompt.size());
    if (st.n_prompt >= r.max_ctx())
        fail("the prompt has {} tokens; the context holds {} (raise --max-model-len)", st.n_prompt,
             r.max_ctx());
    sampler smp(sp, prompt);
    stop_checker stop(sp, r.max_ctx() - st.n_prompt);
    stream_decoder dec(r.tok());
    auto t0 = clock_type::now();
    std::vector<float> logits = r.prefill(0, prompt, 0);
    auto t1 = clock_type::now();
    st.prefill_s = std::chrono::duration<double>(t1 - t0).count();
    int32_t pos = int32_t(prompt.size());
    while (true) {
        st.last_logits = logits;
        int32_t tok = smp.sample(logits);
        out_ids.push_back(tok);
        stop_result res = stop.push(tok, dec.push(tok));
        if (res.finished()) {
            if (res.finish != finish_reason_stop || !res.stop_string) res.text += dec.flush();
            emit(res.text);
            st.finish = finish_reason_name(res.finish);
            break;
        }
        emit(res.text);
        int32_t slot = 0;
        logits = r.decode(std::span<const int32_t>(&slot, 1), std::span<const int32_t>(&tok, 1),
                          std::span<const int32_t>(&pos, 1));
        ++pos;
    }
    st.n_generated = int64_t(out_ids.size());
    st.decode_s = std::chrono::duration<double>(clock_type::now() - t1).count();
    return st;
}

void print_stats(model_runner& r, const gen_stats& st, FILE* f) {
    model_bytes mb = model_bytes_of(r.config(), r.model().weights);
    // Decode steps run after the first sampled token: one step per generated token but the last.
    const int64_t steps = std::max<int64_t>(st.n_generated - 1, 1);
    const double avg_ctx = double(st.n_prompt) + double(steps) / 2.0;
    const double bytes = double(mb.weight_bytes_per_token) + avg_ctx * double(r.kv_bytes_per_position());
    const double dec_tps = double(steps) / std::max(st.decode_s, 1e-9);
    std::fprintf(
        f,
        "\n[%s] prompt %lld tokens: %.1f tok/s prefill | %lld generated: %.1f tok/s decode | %.1f MB read "
        "per token, %.2f GB/s | finish %s | logits %s\n",
        r.device().name(), (long long)st.n_prompt, double(st.n_prompt) / std::max(st.prefill_s, 1e-9),
        (long long)st.n_generated, dec_tps, bytes / 1e6, bytes * dec_tps / 1e9, st.finish.c_str(),
        logits_hash(st.last_logits).c_str());
}

}  // namespace

int cmd_run(command_args args) {
    arg_parser a(args,
                 {"--model", "--prompt", "--max-tokens", "--temperature", "--top-p", "--top-k", "--min-p",
                  "--seed", "--max-model-len", "--device", "--kv-cache-dtype"},
                 {"--chat", "--ignore-eos", "--eager", "--json", "--help"});
    if (a.has("--help")) {
        std::printf("usage: %s\n", k_usage);
        return 0;
    }
    a.expect_positionals(0, 0, k_usage);
    if (a.has("--chat") && a.get("--prompt")) fail("--prompt and --chat exclude each other");
    const std::string dir = a.get_or("--model", default_model_dir());

    runner_options opt;
    opt.device = a.get_or("--device", default_device());
    opt.max_ctx = int32_t(a.get_int("--max-model-len", 4096));
    opt.kv_dtype = kv_cache_dtype_parse(a.get_or("--kv-cache-dtype", "auto"));
    opt.step_graphs = !a.has("--eager");
    model_runner r(dir, opt);
    if (std::string mem = r.memory_report(); !mem.empty() && !a.has("--json"))
        std::fprintf(stderr, "%s\n", mem.c_str());

    sampling_params req;
    if (a.get("--temperature")) req.temperature = a.get_double("--temperature", 1.0);
    if (a.get("--top-p")) req.top_p = a.get_double("--top-p", 1.0);
    if (a.get("--top-k")) req.top_k = int32_t(a.get_int("--top-k", 0));
    if (a.get("--min-p")) req.min_p = a.get_double("--min-p", 0.0);
    if (a.get("--seed")) req.seed = a.get_int("--seed", 0);
    req.max_tokens = a.get_int("--max-tokens", 128);
    req.ignore_eos = a.has("--ignore-eos");
    sampling_params sp = sampling_params_resolve(req, generation_config_load(dir), r.tok().eos_id());
    sampling_params_validate(sp, r.tok().n_vocab());

    if (!a.has("--chat")) {
        std::string prompt = a.get_or("--prompt", "def fibonacci(n):");
        std::vector<int32_t> ids = r.tok().encode(prompt), out;
        const bool json = a.has("--json");
        std::string text;
        if (!json) std::printf("%s", prompt.c_str());
        gen_stats st = generate(r, ids, sp, out, [&](const std::string& s) {
            text += s;
            if (!json) {
                std::fputs(s.c_str(), stdout);
                std::fflush(stdout);
            }
        });
        if (json) {
            model_bytes mb = model_bytes_of(r.config(), r.model().weights);
            const int64_t steps = std::max<int64_t>(st.n_generated - 1, 1);
            nlohmann::json j = {{"model", dir},
                                {"backend", r.device().name()},
                                {"prompt", prompt},
                                {"prompt_ids", ids},
                                {"generated_ids", out},
                                {"text", text},
                                {"finish_reason", st.finish},
                                {"stats",
                                 {{"prompt_tokens", st.n_prompt},
                                  {"generated_tokens", st.n_generated},
                                  {"prefill_s", st.prefill_s},
                                  {"prefill_tok_per_s", double(st.n_prompt) / std::max(st.prefill_s, 1e-9)},
                                  {"decode_s", st.decode_s},
                                  {"decode_tok_per_s", double(steps) / std::max(st.decode_s, 1e-9)},
                                  {"weight_bytes_per_token", mb.weight_bytes_per_token},
                                  {"kv_bytes_per_position", r.kv_bytes_per_position()},
                                  {"logits_hash", logits_hash(st.last_logits)}}}};
            std::printf("%s\n", j.dump(2).c_str());
        } else {
            print_stats(r, st, stdout);
        }
        return 0;
    }

    // Interactive chat through the model's chat template.
    chat_template tmpl = chat_template_load(dir);
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    const bool tty = isatty(STDIN_FILENO);
    std::string line;
    while (true) {
        if (tty) std::fprintf(stderr, "\n> ");
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
        messages.push_back({{"role", "user"}, {"content", line}});
        render_options ro;
        ro.add_generation_prompt = true;
        std::string prompt = chat_template_render(tmpl, messages, ro);
        std::vector<int32_t> ids = r.tok().encode(prompt, false), out;
        std::string reply;
        gen_stats st = generate(r, ids, sp, out, [&](const std::string& s) {
            reply += s;
            std::fputs(s.c_str(), stdout);
            std::fflush(stdout);
        });
        messages.push_back({{"role", "assistant"}, {"content", reply}});
        print_stats(r, st, stderr);
    }
    return 0;
}

}  // namespace nibble
