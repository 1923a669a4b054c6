// The CUDA devices of this machine, as the engine and the benchmarks need to know them.
#pragma once

#include <string>
#include <vector>

namespace nibble {

struct cuda_device_info {
    int index = 0;
    std::string name;
    int sm_major = 0, sm_minor = 0;
    int n_sms = 0;
    size_t memory_bytes = 0;
    size_t l2_bytes = 0;
    int memory_bus_bits = 0;
};

// Number of usable CUDA devices: 0 when there is no driver or no GPU (never throws).
int cuda_device_count();
// Fails for an invalid index.
cuda_device_info cuda_device_query(int index);

// The roofline of every GPU figure (performance.md): device-to-device cudaMemcpyAsync of `bytes` of
// random data (never zeros) on the current device, timed with CUDA events per rep after warm-up,
// counted read + write (2 * bytes / time); the median over `reps`, in GB/s (1e9 bytes per second).
// Allocates 2 * bytes for the measurement and frees them; fails on any CUDA error.
double cuda_copy_bandwidth_gbps(size_t bytes = size_t(1) << 30, int reps = 20);

}  // namespace nibble
