// A read-only view of a tensor in a checkpoint (usually into an mmap'd file): no ownership.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace nibble {

struct tensor_view {
    std::string name;  // checkpoint name, for error messages
    dtype type = dtype_f32;
    std::vector<int64_t> shape;  // outermost first; empty for a 0-dim scalar
    const uint8_t* data = nullptr;
    size_t n_bytes = 0;

    int64_t numel() const {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return n;
    }
    bool empty() const { return data == nullptr; }
};

// "[4096, 128]" for messages.
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace nibble
