// A Hugging Face checkpoint folder: config.json, and weights in model.safetensors or in shards listed by
// model.safetensors.index.json ("weight_map": tensor -> file). All files are mmap'd; tensors are views.
// Weight files are looked up as transformers does: model.safetensors, else the index, else every
// *.safetensors file in the folder. Tensors a shard holds beyond the weight_map are kept.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "loader/safetensors.h"

namespace nibble {

class checkpoint {
  public:
    // Opens `dir`. Fails (naming the file) when there is no weight file, a shard named by the index is
    // missing or malformed, the index maps a tensor to a file that does not hold it, or a tensor name
    // appears in two files.
    explicit checkpoint(const std::string& dir);

    const std::string& dir() const { return dir_; }
    // nullptr when absent.
    const tensor_view* find(const std::string& name) const;
    // Fails with "tensor NAME not found in DIR" when absent.
    const tensor_view& get(const std::string& name) const;
    // All tensors, by name.
    const std::map<std::string, tensor_view>& tensors() const { return tensors_; }
    // The weight files (paths: dir + "/" + name), in name order.
    std::vector<std::string> files() const;
    // Sum of the tensors' byte sizes (headers and gaps not counted).
    uint64_t total_bytes() const;

  private:
    std::string dir_;
    std::vector<std::unique_ptr<mapped_file>> files_;
    std::map<std::string, tensor_view> tensors_;
};

// Reads a whole text file; fails naming the path.
std::string read_text_file(const std::string& path);
// True for an existing regular file (symlinks followed); false for folders.
bool file_exists(const std::string& path);

}  // namespace nibble
