// CUDA devices: count, properties, and the copy bandwidth every GPU figure is measured against.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device.h"

namespace nibble {

namespace {

// Random 64-bit words (splitmix64 of the index): copies must never move zeros.
__global__ void fill_random_words(uint64_t* p, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x) {
        uint64_t z = (i + seed) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        p[i] = z ^ (z >> 31);
    }
}

// Owners that release what the measurement took, also when a check throws.
struct device_buffer {
    void* p = nullptr;
    ~device_buffer() {
        if (p) cudaFree(p);
    }
};
struct owned_stream {
    cudaStream_t s = nullptr;
    ~owned_stream() {
        if (s) cudaStreamDestroy(s);
    }
};
struct owned_event {
    cudaEvent_t e = nullptr;
    ~owned_event() {
        if (e) cudaEventDestroy(e);
    }
};

}  // namespace

int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

cuda_device_info cuda_device_query(int index) {
    cudaDeviceProp p{};
    NIBBLE_CUDA_CHECK(cudaGetDeviceProperties(&p, index));
    cuda_device_info d;
    d.index = index;
    d.name = p.name;
    d.sm_major = p.major;
    d.sm_minor = p.minor;
    d.n_sms = p.multiProcessorCount;
    d.memory_bytes = p.totalGlobalMem;
    d.l2_bytes = size_t(p.l2CacheSize);
    d.memory_bus_bits = p.memoryBusWidth;
    return d;
}

double cuda_copy_bandwidth_gbps(size_t bytes, int reps) {
    bytes &= ~size_t(7);
    if (bytes == 0 || reps < 1) fail("copy bandwidth: {} bytes, {} reps", bytes, reps);
    constexpr int warmup = 3;
    device_buffer a, b;
    owned_stream st;
    owned_event e0, e1;
    NIBBLE_CUDA_CHECK(cudaMalloc(&a.p, bytes));
    NIBBLE_CUDA_CHECK(cudaMalloc(&b.p, bytes));
    NIBBLE_CUDA_CHECK(cudaStreamCreateWithFlags(&st.s, cudaStreamNonBlocking));
    NIBBLE_CUDA_CHECK(cudaEventCreate(&e0.e));
    NIBBLE_CUDA_CHECK(cudaEventCreate(&e1.e));
    fill_random_words<<<1024, 256, 0, st.s>>>(static_cast<uint64_t*>(a.p), bytes / 8, 1);
    NIBBLE_CUDA_CHECK(cudaGetLastError());
    fill_random_words<<<1024, 256, 0, st.s>>>(static_cast<uint64_t*>(b.p), bytes / 8, 2);
    NIBBLE_CUDA_CHECK(cudaGetLastError());
    std::vector<double> seconds;
    for (int i = 0; i < warmup + reps; ++i) {
        // Alternate the direction so neither buffer stays the destination (both hold random data).
        void* dst = i % 2 ? a.p : b.p;
        const void* src = i % 2 ? b.p : a.p;
        NIBBLE_CUDA_CHECK(cudaEventRecord(e0.e, st.s));
        NIBBLE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st.s));
        NIBBLE_CUDA_CHECK(cudaEventRecord(e1.e, st.s));
        NIBBLE_CUDA_CHECK(cudaEventSynchronize(e1.e));
        float ms = 0;
        NIBBLE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0.e, e1.e));
        if (i >= warmup) seconds.push_back(double(ms) * 1e-3);
    }
    std::sort(seconds.begin(), seconds.end());
    const double t = seconds[seconds.size() / 2];
    if (t <= 0) fail("copy bandwidth: a copy of {} bytes timed at {} s", bytes, t);
    return 2.0 * double(bytes) / t / 1e9;
}

}  // namespace nibble
