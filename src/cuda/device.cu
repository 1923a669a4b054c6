#include "cuda/cuda_check.h"
#include "cuda/device.h"

namespace nibble {

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

}  // namespace nibble
