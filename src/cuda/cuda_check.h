// Error handling for the CUDA backend: launchers return a status; CUDA_CHECK turns a runtime error into
// a nibble::error carrying the file, the line and CUDA's own message.
#pragma once

#include <cuda_runtime.h>

#include "core/error.h"

#define NIBBLE_CUDA_CHECK(expr)                                               \
    do {                                                                      \
        cudaError_t nibble_err_ = (expr);                                     \
        if (nibble_err_ != cudaSuccess)                                       \
            ::nibble::fail("{}:{}: {} failed: {}", __FILE__, __LINE__, #expr, \
                           cudaGetErrorString(nibble_err_));                  \
    } while (0)
