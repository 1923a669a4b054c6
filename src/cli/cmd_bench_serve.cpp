// nibble bench serve --base-url URL [--endpoint /v1/completions|/v1/chat/completions] [--model NAME]
//                    [--dataset random|FILE] [--num-prompts N] [--max-concurrency C]
//                    [--request-rate R|inf] [--random-input-len I] [--random-output-len O] [--seed S]
//                    [--tokenizer DIR] [--ignore-eos] [--json]
// `vllm bench serve` against any OpenAI-compatible server (shared/spec/serving.md 2.1): the same
// requests, timing points and metrics (engine/bench_serve_metrics.h), the same result table.
//
// Requests: completions {model, prompt, repetition_penalty 1.0, max_tokens}, chat {model, messages
// [{role user, content [{type text, text}]}], max_completion_tokens}, both with stream true and
// stream_options.include_usage, plus ignore_eos with --ignore-eos; OPENAI_API_KEY, when set, is sent as
// a Bearer token. Output tokens come from the usage chunk (re-tokenized text when the server sends
// none). A request fails (counted, not fatal) on a transport error, a non-200 status, an error event
// or a stream without a chunk holding choices.
//
// Datasets: `random` (vLLM's RandomDataset without prefix and range ratio: --random-input-len minus
// the tokenizer's special tokens of ids (offset + i + j) mod |vocab without added tokens|, decoded,
// re-encoded and truncated or filled up to 10 times; prompt length = the final id count), or a JSONL
// FILE of {"prompt": TEXT} or {"messages": [...]} lines with optional "max_tokens" (else
// --random-output-len), cycled when shorter than --num-prompts; input tokens are the prompt's tokens
// (the messages' text for chat). The tokenizer: --tokenizer, else the folder the server reports as
// the model's `root` (or --model) when it is a local folder with tokenizer.json, else the bundled model.
//
// Run: --model defaults to the first id of GET /v1/models; one test request first (failing it is
// fatal); then up to --max-concurrency threads (default num-prompts) take the requests in order, each
// sent at its arrival offset (all at once for rate inf, else Poisson arrivals seeded by --seed) or when
// a thread frees. Duration: first dispatch to last completion. Output: the table (stdout; progress on
// stderr) or --json (one object: configuration, metrics and per-request lists; nothing else printed).
#include <httplib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "cli/args.h"
#include "cli/bench_util.h"
#include "core/error.h"
#include "engine/bench_serve_metrics.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

const char* k_usage =
    "nibble bench serve --base-url URL [--endpoint /v1/completions|/v1/chat/completions] [--model NAME]\n"
    "                   [--dataset random|FILE] [--num-prompts N] [--max-concurrency C]\n"
    "                   [--request-rate R|inf] [--random-input-len I] [--random-output-len O] [--seed S]\n"
    "                   [--tokenizer DIR] [--ignore-eos] [--json]";

constexpr int k_connect_timeout_s = 10;
constexpr int k_read_timeout_s = 3600;  // between two reads of one response
constexpr int k_max_retry = 10;         // decode / re-encode rounds of a random prompt

struct config {
    std::string base_url, origin, prefix;  // origin "http://host:port", prefix a path before endpoints
    std::string endpoint = "/v1/completions", model, dataset = "random", tokenizer_dir;
    int64_t num_prompts = 1000, max_concurrency = 0, input_len = 1024, output_len = 128;
    uint64_t seed = 0;
    double request_rate = INFINITY;
    bool chat = false, ignore_eos = false, json_out = false;
};

struct sample {
    json prompt;  // a string, or a messages array
    int64_t prompt_len = 0, output_len = 0;
};

// "http[s]://host[:port][/prefix]" -> origin and prefix (no trailing '/').
void split_base_url(config& c) {
    std::string u = c.base_url;
    while (!u.empty() && u.back() == '/') u.pop_back();
    const size_t sep = u.find("://");
    const std::string scheme = sep == std::string::npos ? "" : u.substr(0, sep);
    if (scheme != "http" && scheme != "https")
        fail("--base-url: '{}' is not an http:// or https:// URL", c.base_url);
    const size_t slash = u.find('/', sep + 3);
    c.origin = u.substr(0, slash);
    c.prefix = slash == std::string::npos ? "" : u.substr(slash);
    if (c.origin.size() == sep + 3) fail("--base-url: '{}' has no host", c.base_url);
}

config parse(command_args args) {
    arg_parser a(args,
                 {"--base-url", "--endpoint", "--model", "--dataset", "--num-prompts", "--max-concurrency",
                  "--request-rate", "--random-input-len", "--random-output-len", "--seed", "--tokenizer"},
                 {"--ignore-eos", "--json", "--help"});
    a.expect_positionals(0, 0, k_usage);
    config c;
    if (!a.get("--base-url")) fail("--base-url is required; usage: {}", k_usage);
    c.base_url = *a.get("--base-url");
    split_base_url(c);
    c.endpoint = a.get_or("--endpoint", c.endpoint);
    if (c.endpoint.empty() || c.endpoint[0] != '/' || !c.endpoint.ends_with("completions"))
        fail("--endpoint: '{}' is not a completions path (/v1/completions or /v1/chat/completions)",
             c.endpoint);
    c.chat = c.endpoint.ends_with("chat/completions");
    c.model = a.get_or("--model", "");
    c.dataset = a.get_or("--dataset", c.dataset);
    c.tokenizer_dir = a.get_or("--tokenizer", "");
    c.num_prompts = a.get_int("--num-prompts", c.num_prompts);
    c.max_concurrency = a.get_int("--max-concurrency", 0);
    c.input_len = a.get_int("--random-input-len", c.input_len);
    c.output_len = a.get_int("--random-output-len", c.output_len);
    c.request_rate = a.get_double("--request-rate", INFINITY);
    const int64_t seed = a.get_int("--seed", 0);
    if (c.num_prompts < 1) fail("--num-prompts must be at least 1 (got {})", c.num_prompts);
    if (a.has("--max-concurrency") && c.max_concurrency < 1)
        fail("--max-concurrency must be at least 1 (got {})", c.max_concurrency);
    if (c.input_len < 1) fail("--random-input-len must be at least 1 (got {})", c.input_len);
    if (c.output_len < 1) fail("--random-output-len must be at least 1 (got {})", c.output_len);
    if (!(c.request_rate > 0)) fail("--request-rate must be positive or inf (got {})", c.request_rate);
    if (seed < 0) fail("--seed must not be negative (got {})", seed);
    c.seed = uint64_t(seed);
    c.ignore_eos = a.has("--ignore-eos");
    c.json_out = a.has("--json");
    return c;
}

httplib::Headers auth_headers() {
    httplib::Headers h;
    if (const char* key = std::getenv("OPENAI_API_KEY"); key && *key)
        h.emplace("Authorization", std::string("Bearer ") + key);
    return h;
}

std::unique_ptr<httplib::Client> make_client(const config& c) {
    auto cl = std::make_unique<httplib::Client>(c.origin);
    if (!cl->is_valid()) fail("--base-url: cannot make a client for '{}'", c.base_url);
    cl->set_connection_timeout(k_connect_timeout_s);
    cl->set_read_timeout(k_read_timeout_s);
    cl->set_write_timeout(k_read_timeout_s);
    return cl;
}

// The first model of GET /v1/models: {"id", "root"}.
json first_model(const config& c) {
    const std::string url = c.base_url + "/v1/models";
    auto res = make_client(c)->Get(c.prefix + "/v1/models", auth_headers());
    if (!res) fail("cannot reach {}: {}", url, httplib::to_string(res.error()));
    if (res->status != 200)
        fail("{} answered HTTP {}: {}{}", url, res->status, res->body,
             c.prefix.ends_with("/v1") ? " (--base-url is the server's root, without /v1)" : "");
    json j = json::parse(res->body, nullptr, false);
    if (!j.is_object() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() ||
        !j["data"][0].contains("id") || !j["data"][0]["id"].is_string())
        fail("{} lists no model (give --model)", url);
    return j["data"][0];
}

bool is_tokenizer_dir(const std::string& d) {
    std::error_code ec;
    return !d.empty() && std::filesystem::is_regular_file(std::filesystem::path(d) / "tokenizer.json", ec);
}

// The ids a random prompt is drawn from: the base vocabulary (no added tokens).
std::vector<int32_t> allowed_ids(const tokenizer& tok) {
    std::vector<bool> added(size_t(tok.n_vocab()), false);
    for (const added_token& t : tok.added_tokens())
        if (t.id >= 0 && t.id < tok.n_vocab()) added[size_t(t.id)] = true;
    std::vector<int32_t> ids;
    for (int32_t id = 0; id < tok.n_vocab(); ++id)
        if (!added[size_t(id)] && !tok.is_special(id) && !tok.token_text(id).empty()) ids.push_back(id);
    if (ids.empty()) fail("the tokenizer has no ordinary tokens to draw random prompts from");
    return ids;
}

using note_fn = std::function<void(const std::string&)>;

std::vector<sample> random_dataset(const tokenizer& tok, const config& c, const note_fn& note) {
    const int64_t n_special = int64_t(tok.encode("", true).size());
    const int64_t len = std::max<int64_t>(0, c.input_len - n_special);
    if (len < 1)
        fail("--random-input-len {} is too small: the tokenizer adds {} special tokens", c.input_len,
             n_special);
    const std::vector<int32_t> allowed = allowed_ids(tok);
    std::mt19937_64 rng(c.seed);
    std::uniform_int_distribution<size_t> pick(0, allowed.size() - 1);
    std::vector<sample> out;
    int64_t mismatch = 0;
    for (int64_t i = 0; i < c.num_prompts; ++i) {
        const size_t offset = pick(rng);
        std::vector<int32_t> ids;
        for (int64_t j = 0; j < len; ++j) ids.push_back(allowed[(offset + size_t(i + j)) % allowed.size()]);
        std::string text;
        for (int attempt = 0;; ++attempt) {
            text = tok.decode(ids);
            ids = tok.encode(text, false);
            if (int64_t(ids.size()) == len || attempt == k_max_retry) break;
            if (int64_t(ids.size()) > len)
                ids.resize(size_t(len));
            else
                while (int64_t(ids.size()) < len) ids.push_back(allowed[pick(rng)]);
        }
        out.push_back({text, int64_t(ids.size()), c.output_len});
        mismatch += int64_t(ids.size()) - len;
    }
    if (mismatch != 0)
        note(
            fmt::format("Across all generated prompts, there were {} {} tokens than expected after decoding "
                        "and re-encoding.",
                        std::abs(mismatch), mismatch > 0 ? "more" : "fewer"));
    return out;
}

std::vector<sample> file_dataset(const tokenizer& tok, const config& c) {
    std::ifstream f(c.dataset);
    if (!f) fail("--dataset: cannot read '{}' (random or a JSONL file)", c.dataset);
    std::vector<sample> rows;
    std::string line;
    for (int64_t n = 1; std::getline(f, line); ++n) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        json j = json::parse(line, nullptr, false);
        auto bad = [&](const char* what) { fail("{}:{}: {}", c.dataset, n, what); };
        if (!j.is_object()) bad("not a JSON object");
        sample s;
        s.output_len = c.output_len;
        if (j.contains("max_tokens")) {
            if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int64_t>() < 1)
                bad("\"max_tokens\" must be a positive integer");
            s.output_len = j["max_tokens"].get<int64_t>();
        }
        if (j.contains("prompt") && j["prompt"].is_string()) {
            s.prompt = j["prompt"];
            s.prompt_len = int64_t(tok.encode(s.prompt.get<std::string>(), false).size());
        } else if (j.contains("messages") && j["messages"].is_array() && !j["messages"].empty()) {
            if (!c.chat) bad("a \"messages\" line needs --endpoint /v1/chat/completions");
            s.prompt = j["messages"];
            for (const json& m : s.prompt) {
                if (!m.is_object() || !m.contains("content")) bad("a message without content");
                const json& content = m["content"];
                if (content.is_string())
                    s.prompt_len += int64_t(tok.encode(content.get<std::string>(), false).size());
                if (content.is_array())
                    for (const json& part : content)
                        if (part.is_object() && part.contains("text") && part["text"].is_string())
                            s.prompt_len +=
                                int64_t(tok.encode(part["text"].get<std::string>(), false).size());
            }
        } else {
            bad("needs a string \"prompt\" or a non-empty \"messages\" array");
        }
        rows.push_back(std::move(s));
    }
    if (rows.empty()) fail("--dataset: '{}' has no prompts", c.dataset);
    std::vector<sample> out;
    for (int64_t i = 0; i < c.num_prompts; ++i) out.push_back(rows[size_t(i) % rows.size()]);
    return out;
}

std::string request_body(const config& c, const sample& s) {
    json b = {{"model", c.model}};
    if (c.chat) {
        b["messages"] =
            s.prompt.is_string()
                ? json::array({{{"role", "user"},
                                {"content", json::array({{{"type", "text"}, {"text", s.prompt}}})}}})
                : s.prompt;
        b["max_completion_tokens"] = s.output_len;
    } else {
        b["prompt"] = s.prompt;
        b["repetition_penalty"] = 1.0;
        b["max_tokens"] = s.output_len;
    }
    b["stream"] = true;
    b["stream_options"] = {{"include_usage", true}};
    if (c.ignore_eos) b["ignore_eos"] = true;
    return b.dump();
}

double seconds(clock_type::time_point t, clock_type::time_point epoch) {
    return std::chrono::duration<double>(t - epoch).count();
}

// One streamed request, timed as vLLM's request functions time it.
request_record send_request(const config& c, const sample& s, const tokenizer& tok,
                            clock_type::time_point epoch) {
    request_record r;
    r.prompt_len = s.prompt_len;
    auto cl = make_client(c);
    httplib::Request req;
    req.method = "POST";
    req.path = c.prefix + c.endpoint;
    req.headers = auth_headers();
    req.headers.emplace("Content-Type", "application/json");
    req.body = request_body(c, s);
    int status = 0;
    std::string error_body, text;
    sse_splitter sse;
    bool first = false;
    double last = 0;
    int64_t usage_tokens = 0;
    auto on_event = [&](const std::string& data) {
        const double now = seconds(clock_type::now(), epoch);
        if (data == "[DONE]") return true;
        json j = json::parse(data, nullptr, false);
        if (!j.is_object() || (j.contains("error") && !j["error"].is_null())) {
            r.error = j.is_object() ? "error event: " + j["error"].dump()
                                    : "unparsable event: " + data.substr(0, 200);
            return false;
        }
        if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
            if (!first)
                r.ttft = now - r.start;
            else
                r.itl.push_back(now - last);
            first = true;
            last = now;
            const json& ch = j["choices"][0];
            const json* piece = c.chat ? (ch.contains("delta") ? &ch["delta"] : nullptr) : &ch;
            if (piece && piece->is_object())
                for (const char* key : {"text", "content", "reasoning_content", "reasoning"})
                    if (piece->contains(key) && (*piece)[key].is_string()) {
                        text += (*piece)[key].get<std::string>();
                        break;
                    }
        } else if (j.contains("usage") && j["usage"].is_object() &&
                   j["usage"].contains("completion_tokens") && j["usage"]["completion_tokens"].is_number()) {
            usage_tokens = j["usage"]["completion_tokens"].get<int64_t>();
        }
        return true;
    };
    req.response_handler = [&](const httplib::Response& res) {
        status = res.status;
        return true;
    };
    req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
        if (status != 200) {
            error_body.append(d, n);
            return true;
        }
        for (const std::string& ev : sse.push(std::string_view(d, n)))
            if (!on_event(ev)) return false;
        return true;
    };
    r.start = seconds(clock_type::now(), epoch);
    auto res = cl->send(req);
    if (status == 200 && r.error.empty())
        if (std::string tail = sse.finish(); !tail.empty()) on_event(tail);
    if (r.error.empty() && !res) r.error = "transport error: " + httplib::to_string(res.error());
    if (r.error.empty() && status != 200)
        r.error = fmt::format("HTTP {}: {}", status, error_body.substr(0, 500));
    if (r.error.empty() && !first) r.error = "the stream held no chunk with choices";
    if (!r.error.empty()) return r;
    r.success = true;
    r.latency = last - r.start;
    r.output_tokens = usage_tokens > 0 ? usage_tokens : int64_t(tok.encode(text, false).size());
    return r;
}

struct run_result {
    std::vector<request_record> records;
    double duration = 0;
};

run_result run_benchmark(const config& c, const std::vector<sample>& samples, const tokenizer& tok) {
    const std::vector<double> offsets = arrival_offsets(int64_t(samples.size()), c.request_rate, c.seed);
    const size_t n_threads =
        size_t(c.max_concurrency > 0 ? std::min<int64_t>(c.max_concurrency, c.num_prompts) : c.num_prompts);
    run_result out;
    out.records.resize(samples.size());
    std::mutex m;
    size_t next = 0;
    const auto t0 = clock_type::now();
    auto worker = [&] {
        for (;;) {
            size_t i;
            {
                std::lock_guard<std::mutex> lock(m);
                if (next == samples.size()) return;
                i = next++;
            }
            std::this_thread::sleep_until(t0 + std::chrono::duration_cast<clock_type::duration>(
                                                   std::chrono::duration<double>(offsets[i])));
            try {
                out.records[i] = send_request(c, samples[i], tok, t0);
            } catch (const std::exception& e) {
                out.records[i].error = e.what();
            }
        }
    };
    std::vector<std::thread> threads;
    for (size_t t = 0; t < n_threads; ++t) threads.emplace_back(worker);
    for (std::thread& t : threads) t.join();
    out.duration = seconds(clock_type::now(), t0);
    return out;
}

std::string rate_text(double rate) {
    return std::isinf(rate) ? "inf" : fmt::format("{}", rate);
}

void print_table(const config& c, const serve_metrics& m) {
    auto row = [](const std::string& k, const std::string& v) {
        std::printf("%-40s %-10s\n", k.c_str(), v.c_str());
    };
    auto num = [&](const std::string& k, double v) { row(k, fmt::format("{:.2f}", v)); };
    auto block = [&](const char* title, const char* name, const metric_stats& s) {
        std::printf("%s\n", fmt::format("{:-^50}", title).c_str());
        num(fmt::format("Mean {} (ms):", name), s.mean_ms);
        num(fmt::format("Median {} (ms):", name), s.median_ms);
        num(fmt::format("P99 {} (ms):", name), s.p99_ms);
    };
    std::printf("%s\n", fmt::format("{:=^50}", " Serving Benchmark Result ").c_str());
    row("Successful requests:", std::to_string(m.completed));
    row("Failed requests:", std::to_string(m.failed));
    if (c.max_concurrency > 0) row("Maximum request concurrency:", std::to_string(c.max_concurrency));
    if (!std::isinf(c.request_rate)) num("Request rate configured (RPS):", c.request_rate);
    num("Benchmark duration (s):", m.duration);
    row("Total input tokens:", std::to_string(m.total_input));
    row("Total generated tokens:", std::to_string(m.total_output));
    num("Request throughput (req/s):", m.request_throughput);
    num("Output token throughput (tok/s):", m.output_throughput);
    num("Peak output token throughput (tok/s):", m.max_output_tokens_per_s);
    num("Peak concurrent requests:", double(m.max_concurrent_requests));
    num("Total Token throughput (tok/s):", m.total_token_throughput);
    block("Time to First Token", "TTFT", m.ttft);
    block("Time per Output Token (excl. 1st token)", "TPOT", m.tpot);
    block("Inter-token Latency", "ITL", m.itl);
    block("End-to-end Latency", "E2EL", m.e2el);
    std::printf("%s\n", std::string(50, '=').c_str());
}

// vLLM's saved-result keys: the configuration, the metrics and the per-request lists.
json result_json(const config& c, const run_result& run, const serve_metrics& m) {
    json j = {{"date", utc_date()},
              {"backend", c.chat ? "openai-chat" : "openai"},
              {"base_url", c.base_url},
              {"endpoint", c.endpoint},
              {"model_id", c.model},
              {"tokenizer_id", c.tokenizer_dir},
              {"dataset", c.dataset},
              {"num_prompts", c.num_prompts},
              {"request_rate", std::isinf(c.request_rate) ? json("inf") : json(c.request_rate)},
              {"burstiness", 1.0},
              {"max_concurrency", c.max_concurrency > 0 ? json(c.max_concurrency) : json(nullptr)},
              {"random_input_len", c.input_len},
              {"random_output_len", c.output_len},
              {"seed", c.seed},
              {"ignore_eos", c.ignore_eos},
              {"duration", m.duration},
              {"completed", m.completed},
              {"failed", m.failed},
              {"total_input_tokens", m.total_input},
              {"total_output_tokens", m.total_output},
              {"request_throughput", m.request_throughput},
              {"output_throughput", m.output_throughput},
              {"total_token_throughput", m.total_token_throughput},
              {"max_output_tokens_per_s", m.max_output_tokens_per_s},
              {"max_concurrent_requests", m.max_concurrent_requests}};
    for (const auto& [name, s] :
         {std::pair{"ttft", m.ttft}, {"tpot", m.tpot}, {"itl", m.itl}, {"e2el", m.e2el}}) {
        j[fmt::format("mean_{}_ms", name)] = s.mean_ms;
        j[fmt::format("median_{}_ms", name)] = s.median_ms;
        j[fmt::format("std_{}_ms", name)] = s.std_ms;
        j[fmt::format("p99_{}_ms", name)] = s.p99_ms;
    }
    json input_lens = json::array(), output_lens = json::array(), ttfts = json::array(), itls = json::array(),
         latencies = json::array(), starts = json::array(), errors = json::array();
    for (const request_record& r : run.records) {
        input_lens.push_back(r.prompt_len);
        output_lens.push_back(r.success ? r.output_tokens : 0);
        ttfts.push_back(r.ttft);
        itls.push_back(r.itl);
        latencies.push_back(r.latency);
        starts.push_back(r.start);
        errors.push_back(r.error);
    }
    j["input_lens"] = input_lens;
    j["output_lens"] = output_lens;
    j["ttfts"] = ttfts;
    j["itls"] = itls;
    j["latencies"] = latencies;
    j["start_times"] = starts;
    j["errors"] = errors;
    return j;
}

}  // namespace

int cmd_bench_serve(command_args args) {
    if (std::find(args.begin(), args.end(), "--help") != args.end()) {
        std::printf("usage: %s\n", k_usage);
        return 0;
    }
    config c = parse(args);
    auto note = [&](const std::string& s) {
        if (!c.json_out) std::fprintf(stderr, "%s\n", s.c_str());
    };
    std::string root;
    if (c.model.empty()) {
        const json first = first_model(c);
        c.model = first["id"].get<std::string>();
        root = first.value("root", json()).is_string() ? first["root"].get<std::string>() : "";
    }
    if (c.tokenizer_dir.empty())
        c.tokenizer_dir = is_tokenizer_dir(root)      ? root
                          : is_tokenizer_dir(c.model) ? c.model
                                                      : default_model_dir();
    const tokenizer tok = tokenizer::load(c.tokenizer_dir);
    const std::vector<sample> samples =
        c.dataset == "random" ? random_dataset(tok, c, note) : file_dataset(tok, c);

    note(fmt::format("model {} at {}{}, tokenizer {}", c.model, c.base_url, c.endpoint, c.tokenizer_dir));
    note("Starting initial single prompt test run...");
    const request_record probe = send_request(c, samples[0], tok, clock_type::now());
    if (!probe.success)
        fail("the initial test request to {}{} failed ({}); check --base-url, --endpoint and --model",
             c.base_url, c.endpoint, probe.error);
    note("Initial test run completed. Starting main benchmark run...");
    note(fmt::format("Traffic request rate: {}", rate_text(c.request_rate)));
    note(fmt::format("Maximum request concurrency: {}",
                     c.max_concurrency > 0 ? std::to_string(c.max_concurrency) : std::string("None")));

    const run_result run = run_benchmark(c, samples, tok);
    const serve_metrics m = compute_serve_metrics(run.records, run.duration);
    if (c.json_out) {
        std::printf("%s\n", result_json(c, run, m).dump(2).c_str());
        return 0;
    }
    if (m.failed > 0) {
        note("Failed requests during benchmark run detected (capping to 10):");
        int64_t shown = 0;
        for (const request_record& r : run.records)
            if (!r.success && shown < 10) note(fmt::format("Error {}: {}", shown++, r.error));
    }
    print_table(c, m);
    return 0;
}

}  // namespace nibble
