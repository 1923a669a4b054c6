#include "cli/bench_util.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>

#include "core/error.h"

namespace nibble {

namespace {

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Copies src to dst in one contiguous piece per thread, as the engine's OpenMP loops share memory.
void parallel_copy(uint8_t* dst, const uint8_t* src, size_t bytes) {
#pragma omp parallel
    {
        const size_t n = size_t(omp_get_num_threads()), t = size_t(omp_get_thread_num());
        const size_t piece = (bytes / n + 63) & ~size_t(63);
        const size_t lo = std::min(bytes, t * piece), hi = std::min(bytes, lo + piece);
        if (hi > lo) std::memcpy(dst + lo, src + lo, hi - lo);
    }
}

}  // namespace

size_t host_last_level_cache_bytes() {
    size_t best = 0;
    for (int i = 0; i < 8; ++i) {
        std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/size");
        std::string s;
        if (!(f >> s) || s.empty()) continue;
        char* end = nullptr;
        size_t v = size_t(std::strtoull(s.c_str(), &end, 10));
        if (*end == 'K') v <<= 10;
        if (*end == 'M') v <<= 20;
        best = std::max(best, v);
    }
    if (best > 0) return best;
    for (int name : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE})
        if (long v = sysconf(name); v > 0) best = std::max(best, size_t(v));
    return best;
}

size_t host_copy_buffer_bytes(size_t bytes) {
    if (bytes < 64) fail("copy bandwidth: a buffer of {} bytes", bytes);
    // At least 8x the cache, capped at 1 GiB per buffer (a host with a huge cache still copies quickly).
    const size_t want = std::min(8 * host_last_level_cache_bytes(), size_t(1) << 30);
    return std::max(bytes, want) & ~size_t(63);
}

double host_copy_bandwidth_gbps(size_t bytes, int reps) {
    if (bytes == 0 || reps < 1) fail("copy bandwidth: {} bytes, {} reps", bytes, reps);
    bytes = host_copy_buffer_bytes(bytes);
    std::unique_ptr<uint64_t[]> a(new uint64_t[bytes / 8]), b(new uint64_t[bytes / 8]);
    // Random contents in both buffers (the fill also faults every page in before timing).
    const int64_t words = int64_t(bytes / 8);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < words; ++i) {
        uint64_t s = uint64_t(i);
        a[size_t(i)] = splitmix64(s);
        b[size_t(i)] = splitmix64(s);
    }
    std::vector<double> seconds;
    for (int i = 0; i < 1 + reps; ++i) {
        // Alternate the direction so both buffers are read and written.
        uint8_t* dst = reinterpret_cast<uint8_t*>(i % 2 ? a.get() : b.get());
        const uint8_t* src = reinterpret_cast<const uint8_t*>(i % 2 ? b.get() : a.get());
        auto t0 = std::chrono::steady_clock::now();
        parallel_copy(dst, src, bytes);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (i > 0) seconds.push_back(s);
    }
    const double t = median_of(seconds);
    if (t <= 0) fail("copy bandwidth: a copy of {} bytes timed at {} s", bytes, t);
    return 2.0 * double(bytes) / t / 1e9;
}

double median_of(std::vector<double> v) {
    if (v.empty()) fail("median of an empty list");
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

std::string host_cpu_name() {
    std::ifstream f("/proc/cpuinfo");
    std::string line, name = "CPU";
    while (std::getline(f, line)) {
        if (line.rfind("model name", 0) != 0) continue;
        size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        size_t start = line.find_first_not_of(" \t", colon + 1);
        if (start != std::string::npos) name = line.substr(start);
        break;
    }
    const int threads = omp_get_max_threads();
    return name + " (" + std::to_string(threads) + (threads == 1 ? " thread)" : " threads)");
}

std::string utc_date() {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[16];
    std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
    return buf;
}

std::vector<int32_t> bench_token_ids(int64_t n, int64_t vocab, uint64_t seed) {
    if (n < 0 || vocab <= 0) fail("bench ids: {} ids over a vocabulary of {}", n, vocab);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    uint64_t s = seed * 0xD1B54A32D192ED03ull + 1;
    for (int32_t& id : ids) id = int32_t(splitmix64(s) % uint64_t(vocab));
    return ids;
}

int32_t argmax_of(std::span<const float> v) {
    if (v.empty()) fail("argmax of an empty vector");
    return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace nibble
