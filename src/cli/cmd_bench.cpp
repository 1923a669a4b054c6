// nibble bench [--model DIR] [--device cpu|cuda] [--batch 1,4,16] [--prompt-len N] [--gen-len N]
//              [--eager] [--compare-eager] [--kv-cache-dtype auto|f32|bf16|fp8] [--reps N] [--json]
//              [--markdown]
// End-to-end prefill and decode speed of a model on one device, every figure against the roofline
// measured in the same run (performance.md): the device-to-device copy bandwidth on CUDA, a host memcpy
// far larger than the last-level cache on the CPU (both counted read + write), measured first.
//
// Prefill: slot 0 re-prefilled from position 0 with --prompt-len pseudo-random ids, 2 warm-up runs, then
// the median of --reps; tok/s and the linear layers' FLOP rate (2 x params per token x tokens; the lm_head
// only for the last token, attention scores not counted). On CUDA also the reference the prefill
// aim is stated against: the decoder layers' linears as cuBLASLt BF16 GEMMs alone on the same shapes at
// m = --prompt-len (dense models), and the fraction of the prefill's time that those GEMMs would take.
// Decode: one runner with a slot per sequence of the largest batch; for each batch B, B slots prefilled
// with --prompt-len ids each, then --gen-len steps of all B slots at once (greedy ids, positions
// advancing), each step timed up to its greedy ids on the host (the logits stay on the device and each row
// is reduced to its top entry there, as the engine samples; that call synchronizes); the first 2 steps are
// warm-up (a step graph is recorded on the 2nd sighting of its shape). Bytes per step = the weight bytes of
// one token (read once per step, whatever B) + the KV read by the B slots (their mean context over the
// timed steps x kv_bytes_per_position); GB/s = bytes / median step time; % of roofline = GB/s / copy
// bandwidth; bound tok/s = B x copy bandwidth / bytes. --compare-eager runs each batch with step graphs
// on, then off, on the same runner.
//
// Output: a table (stdout; progress on stderr), or --json (one object, nothing else printed), or
// --markdown (the roofline line and README table rows).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "cli/args.h"
#include "cli/bench_util.h"
#include "core/error.h"
#include "core/model_bytes.h"
#include "engine/runner.h"
#ifdef NIBBLE_HAVE_CUDA
#include "cuda/device.h"
#include "cuda/linear_bench.h"
#endif

namespace nibble {

namespace {

const char* k_usage =
    "nibble bench [--model DIR] [--device cpu|cuda] [--batch 1,4,16] [--prompt-len N] [--gen-len N]\n"
    "             [--eager] [--compare-eager] [--kv-cache-dtype auto|f32|bf16|fp8] [--reps N] [--json] "
    "[--markdown]\n"
    "nibble bench --kernels ...   (the linear kernels against cuBLAS; nibble bench --kernels --help)\n"
    "nibble bench serve ...       (a server, as vllm bench serve; nibble bench serve --help)";

constexpr int k_warmup_steps = 2;    // decode steps discarded per batch
constexpr int k_prefill_warmup = 2;  // untimed prefills before the --reps timed ones
constexpr int k_ctx_margin = 8;      // positions beyond prompt + generation

struct bench_config {
    std::string dir, device;
    std::vector<int64_t> batches;
    int64_t max_batch = 1, prompt_len = 128, gen_len = 64, reps = 3;
    bool eager = false, compare_eager = false, json = false, markdown = false;
    kv_cache_dtype kv = kv_cache_auto;
};

struct roofline {
    double gbps = 0;
    uint64_t bytes = 0;  // size of the copied buffer
    std::string method;
};

// The prefill's linear layers as cuBLASLt BF16 GEMMs on the same shapes (CUDA): each distinct [n, k] of
// the layers timed once at m = prompt length (cuda/linear_bench.h's method), times its count.
struct gemm_reference_shape {
    int64_t n = 0, k = 0, count = 0;
    double seconds = 0;  // one GEMM
};
struct gemm_reference {
    bool ran = false;
    std::string error;  // why there is no reference (MoE layers, a GEMM cuBLASLt rejected)
    std::vector<gemm_reference_shape> shapes;
    double linear_s = 0;  // Σ count × seconds: the layers' GEMMs alone on cuBLASLt BF16
    double fraction = 0;  // linear_s / the whole prefill's median time
};

struct prefill_figures {
    int64_t tokens = 0;
    std::vector<double> seconds;
    double median_s = 0, tok_per_s = 0, flops = 0, flop_per_s = 0;
    int64_t linear_params_per_token = 0, lm_head_params = 0;
    gemm_reference cublas;
};

struct decode_figures {
    int64_t batch = 0;
    bool graphs = true;
    int64_t steps_timed = 0;
    double ms_per_step = 0, ms_min = 0, ms_max = 0, tok_per_s = 0;
    double mean_context = 0;  // KV positions read per slot, mean over the timed steps
    double kv_bytes = 0, bytes = 0, gbps = 0, roofline_pct = 0, bound_tok_per_s = 0;
};

struct batch_row {
    decode_figures main;
    std::optional<decode_figures> eager;  // --compare-eager
};

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

bench_config parse(command_args args) {
    arg_parser a(
        args, {"--model", "--device", "--batch", "--prompt-len", "--gen-len", "--kv-cache-dtype", "--reps"},
        {"--eager", "--compare-eager", "--json", "--markdown", "--help"});
    bench_config c;
    a.expect_positionals(0, 0, k_usage);
    c.dir = a.get_or("--model", default_model_dir());
    c.device = a.get_or("--device", default_device());
    if (c.device != "cpu" && c.device != "cuda")
        fail("--device: unknown device '{}' (cpu or cuda)", c.device);
    c.batches = parse_int_list(a.get_or("--batch", "1"), "--batch");
    for (int64_t b : c.batches)
        if (b <= 0 || b > 4096) fail("--batch: batch sizes must be in 1..4096 (got {})", b);
    c.max_batch = *std::max_element(c.batches.begin(), c.batches.end());
    c.prompt_len = a.get_int("--prompt-len", 128);
    c.gen_len = a.get_int("--gen-len", 64);
    c.reps = a.get_int("--reps", 3);
    if (c.prompt_len < 1) fail("--prompt-len must be at least 1 (got {})", c.prompt_len);
    if (c.gen_len < k_warmup_steps + 1)
        fail("--gen-len must be at least {} (the first {} decode steps are warm-up; got {})",
             k_warmup_steps + 1, k_warmup_steps, c.gen_len);
    if (c.reps < 1) fail("--reps must be at least 1 (got {})", c.reps);
    c.eager = a.has("--eager");
    c.compare_eager = a.has("--compare-eager");
    if (c.eager && c.compare_eager) fail("--eager and --compare-eager exclude each other");
    c.json = a.has("--json");
    c.markdown = a.has("--markdown");
    if (c.json && c.markdown) fail("--json and --markdown exclude each other");
    try {
        c.kv = kv_cache_dtype_parse(a.get_or("--kv-cache-dtype", "auto"));
    } catch (const error& e) {
        fail("--kv-cache-dtype: {}", e.what());
    }
    return c;
}

// Fails before anything is measured when the prompt and the generation do not fit the model.
void check_context(const bench_config& c) {
    model_config mc = model_config_load(c.dir);
    const int64_t need = c.prompt_len + c.gen_len + k_ctx_margin;
    if (need > mc.max_position_embeddings)
        fail(
            "--prompt-len {} + --gen-len {} (+ {} spare) = {} positions exceed the model's context of {} "
            "(max_position_embeddings)",
            c.prompt_len, c.gen_len, k_ctx_margin, need, mc.max_position_embeddings);
}

roofline measure_roofline(const bench_config& c) {
    roofline r;
    if (c.device == "cuda") {
#ifdef NIBBLE_HAVE_CUDA
        if (cuda_device_count() == 0) fail("--device cuda: no CUDA device found");
        r.bytes = size_t(1) << 30;
        r.gbps = cuda_copy_bandwidth_gbps(r.bytes, 20);
        r.method = "device-to-device cudaMemcpyAsync of 1 GiB, read + write, median of 20";
#else
        fail("--device cuda: this build has no CUDA backend");
#endif
        return r;
    }
    r.bytes = host_copy_buffer_bytes(size_t(256) << 20);
    r.gbps = host_copy_bandwidth_gbps(r.bytes, 7);
    r.method = fmt::format("host memcpy of {} MiB over the OpenMP threads, read + write, median of 7",
                           r.bytes >> 20);
    return r;
}

std::string device_name(const bench_config& c) {
#ifdef NIBBLE_HAVE_CUDA
    if (c.device == "cuda") return cuda_device_query(0).name;
#endif
    return host_cpu_name();
}

// The last cache level the weights could be served from: L2 on the GPU, the last-level cache on the CPU.
uint64_t cache_bytes(const bench_config& c) {
#ifdef NIBBLE_HAVE_CUDA
    if (c.device == "cuda") return cuda_device_query(0).l2_bytes;
#endif
    return host_last_level_cache_bytes();
}

bool is_linear_role(const std::string& role) {
    return role == "attention" || role == "mlp" || role == "experts" || role == "router";
}

// The formats of the linear layers, then the lm_head's when it differs: "NVFP4 W4A4 (ModelOpt), lm_head
// BF16".
std::string scheme_label(const model_bytes& mb) {
    std::set<std::string> seen;
    std::string body, head;
    for (const role_bytes& r : mb.roles) {
        if (r.role == "lm_head") head = r.formats;
        if (!is_linear_role(r.role) || r.role == "router" || !seen.insert(r.formats).second) continue;
        body += (body.empty() ? "" : " + ") + r.formats;
    }
    if (!head.empty() && head != body) body += ", lm_head " + head;
    return body;
}

prefill_figures measure_prefill(model_runner& r, const bench_config& c, const model_bytes& mb) {
    prefill_figures p;
    p.tokens = c.prompt_len;
    for (const role_bytes& rb : mb.roles) {
        if (is_linear_role(rb.role)) p.linear_params_per_token += rb.active_params;
        if (rb.role == "lm_head") p.lm_head_params = rb.active_params;
    }
    std::vector<int32_t> ids = bench_token_ids(c.prompt_len, r.config().vocab_size, 1);
    for (int i = 0; i < k_prefill_warmup; ++i) r.prefill(0, ids, 0);
    for (int64_t i = 0; i < c.reps; ++i) {
        auto t0 = clock_type::now();
        r.prefill(0, ids, 0);
        p.seconds.push_back(seconds_since(t0));
    }
    p.median_s = std::max(median_of(p.seconds), 1e-12);
    p.tok_per_s = double(p.tokens) / p.median_s;
    p.flops = 2.0 * (double(p.linear_params_per_token) * double(p.tokens) + double(p.lm_head_params));
    p.flop_per_s = p.flops / p.median_s;
    return p;
}

// The cuBLASLt BF16 reference of the prefill (gemm_reference): the decoder layers' linears at m = the
// prompt length (the lm_head runs on the last token only and is left out). Dense layers only: an MoE
// layer's experts each see a different number of rows.
gemm_reference cublas_prefill_reference(const model_runner& r, const bench_config& c, double prefill_s) {
    gemm_reference g;
#ifdef NIBBLE_HAVE_CUDA
    std::vector<gemm_reference_shape> shapes;
    for (const layer_weights& l : r.model().weights.layers) {
        if (l.moe) {
            g.error = "not for MoE layers (each expert sees its own number of rows)";
            return g;
        }
        for (const linear_weight* w : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) {
            if (w->n <= 0) continue;
            auto it = std::find_if(shapes.begin(), shapes.end(),
                                   [&](const gemm_reference_shape& s) { return s.n == w->n && s.k == w->k; });
            if (it == shapes.end())
                shapes.push_back({w->n, w->k, 1, 0.0});
            else
                ++it->count;
        }
    }
    const size_t l2 = cuda_device_query(0).l2_bytes;
    for (gemm_reference_shape& s : shapes) {
        if (s.k < 32 || s.k % 32) {
            g.error = fmt::format("layer shape {}x{}: k is not a multiple of 32", s.n, s.k);
            return g;
        }
        const std::vector<linear_bench_result> res =
            linear_bench_run(s.n, s.k, {c.prompt_len}, {linear_bench_cublaslt_bf16}, int(c.reps), l2);
        if (res.empty() || !res[0].ok) {
            g.error = fmt::format("cuBLASLt BF16 on {}x{} at m = {}: {}", s.n, s.k, c.prompt_len,
                                  res.empty() ? "no result" : res[0].error);
            return g;
        }
        s.seconds = res[0].seconds;
        g.linear_s += double(s.count) * s.seconds;
    }
    g.shapes = shapes;
    g.fraction = g.linear_s / std::max(prefill_s, 1e-12);
    g.ran = true;
#else
    (void)r, (void)c, (void)prefill_s;
#endif
    return g;
}

decode_figures measure_decode(model_runner& r, const bench_config& c, int64_t batch, bool graphs,
                              uint64_t weight_bytes, double copy_gbps) {
    r.set_step_graphs(graphs);
    const int64_t V = r.config().vocab_size;
    const size_t B = size_t(batch);
    std::vector<int32_t> slots(B), ids(B), pos(B);
    for (size_t b = 0; b < B; ++b) {
        std::vector<int32_t> prompt = bench_token_ids(c.prompt_len, V, 1000 + b);
        std::vector<float> logits = r.prefill(int32_t(b), prompt, 0);
        slots[b] = int32_t(b);
        ids[b] = argmax_of(logits);
        pos[b] = int32_t(c.prompt_len);
    }
    std::vector<int32_t> rows(B);
    for (size_t b = 0; b < B; ++b) rows[b] = int32_t(b);
    std::vector<double> ms;
    double context_sum = 0;
    for (int64_t step = 0; step < c.gen_len; ++step) {
        auto t0 = clock_type::now();
        // As the engine samples: logits stay on the device, each row reduced there to its top entry.
        r.step_device(slots, ids, pos, rows);
        const model_runner::top_k_lists top = r.top_k(1);  // synchronizes
        const double s = seconds_since(t0);
        if (step >= k_warmup_steps) {
            ms.push_back(s * 1e3);
            for (int32_t p : pos) context_sum += double(p) + 1.0;  // the new position is read too
        }
        for (size_t b = 0; b < B; ++b) {
            ids[b] = top.ids[b];
            ++pos[b];
        }
    }
    decode_figures d;
    d.batch = batch;
    d.graphs = graphs;
    d.steps_timed = int64_t(ms.size());
    d.ms_per_step = std::max(median_of(ms), 1e-9);
    d.ms_min = *std::min_element(ms.begin(), ms.end());
    d.ms_max = *std::max_element(ms.begin(), ms.end());
    d.tok_per_s = double(batch) / (d.ms_per_step * 1e-3);
    d.mean_context = context_sum / double(ms.size() * B);
    d.kv_bytes = double(batch) * d.mean_context * double(r.kv_bytes_per_position());
    d.bytes = double(weight_bytes) + d.kv_bytes;
    d.gbps = d.bytes / (d.ms_per_step * 1e-3) / 1e9;
    d.roofline_pct = 100.0 * d.gbps / copy_gbps;
    d.bound_tok_per_s = double(batch) * copy_gbps * 1e9 / d.bytes;
    return d;
}

nlohmann::ordered_json decode_json(const decode_figures& d) {
    return {{"batch", d.batch},
            {"graphs", d.graphs},
            {"steps_timed", d.steps_timed},
            {"ms_per_step", d.ms_per_step},
            {"ms_per_step_min", d.ms_min},
            {"ms_per_step_max", d.ms_max},
            {"tok_per_s", d.tok_per_s},
            {"mean_context", d.mean_context},
            {"kv_bytes_per_step", d.kv_bytes},
            {"bytes_per_step", d.bytes},
            {"achieved_gbps", d.gbps},
            {"roofline_pct", d.roofline_pct},
            {"bound_tok_per_s", d.bound_tok_per_s}};
}

struct report {
    const bench_config& c;
    std::string device_name, date, scheme, quantization, kv_dtype;
    const model_bytes& mb;
    uint64_t kv_bytes_per_position;
    uint64_t cache_bytes;
    uint64_t device_bytes;  // device memory after loading (0 on the CPU)
    roofline roof;
    prefill_figures prefill;
    std::vector<batch_row> rows;
};

std::string model_label(const std::string& dir) {
    std::filesystem::path p(dir);
    if (p.filename().empty()) p = p.parent_path();
    return p.filename().string();
}

void print_json(const report& rep) {
    nlohmann::ordered_json j;
    j["device"] = rep.c.device;
    j["device_name"] = rep.device_name;
#ifdef NIBBLE_HAVE_CUDA
    if (rep.c.device == "cuda") {
        cuda_device_info g = cuda_device_query(0);
        j["gpu"] = {{"name", g.name},         {"sm", fmt::format("{}.{}", g.sm_major, g.sm_minor)},
                    {"n_sms", g.n_sms},       {"memory_bytes", g.memory_bytes},
                    {"l2_bytes", g.l2_bytes}, {"memory_bus_bits", g.memory_bus_bits}};
    }
#endif
    j["date"] = rep.date;
    j["model"] = rep.c.dir;
    j["quantization"] = rep.quantization;
    j["scheme"] = rep.scheme;
    nlohmann::ordered_json formats;
    for (const role_bytes& r : rep.mb.roles) formats[r.role] = r.formats;
    j["weight_formats"] = formats;
    j["kv_cache_dtype"] = rep.kv_dtype;
    j["device_bytes"] = rep.device_bytes;
    j["copy_bandwidth"] = {{"gbps", rep.roof.gbps}, {"bytes", rep.roof.bytes}, {"method", rep.roof.method}};
    j["weight_bytes_per_token"] = rep.mb.weight_bytes_per_token;
    j["kv_bytes_per_position"] = rep.kv_bytes_per_position;
    j["cache_bytes"] = rep.cache_bytes;
    j["prompt_len"] = rep.c.prompt_len;
    j["gen_len"] = rep.c.gen_len;
    j["warmup_steps"] = k_warmup_steps;
    const prefill_figures& p = rep.prefill;
    j["prefill"] = {{"tokens", p.tokens},
                    {"reps", rep.c.reps},
                    {"seconds", p.seconds},
                    {"median_s", p.median_s},
                    {"tok_per_s", p.tok_per_s},
                    {"linear_params_per_token", p.linear_params_per_token},
                    {"lm_head_params", p.lm_head_params},
                    {"flops", p.flops},
                    {"gflop_per_s", p.flop_per_s / 1e9}};
    if (rep.c.device == "cuda") {
        nlohmann::ordered_json g;
        if (p.cublas.ran) {
            nlohmann::ordered_json shapes = nlohmann::ordered_json::array();
            for (const gemm_reference_shape& s : p.cublas.shapes)
                shapes.push_back({{"n", s.n}, {"k", s.k}, {"count", s.count}, {"seconds", s.seconds}});
            g = {{"linear_s", p.cublas.linear_s}, {"fraction", p.cublas.fraction}, {"shapes", shapes}};
        } else {
            g = {{"error", p.cublas.error}};
        }
        j["prefill"]["cublas_bf16_reference"] = g;
    }
    nlohmann::ordered_json dec = nlohmann::ordered_json::array();
    for (const batch_row& row : rep.rows) {
        nlohmann::ordered_json d = decode_json(row.main);
        if (row.eager) {
            d["eager"] = decode_json(*row.eager);
            d["graph_speedup"] = row.eager->ms_per_step / row.main.ms_per_step;
        }
        dec.push_back(d);
    }
    j["decode"] = dec;
    std::printf("%s\n", j.dump(2).c_str());
}

void print_markdown(const report& rep) {
    std::printf("Roofline, measured in the same run on %s: %.0f GB/s (%s).\n\n", rep.device_name.c_str(),
                rep.roof.gbps, rep.roof.method.c_str());
    std::printf(
        "| GPU | date | model | scheme | batch | tok/s | ms/step | GB/s | %% of roofline | graphs |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
    const std::string model = model_label(rep.c.dir);
    auto row = [&](const decode_figures& d) {
        std::printf("| %s | %s | %s | %s | %lld | %.1f | %.3f | %.1f | %.1f | %s |\n",
                    rep.device_name.c_str(), rep.date.c_str(), model.c_str(), rep.scheme.c_str(),
                    (long long)d.batch, d.tok_per_s, d.ms_per_step, d.gbps, d.roofline_pct,
                    d.graphs ? "on" : "off");
    };
    for (const batch_row& r : rep.rows) {
        row(r.main);
        if (r.eager) row(*r.eager);
    }
}

void print_table(const report& rep) {
    const bench_config& c = rep.c;
    std::printf("\nnibble bench, %s: %s (%s; %s), KV cache %s\n", rep.date.c_str(), c.dir.c_str(),
                rep.quantization.c_str(), rep.scheme.c_str(), rep.kv_dtype.c_str());
    std::printf("device:     %s, %s\n", c.device.c_str(), rep.device_name.c_str());
    std::printf("roofline:   %.2f GB/s (%s)\n", rep.roof.gbps, rep.roof.method.c_str());
    std::printf("per step:   %.3f MB of weights + %.2f KB of KV per context position per sequence\n",
                rep.mb.weight_bytes_per_token / 1e6, rep.kv_bytes_per_position / 1e3);
    if (rep.device_bytes > 0)
        std::printf(
            "memory:     %.3f GB on the device after loading (weights as stored, KV cache, buffers)\n",
            double(rep.device_bytes) / 1e9);
    if (rep.mb.weight_bytes_per_token < rep.cache_bytes)
        std::printf("note:       the weights fit in the %.0f MiB %s: decode may pass the roofline\n",
                    double(rep.cache_bytes) / double(1 << 20),
                    c.device == "cuda" ? "L2 cache" : "last-level cache");
    const prefill_figures& p = rep.prefill;
    std::printf(
        "prefill:    %lld tokens in %.3f ms (median of %lld): %.1f tok/s, %.2f GFLOP/s (linear layers)\n",
        (long long)p.tokens, p.median_s * 1e3, (long long)c.reps, p.tok_per_s, p.flop_per_s / 1e9);
    if (c.device == "cuda") {
        if (p.cublas.ran)
            std::printf(
                "            its linear layers as cuBLASLt BF16 GEMMs alone (same shapes, m = %lld): %.3f "
                "ms, "
                "so the whole prefill runs at %.1f %% of that rate\n",
                (long long)p.tokens, p.cublas.linear_s * 1e3, 100.0 * p.cublas.fraction);
        else
            std::printf("            cuBLASLt BF16 reference: %s\n", p.cublas.error.c_str());
    }
    std::printf("decode:     prompt %lld + %lld steps, median of the last %lld, graphs %s\n\n",
                (long long)c.prompt_len, (long long)c.gen_len, (long long)(c.gen_len - k_warmup_steps),
                c.compare_eager ? "on vs off" : (c.eager ? "off" : "on"));
    std::printf("%6s %10s %11s %10s %11s %12s %13s", "batch", "ms/step", "tok/s", "GB/s", "% roofline",
                "bound tok/s", "MB per step");
    if (c.compare_eager) std::printf(" %14s %12s %9s", "eager ms/step", "eager tok/s", "speed-up");
    std::printf("\n");
    for (const batch_row& r : rep.rows) {
        const decode_figures& d = r.main;
        std::printf("%6lld %10.3f %11.1f %10.2f %11.1f %12.1f %13.3f", (long long)d.batch, d.ms_per_step,
                    d.tok_per_s, d.gbps, d.roofline_pct, d.bound_tok_per_s, d.bytes / 1e6);
        if (r.eager)
            std::printf(" %14.3f %12.1f %8.2fx", r.eager->ms_per_step, r.eager->tok_per_s,
                        r.eager->ms_per_step / d.ms_per_step);
        std::printf("\n");
    }
}

}  // namespace

int cmd_bench(command_args args) {
    // Kernel mode (`nibble bench --kernels ...`) and serving mode (`nibble bench serve ...`) are
    // dispatched here, before the end-to-end flags are parsed.
    if (!args.empty() && args[0] == "--kernels") return cmd_bench_kernels(args.subspan(1));
    if (!args.empty() && args[0] == "serve") return cmd_bench_serve(args.subspan(1));
    if (std::find(args.begin(), args.end(), "--help") != args.end()) {
        std::printf("usage: %s\n", k_usage);
        return 0;
    }
    const bench_config c = parse(args);
    check_context(c);
    const bool progress = !c.json && !c.markdown;
    auto note = [&](const std::string& s) {
        if (progress) std::fprintf(stderr, "%s\n", s.c_str());
    };

    roofline roof = measure_roofline(c);
    note(fmt::format("roofline: {:.2f} GB/s ({})", roof.gbps, roof.method));

    runner_options opt;
    opt.device = c.device;
    opt.max_ctx = int32_t(c.prompt_len + c.gen_len + k_ctx_margin);
    opt.n_slots = int32_t(c.max_batch);
    opt.max_step = int32_t(std::max(c.prompt_len, c.max_batch));
    opt.load_tokenizer = false;
    opt.kv_dtype = c.kv;
    opt.step_graphs = !c.eager;
    model_runner r(c.dir, opt);
    if (r.max_ctx() < opt.max_ctx)
        fail("--prompt-len {} + --gen-len {} do not fit the runner's context of {} positions", c.prompt_len,
             c.gen_len, r.max_ctx());
    const model_bytes mb = model_bytes_of(r.config(), r.model().weights);

    report rep{c,
               device_name(c),
               utc_date(),
               scheme_label(mb),
               r.model().quant.describe(),
               kv_cache_dtype_name(r.device().kv_dtype()),
               mb,
               r.kv_bytes_per_position(),
               cache_bytes(c),
               r.device_bytes(),
               roof,
               {},
               {}};

    rep.prefill = measure_prefill(r, c, mb);
    note(fmt::format("prefill: {} tokens, {:.1f} tok/s", rep.prefill.tokens, rep.prefill.tok_per_s));
    if (c.device == "cuda") {
        rep.prefill.cublas = cublas_prefill_reference(r, c, rep.prefill.median_s);
        if (rep.prefill.cublas.ran)
            note(fmt::format(
                "prefill reference: the linear GEMMs on cuBLASLt BF16 take {:.3f} ms ({:.1f} % of "
                "the prefill's time)",
                rep.prefill.cublas.linear_s * 1e3, 100.0 * rep.prefill.cublas.fraction));
    }

    for (int64_t b : c.batches) {
        batch_row row;
        row.main = measure_decode(r, c, b, !c.eager, mb.weight_bytes_per_token, roof.gbps);
        note(fmt::format("decode batch {} (graphs {}): {:.3f} ms/step, {:.1f} tok/s, {:.1f} % of roofline", b,
                         row.main.graphs ? "on" : "off", row.main.ms_per_step, row.main.tok_per_s,
                         row.main.roofline_pct));
        if (c.compare_eager) {
            row.eager = measure_decode(r, c, b, false, mb.weight_bytes_per_token, roof.gbps);
            note(fmt::format("decode batch {} (graphs off): {:.3f} ms/step, {:.1f} tok/s", b,
                             row.eager->ms_per_step, row.eager->tok_per_s));
        }
        rep.rows.push_back(row);
    }

    if (c.json)
        print_json(rep);
    else if (c.markdown)
        print_markdown(rep);
    else
        print_table(rep);
    return 0;
}

}  // namespace nibble
