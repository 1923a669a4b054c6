// Helpers of `nibble bench`: the CPU engine's roofline (a host memcpy far larger than the last-level
// cache, counted read + write), medians, the host's name, today's date and deterministic prompts.
// Nothing here touches the GPU; the GPU roofline is cuda_copy_bandwidth_gbps (cuda/device.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace nibble {

// Host copy bandwidth in GB/s (1e9 bytes per second): a memcpy of a buffer of random bytes (never zeros)
// of at least `bytes` and at least 8x the last-level cache (up to 1 GiB), split over the OpenMP threads the
// CPU engine uses, counted read + write (2 * size / time); the median of `reps` after one warm-up copy.
double host_copy_bandwidth_gbps(size_t bytes = size_t(256) << 20, int reps = 7);
// The buffer size host_copy_bandwidth_gbps uses for a requested size (the cache rule above).
size_t host_copy_buffer_bytes(size_t bytes);

// The largest cache of cpu0 as sysfs lists it ("32768K"), else glibc's sysconf (which reads CPUID, that
// some virtual machines fill with the host's figures); 0 when neither knows.
size_t host_last_level_cache_bytes();

// The median (the upper one for an even count); fails on an empty list.
double median_of(std::vector<double> v);
// "AMD EPYC 9354 (2 threads)" from /proc/cpuinfo and the OpenMP thread count.
std::string host_cpu_name();
// Today in UTC, YYYY-MM-DD.
std::string utc_date();
// n token ids in [0, vocab), pseudo-random and fixed by `seed` (same ids on every run).
std::vector<int32_t> bench_token_ids(int64_t n, int64_t vocab, uint64_t seed);
// Index of the largest value (the first one on ties).
int32_t argmax_of(std::span<const float> v);

}  // namespace nibble
