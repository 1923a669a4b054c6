#include "engine/bench_serve_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <utility>

namespace nibble {

double percentile(std::vector<double> values, double p) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    const double rank = p / 100.0 * double(values.size() - 1);
    const size_t lo = size_t(std::floor(rank));
    const size_t hi = std::min(lo + 1, values.size() - 1);
    const double frac = rank - double(lo);
    return values[lo] + (values[hi] - values[lo]) * frac;
}

metric_stats summarize_ms(const std::vector<double>& seconds) {
    metric_stats s;
    if (seconds.empty()) return s;
    const double n = double(seconds.size());
    const double mean = std::accumulate(seconds.begin(), seconds.end(), 0.0) / n;
    double var = 0;
    for (double v : seconds) var += (v - mean) * (v - mean);
    s.mean_ms = mean * 1000;
    s.std_ms = std::sqrt(var / n) * 1000;
    s.median_ms = percentile(seconds, 50) * 1000;
    s.p99_ms = percentile(seconds, 99) * 1000;
    return s;
}

namespace {

// Largest number of chunk arrivals in one whole second since the earliest start.
double peak_chunks_per_second(const std::vector<const request_record*>& ok) {
    double t0 = std::numeric_limits<double>::infinity(), t1 = -t0;
    for (const request_record* r : ok) {
        t0 = std::min(t0, r->start);
        t1 = std::max(t1, r->start + r->latency);
    }
    const int64_t n_buckets = int64_t(std::ceil(t1 - t0)) + 1;
    std::vector<int64_t> buckets(size_t(n_buckets), 0);
    for (const request_record* r : ok) {
        double t = r->start + r->ttft;
        auto add = [&](double at) {
            const int64_t b = int64_t(at - t0);  // truncation, as Python's int()
            if (b >= 0 && b < n_buckets) ++buckets[size_t(b)];
        };
        add(t);
        for (double gap : r->itl) add(t += gap);
    }
    return double(*std::max_element(buckets.begin(), buckets.end()));
}

int64_t peak_concurrency(const std::vector<const request_record*>& ok) {
    std::vector<std::pair<double, int>> events;
    for (const request_record* r : ok) {
        events.push_back({r->start, 1});
        events.push_back({r->start + r->latency, -1});
    }
    std::sort(events.begin(), events.end());  // at equal times -1 sorts before +1
    int64_t now = 0, peak = 0;
    for (const auto& e : events) peak = std::max(peak, now += e.second);
    return peak;
}

}  // namespace

serve_metrics compute_serve_metrics(std::span<const request_record> records, double duration_s) {
    serve_metrics m;
    m.duration = duration_s;
    std::vector<double> ttfts, tpots, itls, e2els;
    std::vector<const request_record*> ok;
    for (const request_record& r : records) {
        if (!r.success) {
            ++m.failed;
            continue;
        }
        ok.push_back(&r);
        ++m.completed;
        m.total_input += r.prompt_len;
        m.total_output += r.output_tokens;
        if (r.output_tokens > 1) tpots.push_back((r.latency - r.ttft) / double(r.output_tokens - 1));
        itls.insert(itls.end(), r.itl.begin(), r.itl.end());
        ttfts.push_back(r.ttft);
        e2els.push_back(r.latency);
    }
    if (duration_s > 0) {
        m.request_throughput = double(m.completed) / duration_s;
        m.output_throughput = double(m.total_output) / duration_s;
        m.total_token_throughput = double(m.total_input + m.total_output) / duration_s;
    }
    if (!ok.empty()) {
        m.max_output_tokens_per_s = peak_chunks_per_second(ok);
        m.max_concurrent_requests = peak_concurrency(ok);
    }
    m.ttft = summarize_ms(ttfts);
    m.tpot = summarize_ms(tpots);
    m.itl = summarize_ms(itls);
    m.e2el = summarize_ms(e2els);
    return m;
}

std::vector<double> arrival_offsets(int64_t n, double rate, uint64_t seed) {
    std::vector<double> t(size_t(std::max<int64_t>(n, 0)), 0.0);
    if (t.empty() || std::isinf(rate)) return t;
    std::mt19937_64 rng(seed);
    std::exponential_distribution<double> gap(rate);
    double at = 0;
    for (double& v : t) v = at += gap(rng);
    const double scale = double(n) / rate / t.back();
    for (double& v : t) v *= scale;
    return t;
}

std::vector<std::string> sse_splitter::push(std::string_view bytes) {
    for (char c : bytes)
        if (c != '\r') buffer_ += c;
    std::vector<std::string> out;
    size_t pos = 0;
    for (size_t end; (end = buffer_.find("\n\n", pos)) != std::string::npos; pos = end + 2) {
        std::string data;
        bool any = false;
        for (size_t line = pos; line < end;) {
            size_t nl = std::min(buffer_.find('\n', line), end);
            std::string_view l(buffer_.data() + line, nl - line);
            if (l.starts_with("data:")) {
                l.remove_prefix(l.starts_with("data: ") ? 6 : 5);
                if (any) data += '\n';
                data += l;
                any = true;
            }
            line = nl + 1;
        }
        const size_t b = data.find_first_not_of(" \t\n");
        if (any && b != std::string::npos)
            out.push_back(data.substr(b, data.find_last_not_of(" \t\n") - b + 1));
    }
    buffer_.erase(0, pos);
    return out;
}

std::string sse_splitter::finish() {
    std::vector<std::string> last = push("\n\n");
    buffer_.clear();
    return last.empty() ? std::string() : last.front();
}

}  // namespace nibble
