// nibble serve over the paged KV cache, end to end on the bundled model: prefix-cache hits (counted in
// /metrics) give the same greedy output as a cold run, and a pool too small for every running sequence
// preempts and recomputes without changing any output.
#include <gtest/gtest.h>

#include <httplib.h>

#include <future>
#include <nlohmann/json.hpp>
#include <regex>
#include <vector>

#include "server/serve_util.h"

using namespace nibble;
using json = nlohmann::json;

namespace {

json complete(int port, const std::string& prompt, int max_tokens) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120);
    json body = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}, {"ignore_eos", true}};
    auto r = c.Post("/v1/completions", body.dump(), "application/json");
    if (!r || r->status != 200) return json();
    return json::parse(r->body, nullptr, false);
}

std::string text_of(const json& j) {
    return j.is_object() ? j["choices"][0]["text"].get<std::string>() : std::string("<no answer>");
}

// A counter of /metrics (0 when missing).
double metric(int port, const std::string& name) {
    httplib::Client c("127.0.0.1", port);
    auto r = c.Get("/metrics");
    if (!r) return -1;
    std::smatch m;
    const std::regex re("\n" + name + "\\{[^}]*\\} ([0-9.e+-]+)");
    return std::regex_search(r->body, m, re) ? std::stod(m[1]) : 0.0;
}

// A prompt of a few hundred tokens (many full 16-token blocks).
std::string long_prompt() {
    std::string p;
    for (int i = 0; i < 24; ++i)
        p += "def f" + std::to_string(i) + "(x):\n    return x * " + std::to_string(i) + "\n";
    return p;
}

}  // namespace

TEST(serve_paged, prefix_cache_hits_keep_greedy_output) {
    test::serve_process srv("--device cpu --max-num-seqs 2 --max-model-len 1024");
    ASSERT_TRUE(srv.ok()) << srv.log();
    const std::string p = long_prompt();
    const std::string cold = text_of(complete(srv.port(), p, 12));
    ASSERT_NE(cold, "<no answer>");
    EXPECT_EQ(metric(srv.port(), "vllm:prefix_cache_hits_total"), 0.0);
    const std::string warm = text_of(complete(srv.port(), p, 12));
    EXPECT_EQ(warm, cold) << "the same prompt again, its prefix from the cache";
    const double hits = metric(srv.port(), "vllm:prefix_cache_hits_total"),
                 queries = metric(srv.port(), "vllm:prefix_cache_queries_total");
    EXPECT_GE(hits, 160.0) << "most of the prompt's full blocks are hits";
    EXPECT_GT(queries, hits);
    // A prompt sharing only the start still hits that start and ends as a cold run of it does.
    const std::string p2 = p + "def g(y):\n";
    const std::string mixed = text_of(complete(srv.port(), p2, 8));
    EXPECT_GT(metric(srv.port(), "vllm:prefix_cache_hits_total"), hits);
    srv.terminate();
    test::serve_process cold_srv("--device cpu --max-num-seqs 2 --max-model-len 1024");
    ASSERT_TRUE(cold_srv.ok()) << cold_srv.log();
    EXPECT_EQ(text_of(complete(cold_srv.port(), p2, 8)), mixed);
}

TEST(serve_paged, no_enable_prefix_caching_turns_the_cache_off) {
    test::serve_process srv("--device cpu --max-num-seqs 2 --max-model-len 1024 --no-enable-prefix-caching");
    ASSERT_TRUE(srv.ok()) << srv.log();
    const std::string p = long_prompt();
    const std::string cold = text_of(complete(srv.port(), p, 8));
    EXPECT_EQ(text_of(complete(srv.port(), p, 8)), cold);
    EXPECT_EQ(metric(srv.port(), "vllm:prefix_cache_hits_total"), 0.0);
    EXPECT_GT(metric(srv.port(), "vllm:prefix_cache_queries_total"), 0.0);
}

TEST(serve_paged, preemption_recomputes_without_changing_outputs) {
    // 4 sequences of ~40 prompt + 48 generated tokens over 12 blocks of 16 positions (192): they cannot all
    // hold their blocks at once, so the latest are preempted and recomputed.
    test::serve_process small(
        "--device cpu --max-num-seqs 4 --max-model-len 160 --num-gpu-blocks-override 12");
    ASSERT_TRUE(small.ok()) << small.log();
    std::vector<std::string> prompts;
    for (int i = 0; i < 4; ++i)
        prompts.push_back("class Node" + std::to_string(i) +
                          ":\n    def __init__(self, value):\n        self.value =");
    std::vector<std::future<std::string>> answers;
    for (const std::string& p : prompts)
        answers.push_back(
            std::async(std::launch::async, [&, p] { return text_of(complete(small.port(), p, 48)); }));
    std::vector<std::string> got;
    for (auto& a : answers) got.push_back(a.get());
    EXPECT_GT(metric(small.port(), "vllm:num_preemptions_total"), 0.0) << small.log();
    EXPECT_EQ(metric(small.port(), "vllm:num_requests_running"), 0.0);
    small.terminate();
    test::serve_process big("--device cpu --max-num-seqs 1 --max-model-len 160");
    ASSERT_TRUE(big.ok()) << big.log();
    for (size_t i = 0; i < prompts.size(); ++i)
        EXPECT_EQ(got[i], text_of(complete(big.port(), prompts[i], 48))) << "request " << i;
}

TEST(serve_paged, rejects_a_pool_smaller_than_one_sequence) {
    test::serve_process srv("--device cpu --max-model-len 256 --num-gpu-blocks-override 8");
    EXPECT_FALSE(srv.ok());
    EXPECT_NE(srv.log().find("cannot hold one sequence of 256 positions"), std::string::npos) << srv.log();
}
