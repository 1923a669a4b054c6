#include "loader/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace nibble {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* k_single = "model.safetensors";
constexpr const char* k_index = "model.safetensors.index.json";

// A shard name from index.json must stay inside the checkpoint folder.
bool is_safe_relative(const std::string& name) {
    if (name.empty()) return false;
    fs::path p(name);
    if (p.is_absolute()) return false;
    for (const fs::path& part : p)
        if (part == "..") return false;
    return true;
}

struct index_file {
    std::vector<std::string> shards;                // distinct file names, sorted
    std::map<std::string, std::string> weight_map;  // tensor -> file name
};

index_file read_index(const std::string& path) {
    json root;
    try {
        root = json::parse(read_text_file(path));
    } catch (const json::exception& e) {
        fail("{}: not valid JSON: {}", path, e.what());
    }
    if (!root.is_object()) fail("{}: expected a JSON object, found {}", path, root.type_name());
    auto it = root.find("weight_map");
    if (it == root.end()) fail("{}: missing \"weight_map\"", path);
    if (!it->is_object()) fail("{}: \"weight_map\" must be an object, found {}", path, it->type_name());
    index_file idx;
    for (const auto& [tensor, file] : it->items()) {
        if (!file.is_string())
            fail("{}: weight_map[\"{}\"] must be a file name string, found {}", path, tensor,
                 file.type_name());
        const std::string& name = file.get_ref<const std::string&>();
        if (!is_safe_relative(name))
            fail("{}: weight_map[\"{}\"] = \"{}\" is not a file name inside the checkpoint folder", path,
                 tensor, name);
        idx.weight_map[tensor] = name;
        idx.shards.push_back(name);
    }
    std::sort(idx.shards.begin(), idx.shards.end());
    idx.shards.erase(std::unique(idx.shards.begin(), idx.shards.end()), idx.shards.end());
    if (idx.shards.empty()) fail("{}: \"weight_map\" is empty", path);
    return idx;
}

// Every *.safetensors file directly in dir, sorted by name.
std::vector<std::string> glob_safetensors(const std::string& dir) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
        std::string name = e.path().filename().string();
        if (name.size() > 12 && name.ends_with(".safetensors") && e.is_regular_file(ec))
            names.push_back(name);
    }
    if (ec) fail("cannot list {}: {}", dir, ec.message());
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace

checkpoint::checkpoint(const std::string& dir) : dir_(dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) fail("{}: not a checkpoint folder (no such directory)", dir);

    // Same precedence as transformers: the single file, then the index, then whatever shards are there.
    std::vector<std::string> names;
    index_file idx;
    bool indexed = false;
    if (file_exists(dir + "/" + k_single)) {
        names = {k_single};
    } else if (file_exists(dir + "/" + k_index)) {
        idx = read_index(dir + "/" + k_index);
        indexed = true;
        names = idx.shards;
        for (const auto& [tensor, file] : idx.weight_map)
            if (!file_exists(dir + "/" + file))
                fail("{}/{}: names shard \"{}\" for tensor \"{}\" but {}/{} does not exist", dir, k_index,
                     file, tensor, dir, file);
    } else {
        names = glob_safetensors(dir);
        if (names.empty())
            fail("{}: no weights found (expected {}, {} or *.safetensors files)", dir, k_single, k_index);
    }

    std::map<std::string, const std::string*> owner;  // tensor -> file name, to catch duplicates
    for (const std::string& name : names) {
        files_.push_back(std::make_unique<mapped_file>(dir + "/" + name));
        const mapped_file& f = *files_.back();
        safetensors_header h = safetensors_parse(f.data(), f.size(), f.path());
        for (safetensors_entry& e : h.tensors) {
            auto [it, inserted] = owner.emplace(e.name, &name);
            if (!inserted) fail("{}: tensor \"{}\" is in both {} and {}", dir, e.name, *it->second, name);
            tensor_view v;
            v.name = e.name;
            v.type = e.type;
            v.shape = std::move(e.shape);
            v.data = f.data() + h.data_offset + e.begin;
            v.n_bytes = e.end - e.begin;
            tensors_.emplace(e.name, std::move(v));
        }
    }

    if (indexed)
        for (const auto& [tensor, file] : idx.weight_map) {
            auto it = owner.find(tensor);
            if (it == owner.end())
                fail("{}/{}: maps tensor \"{}\" to {}, which does not hold it", dir, k_index, tensor, file);
            if (*it->second != file)
                fail("{}/{}: maps tensor \"{}\" to {}, but it is in {}", dir, k_index, tensor, file,
                     *it->second);
        }
}

const tensor_view* checkpoint::find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

const tensor_view& checkpoint::get(const std::string& name) const {
    const tensor_view* v = find(name);
    if (!v) fail("tensor {} not found in {}", name, dir_);
    return *v;
}

std::vector<std::string> checkpoint::files() const {
    std::vector<std::string> paths;
    for (const auto& f : files_) paths.push_back(f->path());
    std::sort(paths.begin(), paths.end());
    return paths;
}

uint64_t checkpoint::total_bytes() const {
    uint64_t n = 0;
    for (const auto& [_, v] : tensors_) n += v.n_bytes;
    return n;
}

std::string read_text_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot read {}: {}", path, std::strerror(errno));
    std::string text;
    char buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            std::string why = std::strerror(errno);
            ::close(fd);
            fail("cannot read {}: {}", path, why);
        }
        if (n == 0) break;
        text.append(buf, size_t(n));
    }
    ::close(fd);
    return text;
}

bool file_exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace nibble
