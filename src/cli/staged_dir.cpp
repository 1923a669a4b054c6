#include "cli/staged_dir.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace nibble {

namespace fs = std::filesystem;

staged_dir::staged_dir(const std::string& final_path) : final_(final_path) {
    std::error_code ec;
    if (fs::exists(final_path, ec)) fail("output {} already exists; choose a new folder", final_path);
    tmp_ = final_path + ".partial-" + std::to_string(getpid());
    fs::remove_all(tmp_, ec);
    if (!fs::create_directories(tmp_, ec)) fail("cannot create {}: {}", tmp_, ec.message());
}

staged_dir::~staged_dir() {
    if (committed_) return;
    std::error_code ec;
    fs::remove_all(tmp_, ec);
}

void staged_dir::commit() {
    std::error_code ec;
    fs::rename(tmp_, final_, ec);
    if (ec) fail("cannot move {} to {}: {}", tmp_, final_, ec.message());
    committed_ = true;
}

void write_text_file(const std::string& path, const std::string& text) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) fail("cannot write {}", path);
    bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    ok = std::fclose(f) == 0 && ok;
    if (!ok) fail("write to {} failed (disk full?)", path);
}

void copy_model_side_files(const std::string& src_dir, const std::string& dst_dir) {
    static const char* names[] = {"tokenizer.json",
                                  "tokenizer_config.json",
                                  "generation_config.json",
                                  "special_tokens_map.json",
                                  "vocab.json",
                                  "merges.txt",
                                  "added_tokens.json",
                                  "chat_template.jinja",
                                  "chat_template.json",
                                  "tokenizer.model"};
    for (const char* n : names) {
        fs::path s = fs::path(src_dir) / n;
        std::error_code ec;
        if (!fs::is_regular_file(s, ec)) continue;
        fs::copy_file(s, fs::path(dst_dir) / n, fs::copy_options::overwrite_existing, ec);
        if (ec) fail("cannot copy {}: {}", s.string(), ec.message());
    }
}

}  // namespace nibble
