// safetensors files: header parsing with strict validation, read-only mmap, and a streaming writer.
//
// File layout: u64 little-endian header length L, then L bytes of JSON
//   {"__metadata__": {str: str}, "NAME": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}, ...}
// then the data section; offsets are relative to the start of the data section (8 + L).
// Validation (every failure is a nibble::error naming the file and the tensor):
//   L <= safetensors_max_header and 8 + L <= file size; valid JSON object; known dtype; shape of
//   non-negative integers; begin <= end <= data size; (end - begin) == numel * dtype size without
//   overflow; no two tensors overlap; metadata values are strings.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace nibble {

constexpr uint64_t safetensors_max_header = 100ull << 20;  // as the reference implementation

struct safetensors_entry {
    std::string name;
    dtype type = dtype_f32;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;  // byte offsets in the data section
};

struct safetensors_header {
    std::vector<safetensors_entry> tensors;  // in file order of their data
    std::map<std::string, std::string> metadata;
    uint64_t data_offset = 0;  // 8 + header length
};

// Parses the JSON header text for a data section of data_size bytes. `file` is used in messages.
safetensors_header safetensors_parse_header(std::string_view json, uint64_t data_size, std::string_view file);
// Parses a whole file image (length prefix + header + data).
safetensors_header safetensors_parse(const uint8_t* bytes, uint64_t size, std::string_view file);

// A read-only memory map of a whole file (empty files map to nothing).
class mapped_file {
  public:
    explicit mapped_file(const std::string& path);  // fails with the path and errno text
    ~mapped_file();
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;
    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
};

// Streaming writer: the tensor list is fixed up front (the header comes first), then the tensors'
// bytes are appended in that order, in as many pieces as the caller likes. finish() checks that
// every tensor got exactly its byte count. Nothing is held in memory but the header.
class safetensors_writer {
  public:
    safetensors_writer(const std::string& path, std::vector<safetensors_entry> tensors,
                       const std::map<std::string, std::string>& metadata = {});
    ~safetensors_writer();  // an unfinished writer removes its partial file
    safetensors_writer(const safetensors_writer&) = delete;
    safetensors_writer& operator=(const safetensors_writer&) = delete;
    // Appends bytes to the current tensor (moving on to the next one when it is full).
    void write(const void* data, size_t n);
    // Skips n zero bytes of tensor data as a sparse hole (for data-less layout checkpoints).
    void skip(size_t n);
    // Fails (naming the short tensor) unless every byte was written or skipped; then closes the file.
    void finish();
    // The tensors as planned, with offsets filled in.
    const std::vector<safetensors_entry>& tensors() const { return tensors_; }

  private:
    std::string path_;
    std::vector<safetensors_entry> tensors_;
    int fd_ = -1;
    uint64_t written_ = 0, total_ = 0;
    bool finished_ = false;
};

}  // namespace nibble
