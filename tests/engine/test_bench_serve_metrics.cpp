// The metrics of `nibble bench serve` on hand-made request records with answers worked out by hand
// (and checked against numpy.percentile): percentiles with linear interpolation, TPOT leaving out
// 1-token requests, ITL pooled over requests, throughputs over the duration, failed requests counted
// apart, the peak output throughput's one-second buckets and the peak concurrency sweep; the Poisson
// arrival schedule; the SSE splitter across chunk boundaries.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/bench_serve_metrics.h"

using namespace nibble;

namespace {

request_record ok(double start, double ttft, std::vector<double> itl, double latency, int64_t in,
                  int64_t out) {
    request_record r;
    r.success = true;
    r.start = start;
    r.ttft = ttft;
    r.itl = std::move(itl);
    r.latency = latency;
    r.prompt_len = in;
    r.output_tokens = out;
    return r;
}

request_record failed(int64_t in) {
    request_record r;
    r.prompt_len = in;
    r.error = "HTTP 500";
    return r;
}

}  // namespace

TEST(bench_serve_metrics, percentile_is_numpy_linear) {
    EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 50), 2.5);
    EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 99), 3.97);  // rank 2.97: 3 + 0.97 * (4 - 3)
    EXPECT_DOUBLE_EQ(percentile({10, 20, 30, 40, 50}, 99), 49.6);
    EXPECT_DOUBLE_EQ(percentile({10, 20, 30, 40, 50}, 50), 30);
    EXPECT_DOUBLE_EQ(percentile({10, 20, 30, 40, 50}, 0), 10);
    EXPECT_DOUBLE_EQ(percentile({10, 20, 30, 40, 50}, 100), 50);
    EXPECT_DOUBLE_EQ(percentile({7}, 99), 7);
    EXPECT_DOUBLE_EQ(percentile({}, 99), 0);
}

TEST(bench_serve_metrics, summary_in_ms) {
    metric_stats s = summarize_ms({0.004, 0.001, 0.003, 0.002});
    EXPECT_NEAR(s.mean_ms, 2.5, 1e-12);
    EXPECT_NEAR(s.median_ms, 2.5, 1e-12);
    EXPECT_NEAR(s.std_ms, std::sqrt(1.25), 1e-12);  // population std, as numpy.std
    EXPECT_NEAR(s.p99_ms, 3.97, 1e-12);
    metric_stats e = summarize_ms({});
    EXPECT_EQ(e.mean_ms, 0);
    EXPECT_EQ(e.p99_ms, 0);
}

TEST(bench_serve_metrics, request_metrics) {
    std::vector<request_record> rs = {
        ok(0.0, 0.1, {0.05, 0.05, 0.1}, 0.3, 10, 4),  // TPOT (0.3 - 0.1) / 3
        ok(0.5, 0.2, {}, 0.2, 5, 1),                  // one token: no TPOT
        failed(7),                                    // counts nowhere but in failed
        ok(1.0, 0.3, {0.2}, 0.5, 8, 2),               // TPOT 0.2 / 1
    };
    serve_metrics m = compute_serve_metrics(rs, 2.0);
    EXPECT_EQ(m.completed, 3);
    EXPECT_EQ(m.failed, 1);
    EXPECT_EQ(m.total_input, 23);
    EXPECT_EQ(m.total_output, 7);
    EXPECT_DOUBLE_EQ(m.duration, 2.0);
    EXPECT_DOUBLE_EQ(m.request_throughput, 1.5);
    EXPECT_DOUBLE_EQ(m.output_throughput, 3.5);
    EXPECT_DOUBLE_EQ(m.total_token_throughput, 15.0);
    // TTFT [0.1, 0.2, 0.3]
    EXPECT_NEAR(m.ttft.mean_ms, 200, 1e-9);
    EXPECT_NEAR(m.ttft.median_ms, 200, 1e-9);
    EXPECT_NEAR(m.ttft.p99_ms, 298, 1e-9);
    // TPOT [0.2 / 3, 0.2]: the 1-token request is left out
    EXPECT_NEAR(m.tpot.mean_ms, 400.0 / 3, 1e-9);
    EXPECT_NEAR(m.tpot.median_ms, 400.0 / 3, 1e-9);
    EXPECT_NEAR(m.tpot.p99_ms, 200 - 0.01 * 400.0 / 3, 1e-9);
    // ITL pooled [0.05, 0.05, 0.1, 0.2]
    EXPECT_NEAR(m.itl.mean_ms, 100, 1e-9);
    EXPECT_NEAR(m.itl.median_ms, 75, 1e-9);
    EXPECT_NEAR(m.itl.p99_ms, 197, 1e-9);
    // E2EL [0.3, 0.2, 0.5]
    EXPECT_NEAR(m.e2el.mean_ms, 1000.0 / 3, 1e-9);
    EXPECT_NEAR(m.e2el.median_ms, 300, 1e-9);
    EXPECT_NEAR(m.e2el.p99_ms, 496, 1e-9);
    // chunks at 0.1, 0.15, 0.2, 0.3 and 0.7 fall in second 0, at 1.3 and 1.5 in second 1
    EXPECT_DOUBLE_EQ(m.max_output_tokens_per_s, 5);
    EXPECT_EQ(m.max_concurrent_requests, 1);
}

TEST(bench_serve_metrics, peak_buckets_are_whole_seconds_since_the_first_start) {
    // chunks 0.25, 0.5, 0.75, 1.0 and 1.25 s after the only start (2.5): 3 in second 0, 2 in second 1
    // (an edge belongs to the later second; absolute seconds would give 1 and 4)
    std::vector<request_record> rs = {ok(2.5, 0.25, {0.25, 0.25, 0.25, 0.25}, 1.25, 1, 5)};
    EXPECT_DOUBLE_EQ(compute_serve_metrics(rs, 1.25).max_output_tokens_per_s, 3);
    // output tokens do not enter the peak: it counts chunks (3 tokens in one chunk count once)
    rs = {ok(0.0, 0.5, {}, 0.5, 1, 3)};
    EXPECT_DOUBLE_EQ(compute_serve_metrics(rs, 0.5).max_output_tokens_per_s, 1);
}

TEST(bench_serve_metrics, peak_concurrency_sweep) {
    // [0, 1) and [1, 2) touch: a departure comes before an arrival at the same time
    std::vector<request_record> rs = {ok(0, 0.5, {}, 1, 1, 1), ok(1, 0.5, {}, 1, 1, 1)};
    EXPECT_EQ(compute_serve_metrics(rs, 2).max_concurrent_requests, 1);
    rs = {ok(0, 0.5, {}, 2, 1, 1), ok(1, 0.5, {}, 2, 1, 1), ok(1.5, 0.5, {}, 0.25, 1, 1), failed(1)};
    EXPECT_EQ(compute_serve_metrics(rs, 3).max_concurrent_requests, 3);
}

TEST(bench_serve_metrics, all_failed) {
    std::vector<request_record> rs = {failed(3), failed(4)};
    serve_metrics m = compute_serve_metrics(rs, 1.0);
    EXPECT_EQ(m.completed, 0);
    EXPECT_EQ(m.failed, 2);
    EXPECT_EQ(m.total_input, 0);
    EXPECT_EQ(m.request_throughput, 0);
    EXPECT_EQ(m.max_output_tokens_per_s, 0);
    EXPECT_EQ(m.ttft.p99_ms, 0);
    EXPECT_EQ(m.tpot.mean_ms, 0);
}

TEST(bench_serve_metrics, arrivals) {
    for (double t : arrival_offsets(5, INFINITY, 0)) EXPECT_EQ(t, 0);
    std::vector<double> a = arrival_offsets(8, 4.0, 1);
    ASSERT_EQ(a.size(), 8u);
    EXPECT_GT(a[0], 0);
    for (size_t i = 1; i < a.size(); ++i) EXPECT_GT(a[i], a[i - 1]);
    EXPECT_NEAR(a.back(), 2.0, 1e-12);  // rescaled to n / rate
    EXPECT_EQ(arrival_offsets(8, 4.0, 1), a);
    EXPECT_NE(arrival_offsets(8, 4.0, 2), a);
}

TEST(bench_serve_metrics, sse_splitter) {
    sse_splitter s;
    EXPECT_EQ(s.push("data: {\"a\":1}\n\ndata: [DO"), std::vector<std::string>{"{\"a\":1}"});
    EXPECT_EQ(s.push("NE]\n"), std::vector<std::string>{});
    EXPECT_EQ(s.push("\n: ping\n\ndata:x\r\n\r\nevent: e\ndata: y\ndata: z\n\n"),
              (std::vector<std::string>{"[DONE]", "x", "y\nz"}));
    EXPECT_EQ(s.push("data: tail"), std::vector<std::string>{});
    EXPECT_EQ(s.finish(), "tail");
    EXPECT_EQ(s.finish(), "");
}
