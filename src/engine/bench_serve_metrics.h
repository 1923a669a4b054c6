// The client-side logic of `nibble bench serve` that needs no server: the SSE event splitter, the
// arrival schedule and the reduction of per-request records to the metrics of `vllm bench serve`
// (vllm/benchmarks/serve.py calculate_metrics; shared/spec/serving.md 2.1), with its definitions:
//
// - TTFT = time of the first SSE chunk with a non-empty `choices` array - send time; ITL = every gap
//   between consecutive such chunks (pooled over requests); E2EL = the last such chunk - send time.
// - TPOT = (E2EL - TTFT) / (output_tokens - 1), only for requests with more than one output token.
// - Request / output / total token throughput = completed, sum of output tokens, sum of input +
//   output tokens, each divided by the benchmark duration (failed requests count nowhere).
// - Peak output token throughput: chunk arrival times rebuilt as start + TTFT + cumulative ITL,
//   counted per whole second since the earliest start (ceil(last end - earliest start) + 1
//   buckets); the largest count. Peak concurrent requests: sweep over the half-open intervals
//   [start, start + E2EL), a departure before an arrival at the same instant.
// - Mean, median, population std and P99 of TTFT, TPOT, ITL and E2EL in ms; percentiles as
//   numpy.percentile's default (linear interpolation between closest ranks); an empty list gives 0
//   everywhere (numpy on `values or 0`).
// All times are seconds on one monotonic clock.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace nibble {

// One benchmark request as the client saw it.
struct request_record {
    bool success = false;
    double start = 0;         // send time
    double ttft = 0;          // first chunk - start
    std::vector<double> itl;  // gaps between consecutive chunks
    double latency = 0;       // E2EL: last chunk - start
    int64_t prompt_len = 0;   // input tokens (the dataset's count)
    int64_t output_tokens = 0;
    std::string error;  // why it failed
};

struct metric_stats {
    double mean_ms = 0, median_ms = 0, std_ms = 0, p99_ms = 0;
};

struct serve_metrics {
    int64_t completed = 0, failed = 0;
    int64_t total_input = 0, total_output = 0;
    double duration = 0;
    double request_throughput = 0, output_throughput = 0, total_token_throughput = 0;
    double max_output_tokens_per_s = 0;
    int64_t max_concurrent_requests = 0;
    metric_stats ttft, tpot, itl, e2el;
};

// numpy.percentile(values, p) with the default linear method; p in [0, 100]; 0 for no values.
double percentile(std::vector<double> values, double p);

// Mean, median, std and P99 of `seconds`, reported in ms.
metric_stats summarize_ms(const std::vector<double>& seconds);

serve_metrics compute_serve_metrics(std::span<const request_record> records, double duration_s);

// Send offsets (seconds after the benchmark start) of n requests at `rate` requests/s: all 0 for an
// infinite rate, else cumulative exponential gaps (a Poisson process, seeded), rescaled as vLLM does
// so that the last offset is exactly n / rate.
std::vector<double> arrival_offsets(int64_t n, double rate, uint64_t seed);

// Splits a byte stream of server-sent events into the payloads of its `data:` events: messages end
// at a blank line ("\n\n"; CRs are dropped), only their "data:" lines count (several join with
// "\n", one space after the colon removed, as the SSE standard says), messages without any (":"
// comments) are dropped, the payload is trimmed of surrounding whitespace. Bytes of an unfinished
// message are kept for the next push.
class sse_splitter {
  public:
    std::vector<std::string> push(std::string_view bytes);
    // What remains after the stream ended (a last message without its blank line), "" if none.
    std::string finish();

  private:
    std::string buffer_;
};

}  // namespace nibble
