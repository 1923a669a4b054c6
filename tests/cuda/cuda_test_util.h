// Shared by the CUDA op tests: skip (reported SKIPPED, never passed) without a GPU, and device buffers.
#pragma once

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "cuda/attention_prefill.h"
#include "cuda/cuda_check.h"
#include "cuda/device.h"

#define REQUIRE_GPU() \
    if (::nibble::cuda_device_count() == 0) GTEST_SKIP() << "SKIPPED: no CUDA device on this machine"

namespace nibble::test {

// n values from N(0, sd²), seeded (fresh inputs per check, reproducible per seed).
inline std::vector<float> randn(size_t n, uint32_t seed, float sd = 1.0f) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(n);
    for (float& x : v) x = d(g);
    return v;
}

// n elements of T in device memory (16 bytes of slack for vector loads at the end), freed on scope exit.
template <class T>
struct device_buffer {
    T* p = nullptr;
    explicit device_buffer(size_t n) { NIBBLE_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T) + 16)); }
    ~device_buffer() { cudaFree(p); }
    device_buffer(const device_buffer&) = delete;
    device_buffer& operator=(const device_buffer&) = delete;
};

// A device copy of a host vector.
template <class T>
struct device_copy : device_buffer<T> {
    explicit device_copy(const std::vector<T>& h) : device_buffer<T>(h.size()) {
        NIBBLE_CUDA_CHECK(cudaMemcpy(this->p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
};

// Sets the tensor-core prefill attention switch (attention_prefill.h) for a scope, restores it after.
struct prefill_attention_switch {
    bool was = cuda_attention_prefill_enabled();
    explicit prefill_attention_switch(bool on) { cuda_attention_set_prefill(on); }
    ~prefill_attention_switch() { cuda_attention_set_prefill(was); }
    prefill_attention_switch(const prefill_attention_switch&) = delete;
    prefill_attention_switch& operator=(const prefill_attention_switch&) = delete;
};

}  // namespace nibble::test
