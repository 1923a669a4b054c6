// Helpers for the loader tests: raw safetensors images, error capture, and small checkpoint files.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "loader/safetensors.h"

namespace nibble::test {

// A file image: u64 little-endian length of `header`, the header text, then `data`.
inline std::string st_image(const std::string& header, const std::string& data = "") {
    std::string out(8, '\0');
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[i] = char(uint8_t(n >> (8 * i)));
    return out + header + data;
}

// The nibble::error message of parsing `image`; a test failure (and "") when it parses.
inline std::string st_parse_error(const std::string& image, const std::string& file = "model.safetensors") {
    try {
        safetensors_parse(reinterpret_cast<const uint8_t*>(image.data()), image.size(), file);
    } catch (const nibble::error& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected a nibble::error for a " << image.size() << "-byte image";
    return "";
}

// Expects `text` to contain every one of `parts`.
#define EXPECT_CONTAINS(text, ...)                                                                        \
    do {                                                                                                  \
        const std::string text_ = (text);                                                                 \
        for (const std::string& part_ : std::initializer_list<std::string>{__VA_ARGS__})                  \
            EXPECT_NE(text_.find(part_), std::string::npos) << "missing: " << part_ << "\nin: " << text_; \
    } while (0)

// Byte i of tensor number t in the test pattern.
inline uint8_t pattern_byte(size_t t, size_t i) {
    return uint8_t(t * 31 + i * 7 + 1);
}

// Writes a safetensors file whose tensors hold pattern_byte(position in `tensors`, i).
inline std::vector<safetensors_entry> write_pattern_file(
    const std::string& path, std::vector<safetensors_entry> tensors,
    const std::map<std::string, std::string>& meta = {}) {
    safetensors_writer w(path, std::move(tensors), meta);
    for (size_t t = 0; t < w.tensors().size(); ++t) {
        const safetensors_entry& e = w.tensors()[t];
        std::vector<uint8_t> bytes(e.end - e.begin);
        for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = pattern_byte(t, i);
        w.write(bytes.data(), bytes.size());
    }
    w.finish();
    return w.tensors();
}

inline safetensors_entry st_entry(const std::string& name, dtype t, std::vector<int64_t> shape) {
    safetensors_entry e;
    e.name = name;
    e.type = t;
    e.shape = std::move(shape);
    return e;
}

}  // namespace nibble::test
