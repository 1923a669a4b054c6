// nibble bench serve end to end against nibble serve (bundled model, 127.0.0.1): the random dataset
// on /v1/completions and /v1/chat/completions with --ignore-eos gives every request its exact output
// length, the metrics are positive and consistent with each other and with the duration; a JSONL file
// dataset; the table layout; a server that is not there and bad flags fail with clear messages.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/serve_util.h"
#include "test_util.h"

using namespace nibble;
using json = nlohmann::json;

namespace {

json bench_json(const std::string& args) {
    auto r = test::run_nibble("bench serve " + args + " --json");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    json j = json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.out;
    return j;
}

void check_consistent(const json& j, int64_t n, int64_t out_len) {
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j["completed"], n) << j["errors"];
    EXPECT_EQ(j["failed"], 0);
    EXPECT_EQ(j["total_output_tokens"], n * out_len);
    for (const json& o : j["output_lens"]) EXPECT_EQ(o, out_len);
    const double d = j["duration"];
    ASSERT_GT(d, 0);
    EXPECT_NEAR(j["request_throughput"].get<double>(), double(n) / d, 1e-9);
    EXPECT_NEAR(j["output_throughput"].get<double>(), double(n * out_len) / d, 1e-9);
    const double total = j["total_input_tokens"].get<double>() + j["total_output_tokens"].get<double>();
    EXPECT_NEAR(j["total_token_throughput"].get<double>(), total / d, 1e-9);
    for (const char* m : {"ttft", "tpot", "itl", "e2el"}) {
        EXPECT_GT(j[std::string("mean_") + m + "_ms"].get<double>(), 0) << m;
        EXPECT_LE(j[std::string("median_") + m + "_ms"].get<double>(),
                  j[std::string("p99_") + m + "_ms"].get<double>())
            << m;
    }
    EXPECT_LE(j["median_ttft_ms"].get<double>(), j["median_e2el_ms"].get<double>());
    EXPECT_LE(j["p99_e2el_ms"].get<double>(), d * 1000);
    EXPECT_GE(j["max_output_tokens_per_s"].get<double>(), 1);
    EXPECT_GE(j["max_concurrent_requests"].get<int64_t>(), 1);
    for (const json& t : j["ttfts"]) EXPECT_GT(t.get<double>(), 0);
}

}  // namespace

TEST(bench_serve, random_completions_and_chat) {
    test::serve_process srv("--max-num-seqs 4");
    ASSERT_TRUE(srv.ok()) << srv.log();
    const std::string url = "--base-url http://127.0.0.1:" + std::to_string(srv.port());
    const std::string common =
        " --num-prompts 6 --max-concurrency 3 --random-input-len 16 --random-output-len 8 --ignore-eos";

    json j = bench_json(url + common);
    check_consistent(j, 6, 8);
    EXPECT_EQ(j["backend"], "openai");
    EXPECT_EQ(j["model_id"], test::bundled_model());  // the first id of /v1/models
    // 16 ids each (the bundled tokenizer adds no special tokens), a few more where decoding and
    // re-encoding did not settle within vLLM's 10 rounds
    int64_t total_in = 0;
    for (const json& l : j["input_lens"]) {
        EXPECT_GE(l.get<int64_t>(), 16);
        EXPECT_LE(l.get<int64_t>(), 20);
        total_in += l.get<int64_t>();
    }
    EXPECT_EQ(j["total_input_tokens"], total_in);
    EXPECT_LE(j["max_concurrent_requests"].get<int64_t>(), 3);
    EXPECT_EQ(j["max_concurrency"], 3);
    EXPECT_EQ(j["request_rate"], "inf");

    json c = bench_json(url + common + " --endpoint /v1/chat/completions --request-rate 50 --seed 3");
    check_consistent(c, 6, 8);
    EXPECT_EQ(c["backend"], "openai-chat");
    EXPECT_EQ(c["request_rate"], 50.0);
    EXPECT_EQ(srv.terminate(), 0) << srv.log();
}

TEST(bench_serve, file_dataset_and_table) {
    test::serve_process srv("--served-model-name tiny");
    ASSERT_TRUE(srv.ok()) << srv.log();
    const std::string url = "--base-url http://127.0.0.1:" + std::to_string(srv.port()) + "/";
    test::temp_dir dir;
    test::write_file(
        dir / "prompts.jsonl",
        "{\"prompt\": \"def fibonacci(n):\"}\n\n{\"prompt\": \"import os\", \"max_tokens\": 3}\n");
    json j = bench_json(url + " --dataset " + dir / "prompts.jsonl" +
                        " --num-prompts 3 --random-output-len 5 --ignore-eos");
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j["model_id"], "tiny");
    EXPECT_EQ(j["completed"], 3) << j["errors"];
    EXPECT_EQ(j["output_lens"], json::array({5, 3, 5}));  // the file cycled, max_tokens per line

    test::write_file(dir / "chat.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n");
    json c = bench_json(url + " --endpoint /v1/chat/completions --dataset " + dir / "chat.jsonl" +
                        " --num-prompts 2 --random-output-len 4 --ignore-eos");
    EXPECT_EQ(c["completed"], 2) << c["errors"];
    EXPECT_EQ(c["total_output_tokens"], 8);

    auto r = test::run_nibble("bench serve " + url +
                              " --num-prompts 2 --random-input-len 8 --random-output-len 4 "
                              "--ignore-eos --max-concurrency 1 --request-rate 100");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const char* rows[] = {"============ Serving Benchmark Result ============",
                          "Successful requests:                     2",
                          "Failed requests:                         0",
                          "Maximum request concurrency:             1",
                          "Request rate configured (RPS):           100.00",
                          "Benchmark duration (s):",
                          "Total input tokens:                      16",
                          "Total generated tokens:                  8",
                          "Request throughput (req/s):",
                          "Output token throughput (tok/s):",
                          "Peak output token throughput (tok/s):",
                          "Peak concurrent requests:                1.00",
                          "Total Token throughput (tok/s):",
                          "---------------Time to First Token----------------",
                          "Mean TTFT (ms):",
                          "Median TTFT (ms):",
                          "P99 TTFT (ms):",
                          "-----Time per Output Token (excl. 1st token)------",
                          "Mean TPOT (ms):",
                          "---------------Inter-token Latency----------------",
                          "P99 ITL (ms):",
                          "----------------End-to-end Latency----------------",
                          "P99 E2EL (ms):",
                          "=================================================="};
    size_t at = 0;
    for (const char* row : rows) {
        size_t p = r.out.find(row, at);
        EXPECT_NE(p, std::string::npos) << "missing or out of order: " << row << "\n" << r.out;
        if (p != std::string::npos) at = p;
    }
    EXPECT_EQ(srv.terminate(), 0) << srv.log();
}

TEST(bench_serve, errors) {
    test::temp_dir dir;
    // nothing listens on port 9 (discard) of 127.0.0.1
    auto r = test::run_nibble("bench serve --base-url http://127.0.0.1:9 --num-prompts 1");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("cannot reach http://127.0.0.1:9/v1/models"), std::string::npos) << r.out;
    r = test::run_nibble("bench serve --base-url ftp://x");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("--base-url: 'ftp://x' is not an http:// or https:// URL"), std::string::npos)
        << r.out;
    r = test::run_nibble("bench serve --num-prompts 2");
    EXPECT_NE(r.out.find("--base-url is required"), std::string::npos) << r.out;
    r = test::run_nibble("bench serve --base-url http://127.0.0.1:9 --endpoint /v1/embeddings");
    EXPECT_NE(r.out.find("--endpoint: '/v1/embeddings' is not a completions path"), std::string::npos)
        << r.out;
    r = test::run_nibble("bench serve --base-url http://127.0.0.1:9 --request-rate 0");
    EXPECT_NE(r.out.find("--request-rate must be positive"), std::string::npos) << r.out;
    r = test::run_nibble("bench serve --base-url http://127.0.0.1:9 --max-concurrency x");
    EXPECT_NE(r.out.find("option --max-concurrency: 'x' is not an integer"), std::string::npos) << r.out;
    r = test::run_nibble("bench serve --base-url http://127.0.0.1:9 --model m --dataset " +
                         dir / "none.jsonl");
    EXPECT_NE(r.out.find("cannot read"), std::string::npos) << r.out;
}
