#include "core/dtype.h"

#include <array>

namespace nibble {

namespace {

struct dtype_info {
    std::string_view name;
    size_t size;
};

constexpr std::array<dtype_info, dtype_count> k_dtypes = {{
    {"F32", 4},
    {"F16", 2},
    {"BF16", 2},
    {"F64", 8},
    {"F8_E4M3", 1},
    {"F8_E5M2", 1},
    {"U8", 1},
    {"I8", 1},
    {"I16", 2},
    {"I32", 4},
    {"I64", 8},
    {"U16", 2},
    {"U32", 4},
    {"U64", 8},
    {"BOOL", 1},
}};

}  // namespace

size_t dtype_size(dtype t) {
    return k_dtypes[t].size;
}

std::string_view dtype_name(dtype t) {
    return k_dtypes[t].name;
}

std::optional<dtype> dtype_from_name(std::string_view name) {
    for (size_t i = 0; i < k_dtypes.size(); ++i)
        if (k_dtypes[i].name == name) return static_cast<dtype>(i);
    return std::nullopt;
}

std::optional<dtype> dtype_from_torch_name(std::string_view name) {
    if (name.starts_with("torch.")) name.remove_prefix(6);
    if (name == "bfloat16") return dtype_bf16;
    if (name == "float16" || name == "half") return dtype_f16;
    if (name == "float32" || name == "float") return dtype_f32;
    if (name == "float8_e4m3fn") return dtype_f8_e4m3;
    if (name == "uint8") return dtype_u8;
    return std::nullopt;
}

bool dtype_is_float(dtype t) {
    return t == dtype_f32 || t == dtype_f16 || t == dtype_bf16 || t == dtype_f64 || t == dtype_f8_e4m3 ||
           t == dtype_f8_e5m2;
}

}  // namespace nibble
