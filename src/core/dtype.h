// Element types as they appear in safetensors files, with their sizes and names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace nibble {

enum dtype : uint8_t {
    dtype_f32,
    dtype_f16,
    dtype_bf16,
    dtype_f64,
    dtype_f8_e4m3,  // float8_e4m3fn: NVFP4 block scales, FP8 weights
    dtype_f8_e5m2,
    dtype_u8,  // packed E2M1 pairs, E8M0 exponents
    dtype_i8,
    dtype_i16,
    dtype_i32,
    dtype_i64,
    dtype_u16,
    dtype_u32,
    dtype_u64,
    dtype_bool,
    dtype_count,
};

// Bytes per element.
size_t dtype_size(dtype t);
// The safetensors spelling ("F32", "BF16", "F8_E4M3", "U8", ...).
std::string_view dtype_name(dtype t);
// Parses the safetensors spelling; nullopt for an unknown name.
std::optional<dtype> dtype_from_name(std::string_view name);
// Parses a torch spelling as used in config.json ("bfloat16", "torch.float16", "float32").
std::optional<dtype> dtype_from_torch_name(std::string_view name);
bool dtype_is_float(dtype t);

}  // namespace nibble
