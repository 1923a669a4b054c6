// libFuzzer target for the safetensors header parser. Any input must either parse into a header that
// satisfies the documented invariants or fail with nibble::error; any other exception, a sanitizer
// report or a broken invariant is a crash. Built with clang by tests/fuzz/CMakeLists.txt.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "loader/safetensors.h"

namespace {

// The parser's promises: entries sorted by begin, inside the data section, sized numel × dtype size,
// and non-empty entries disjoint.
void check(const nibble::safetensors_header& h, uint64_t data_size) {
    uint64_t reach = 0;
    for (size_t i = 0; i < h.tensors.size(); ++i) {
        const nibble::safetensors_entry& e = h.tensors[i];
        if (e.begin > e.end || e.end > data_size) __builtin_trap();
        if (i && h.tensors[i - 1].begin > e.begin) __builtin_trap();
        uint64_t n = nibble::dtype_size(e.type);
        for (int64_t d : e.shape) {
            if (d < 0 || __builtin_mul_overflow(n, uint64_t(d), &n)) __builtin_trap();
        }
        if (n != e.end - e.begin) __builtin_trap();
        if (e.begin == e.end) continue;
        if (e.begin < reach) __builtin_trap();
        reach = std::max(reach, e.end);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // As a whole file: length prefix, header, data.
    try {
        nibble::safetensors_header h = nibble::safetensors_parse(data, size, "fuzz.safetensors");
        if (h.data_offset < 8 || h.data_offset > size) __builtin_trap();
        check(h, size - h.data_offset);
    } catch (const nibble::error&) {
    }
    // As header text alone, so that mutations need not keep the length prefix consistent.
    const uint64_t data_size = 1 << 20;
    try {
        std::string_view text(reinterpret_cast<const char*>(data), size);
        check(nibble::safetensors_parse_header(text, data_size, "fuzz.json"), data_size);
    } catch (const nibble::error&) {
    }
    return 0;
}
