#include "core/backend.h"

#include "core/error.h"

namespace nibble {

kv_cache_dtype kv_cache_dtype_parse(const std::string& s) {
    if (s == "auto") return kv_cache_auto;
    if (s == "f32" || s == "float32") return kv_cache_f32;
    if (s == "bf16" || s == "bfloat16") return kv_cache_bf16;
    if (s == "fp8" || s == "fp8_e4m3") return kv_cache_fp8;
    fail("unknown KV cache dtype '{}' (auto, f32, bf16, fp8 or fp8_e4m3)", s);
}

const char* kv_cache_dtype_name(kv_cache_dtype d) {
    switch (d) {
        case kv_cache_auto:
            return "auto";
        case kv_cache_f32:
            return "f32";
        case kv_cache_bf16:
            return "bf16";
        case kv_cache_fp8:
            return "fp8";
    }
    return "?";
}

int kv_cache_dtype_bytes(kv_cache_dtype d) {
    switch (d) {
        case kv_cache_f32:
            return 4;
        case kv_cache_bf16:
            return 2;
        case kv_cache_fp8:
            return 1;
        case kv_cache_auto:
            break;
    }
    fail("KV cache dtype 'auto' has no size before the backend resolves it");
}

}  // namespace nibble
