// nibble serve under load and at shutdown (bundled model, CPU, 127.0.0.1):
// - load_client.mjs (the official openai npm client) runs 16 streaming clients at once over 4 KV
//   slots, mixed with malformed requests and clients that disconnect; then `nibble bench serve`
//   against the same server has no failed request and the engine is left empty (SKIPPED without
//   node or the npm oracles).
// - SIGTERM and SIGINT with streams running and queued: every unfinished stream ends with an error
//   event and [DONE], an unfinished non-streaming request gets a 503 body, and the process exits 0
//   within a few seconds.
#include <gtest/gtest.h>

#include <httplib.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "server/serve_util.h"
#include "test_util.h"

using namespace nibble;
using json = nlohmann::json;

namespace {

std::string node_modules() {
    return std::string(NIBBLE_ORACLE_DIR) + "/node_modules";
}

bool have_openai_client() {
    return std::filesystem::exists(node_modules() + "/openai/package.json") &&
           std::system("node --version > /dev/null 2>&1") == 0;
}

// Runs a shell command; its exit status and its stdout + stderr.
std::pair<int, std::string> shell(const std::string& cmd) {
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return {-1, "popen failed"};
    std::string out;
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    const int st = pclose(p);
    return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

// The value of a /metrics line starting with `name{` (-1 when missing).
double metric(const std::string& body, const std::string& name) {
    const size_t at = body.find("\n" + name + "{");
    if (at == std::string::npos) return -1;
    const size_t sp = body.find("} ", at);
    return sp == std::string::npos ? -1 : std::stod(body.substr(sp + 2));
}

std::string get_metrics(int port) {
    httplib::Client c("127.0.0.1", port);
    auto r = c.Get("/metrics");
    return r ? r->body : "";
}

// One streaming request read as it arrives: its SSE data lines, and whether the response ended
// (any way: complete, or the connection closed).
struct live_stream {
    std::atomic<int> n_events{0};
    std::atomic<bool> ended{false};
    int status = 0;
    std::vector<std::string> data;  // the payload of each "data: " line
    std::string raw;

    void run(int port, const json& body) {
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(30);
        httplib::Request req;
        req.method = "POST";
        req.path = "/v1/completions";
        req.body = body.dump();
        req.set_header("Content-Type", "application/json");
        req.response_handler = [&](const httplib::Response& r) {
            status = r.status;
            return true;
        };
        req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
            raw.append(d, n);
            size_t pos;
            while ((pos = raw.find("\n\n")) != std::string::npos) {
                std::string ev = raw.substr(0, pos);
                raw.erase(0, pos + 2);
                if (ev.rfind("data: ", 0) == 0) data.push_back(ev.substr(6));
                ++n_events;
            }
            return true;
        };
        c.send(req);
        ended = true;
    }
};

// SIGTERM / SIGINT with 4 streams and one non-streaming request over 2 slots (2 running, 3 queued).
void check_shutdown(int sig) {
    test::serve_process srv("--max-num-seqs 2 --max-num-batched-tokens 32");
    ASSERT_TRUE(srv.ok()) << srv.log();
    const json body = {{"prompt", "def f(x):"}, {"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true}};
    std::vector<std::unique_ptr<live_stream>> streams;
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
        streams.push_back(std::make_unique<live_stream>());
        threads.emplace_back([&, s = streams.back().get()] { s->run(srv.port(), body); });
    }
    int plain_status = 0;
    std::string plain_body;
    std::atomic<bool> plain_done{false};
    std::thread plain([&] {
        httplib::Client c("127.0.0.1", srv.port());
        c.set_read_timeout(30);
        json b = body;
        b["stream"] = false;
        if (auto r = c.Post("/v1/completions", b.dump(), "application/json")) {
            plain_status = r->status;
            plain_body = r->body;
        }
        plain_done = true;
    });
    // Every request in (running, queued or done), both slots busy (streams, or the plain request)
    // with a stream producing tokens, the rest queued. (The tiny model makes 2000 tokens in a few
    // seconds: on a slow machine one request may finish before the others start. A request that
    // reaches the server after the signal is answered 503 without a stream, so the signal waits
    // for all five.)
    const auto t0 = std::chrono::steady_clock::now();
    auto n_streaming = [&] {
        int n = 0;
        for (auto& s : streams) n += s->n_events > 2;
        return n;
    };
    auto busy = [&] {
        const std::string m = get_metrics(srv.port());
        const double running = metric(m, "vllm:num_requests_running");
        const double waiting = metric(m, "vllm:num_requests_waiting");
        int n_done = plain_done ? 1 : 0;
        for (auto& s : streams) n_done += s->ended ? 1 : 0;
        return n_streaming() >= 1 && running == 2 && waiting >= 1 && running + waiting + n_done >= 5;
    };
    while (!busy() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20))
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(busy()) << get_metrics(srv.port()) << srv.log();

    const auto t_sig = std::chrono::steady_clock::now();
    EXPECT_EQ(srv.terminate(sig), 0) << srv.log();
    const double exit_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_sig).count();
    EXPECT_LT(exit_s, 4.0);
    for (auto& t : threads) t.join();
    plain.join();
    const double end_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_sig).count();
    EXPECT_LT(end_s, 5.0);
    std::printf("signal %d after %.2f s of streaming: exit %.2f s later, every client done %.2f s later\n",
                sig, std::chrono::duration<double>(t_sig - t0).count(), exit_s, end_s);

    // Every stream: 200, then (tokens and) an error event naming the shutdown, [DONE], nothing
    // after; or, for one that finished before the signal, its finish_reason, [DONE].
    int n_cut = 0;
    for (size_t i = 0; i < streams.size(); ++i) {
        const live_stream& s = *streams[i];
        EXPECT_EQ(s.status, 200) << i;
        EXPECT_TRUE(s.raw.empty()) << i << ": " << s.raw;
        if (s.data.size() < 2) {
            ADD_FAILURE() << i << ": " << s.data.size() << " events";
            continue;
        }
        EXPECT_EQ(s.data.back(), "[DONE]") << i;
        json last = json::parse(s.data[s.data.size() - 2], nullptr, false);
        if (!last.contains("error")) {
            EXPECT_EQ(last["choices"][0]["finish_reason"], "length") << i << ": " << last.dump();
            continue;
        }
        ++n_cut;
        EXPECT_EQ(last["error"]["message"], "server shutting down") << i;
        EXPECT_EQ(last["error"]["code"], 503) << i;
        EXPECT_EQ(last["error"]["type"], "ServiceUnavailableError") << i;
    }
    EXPECT_GE(n_cut, 2);
    json pbody = json::parse(plain_body, nullptr, false);
    if (plain_status == 200) {
        EXPECT_EQ(pbody["choices"][0]["finish_reason"], "length") << plain_body;
    } else {
        EXPECT_EQ(plain_status, 503) << plain_body;
        EXPECT_EQ(pbody["error"]["message"], "server shutting down") << plain_body;
    }
    // Gone: nothing listens any more.
    httplib::Client c("127.0.0.1", srv.port());
    c.set_connection_timeout(1);
    EXPECT_FALSE(c.Get("/health"));
}

}  // namespace

TEST(serve_load, sixteen_streams_with_bad_requests_then_bench_serve) {
    if (!have_openai_client())
        GTEST_SKIP() << "SKIPPED: no node or no openai npm package in " << node_modules();
    const auto t0 = std::chrono::steady_clock::now();
    test::serve_process srv(
        "--served-model-name tiny --max-num-seqs 4 --max-num-batched-tokens 64 "
        "--max-model-len 1024");
    ASSERT_TRUE(srv.ok()) << srv.log();
    const std::string url = "http://127.0.0.1:" + std::to_string(srv.port());
    auto [rc, out] = shell("timeout 90 node " + std::string(NIBBLE_LOAD_SCRIPT) + " " + node_modules() + " " +
                           url + "/v1 tiny 1024");
    EXPECT_EQ(rc, 0) << out << "\n" << srv.log();
    EXPECT_NE(out.find("\nok"), std::string::npos) << out;
    std::printf("%s", out.c_str());

    // The same server, still healthy, under nibble bench serve.
    auto b = test::run_nibble("bench serve --base-url " + url +
                              " --num-prompts 16 --max-concurrency 8 --random-input-len 24 "
                              "--random-output-len 12 --ignore-eos --json");
    ASSERT_EQ(b.exit_code, 0) << b.out;
    json j = json::parse(b.out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << b.out;
    EXPECT_EQ(j["completed"], 16) << j["errors"];
    EXPECT_EQ(j["failed"], 0) << j["errors"];
    EXPECT_EQ(j["total_output_tokens"], 16 * 12);

    // The engine publishes its counts after the step that ended the last request: poll a little.
    std::string m = get_metrics(srv.port());
    for (int i = 0; i < 50 && metric(m, "vllm:num_requests_running") != 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        m = get_metrics(srv.port());
    }
    EXPECT_EQ(metric(m, "vllm:num_requests_running"), 0) << m;
    EXPECT_EQ(metric(m, "vllm:num_requests_waiting"), 0) << m;
    EXPECT_EQ(srv.terminate(), 0) << srv.log();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(s, 100.0);
}

TEST(serve_load, sigterm_with_streams_in_flight) {
    check_shutdown(SIGTERM);
}

TEST(serve_load, sigint_with_streams_in_flight) {
    check_shutdown(SIGINT);
}
