// nibble serve [MODEL] [--host 127.0.0.1] [--port 8000] [--served-model-name NAME] [--max-model-len N]
//              [--max-num-seqs N] [--max-num-batched-tokens N] [--api-key KEY] [--device cpu|cuda]
//              [--kv-cache-dtype auto|f32|bf16|fp8] [--block-size N] [--gpu-memory-utilization F]
//              [--num-gpu-blocks-override N] [--[no-]enable-prefix-caching] [--eager] [--reasoning-parser
//              qwen3]
// An OpenAI-compatible server (vLLM's flag names) with continuous batching over a paged KV cache with
// prefix caching; the GPU when there is one, else the CPU.
// SIGINT / SIGTERM stop it (api_server::stop): new requests get 503, running and queued ones end at
// once with a "server shutting down" error (SSE error event + [DONE], or a 503), then the listener
// closes and the process exits with status 0.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli/args.h"
#include "core/error.h"
#include "engine/engine.h"
#include "server/reasoning.h"
#include "server/server.h"

namespace nibble {

namespace {

const char* k_usage =
    "nibble serve [MODEL] [--host 127.0.0.1] [--port 8000] [--served-model-name NAME] [--max-model-len N]\n"
    "             [--max-num-seqs N] [--max-num-batched-tokens N] [--api-key KEY] [--device cpu|cuda]\n"
    "             [--kv-cache-dtype auto|f32|bf16|fp8] [--block-size N] [--gpu-memory-utilization F]\n"
    "             [--num-gpu-blocks-override N] [--[no-]enable-prefix-caching] [--eager]\n"
    "             [--reasoning-parser qwen3]";

}  // namespace

int cmd_serve(command_args args) {
    arg_parser a(
        args,
        {"--model", "--host", "--port", "--served-model-name", "--max-model-len", "--max-num-seqs",
         "--max-num-batched-tokens", "--api-key", "--device", "--kv-cache-dtype", "--reasoning-parser",
         "--block-size", "--gpu-memory-utilization", "--num-gpu-blocks-override"},
        {"--eager", "--help", "--enable-prefix-caching", "--no-enable-prefix-caching"});
    if (a.has("--help")) {
        std::printf("usage: %s\n", k_usage);
        return 0;
    }
    a.expect_positionals(0, 1, k_usage);
    if (!a.positionals().empty() && a.get("--model")) fail("give the model as MODEL or --model, not both");
    const std::string dir =
        !a.positionals().empty() ? a.positionals()[0] : a.get_or("--model", default_model_dir());
    const int64_t port = a.get_int("--port", 8000), n_seqs = a.get_int("--max-num-seqs", 16),
                  n_batched = a.get_int("--max-num-batched-tokens", 512),
                  max_len = a.get_int("--max-model-len", 4096);
    if (port < 0 || port > 65535) fail("--port must be in [0, 65535], got {}", port);
    if (n_seqs < 1 || n_seqs > 4096) fail("--max-num-seqs must be in [1, 4096], got {}", n_seqs);
    if (n_batched < 1 || n_batched > 65536)
        fail("--max-num-batched-tokens must be in [1, 65536], got {}", n_batched);
    if (n_batched < n_seqs)  // else some running sequences would get no token in a step (vLLM's check)
        fail("--max-num-batched-tokens ({}) must be >= --max-num-seqs ({})", n_batched, n_seqs);
    if (max_len < 2) fail("--max-model-len must be >= 2, got {}", max_len);
    const int64_t block_size = a.get_int("--block-size", 16),
                  n_blocks = a.get_int("--num-gpu-blocks-override", 0);
    if (block_size < 1 || block_size > 256 || (block_size & (block_size - 1)))
        fail("--block-size must be a power of two in [1, 256], got {}", block_size);
    if (n_blocks < 0 || n_blocks > INT32_MAX)
        fail("--num-gpu-blocks-override must be >= 1, got {}", n_blocks);
    const double mem_util = a.get_double("--gpu-memory-utilization", 0.9);
    if (!(mem_util > 0.0 && mem_util <= 1.0))
        fail("--gpu-memory-utilization must be in (0, 1], got {}", mem_util);
    const std::string reasoning = a.get_or("--reasoning-parser", "");
    if (!reasoning.empty() && !reasoning_parser_known(reasoning)) {
        std::string known;
        for (const std::string& n : reasoning_parser_names()) known += (known.empty() ? "" : ", ") + n;
        fail("--reasoning-parser must be one of: {}; got '{}'", known, reasoning);
    }

    // Block the stop signals in every thread; one thread waits for them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGUSR1);  // sent by this thread when the server ends on its own
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);  // a client that went away is an error return, not a signal

    runner_options opt;
    opt.device = a.get_or("--device", default_device());
    opt.max_ctx = int32_t(max_len);
    opt.n_slots = int32_t(n_seqs);
    opt.max_step = int32_t(n_batched);
    opt.kv_dtype = kv_cache_dtype_parse(a.get_or("--kv-cache-dtype", "auto"));
    opt.step_graphs = !a.has("--eager");
    opt.block_size = int32_t(block_size);
    opt.kv_blocks =
        int32_t(n_blocks);  // 0: sized from --gpu-memory-utilization (CUDA) or n_seqs x max_len (CPU)
    opt.gpu_memory_utilization = mem_util;
    model_runner runner(dir, opt);
    if (std::string mem = runner.memory_report(); !mem.empty())
        std::fprintf(stderr, "nibble serve: %s\n", mem.c_str());

    served_model m;
    m.name = a.get_or("--served-model-name", dir);
    m.dir = dir;
    m.runner = &runner;
    m.gen = generation_config_load(dir);
    m.created = int64_t(std::time(nullptr));
    try {
        m.tmpl = chat_template_load(dir);
    } catch (const error& e) {
        std::fprintf(stderr, "nibble serve: no chat template (%s): /v1/chat/completions will answer 400\n",
                     e.what());
    }

    engine_options eo;
    eo.max_num_batched_tokens = int32_t(n_batched);
    if (a.has("--enable-prefix-caching") && a.has("--no-enable-prefix-caching"))
        fail("--enable-prefix-caching and --no-enable-prefix-caching contradict each other");
    eo.prefix_caching = !a.has("--no-enable-prefix-caching");
    engine eng(runner, eo);
    server_options so;
    so.host = a.get_or("--host", "127.0.0.1");
    so.port = int(port);
    so.api_key = a.get_or("--api-key", "");
    so.version = NIBBLE_VERSION;
    so.reasoning_parser = reasoning;
    api_server server(eng, m, so);

    std::thread waiter([&] {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        if (sig == SIGUSR1) return;  // the server ended on its own
        std::fprintf(stderr, "nibble serve: signal %d, shutting down\n", sig);
        server.stop();  // the engine first, then the listener
    });
    std::fprintf(
        stderr,
        "nibble serve: %s as '%s' on http://%s:%d (max_model_len %d, max_num_seqs %d, %d tokens/step)\n",
        dir.c_str(), m.name.c_str(), so.host.c_str(), so.port, runner.max_ctx(), int(n_seqs), int(n_batched));
    int rc = 0;
    try {
        server.run();
    } catch (const error& e) {
        std::fprintf(stderr, "nibble serve: error: %s\n", e.what());
        rc = 1;
    }
    // Wake the waiter if the server ended without a signal.
    pthread_kill(waiter.native_handle(), SIGUSR1);
    waiter.join();
    eng.stop();
    return rc;
}

}  // namespace nibble
