// The bundled model's folder, shared by the subcommands that default to it (run, serve).
#include <filesystem>

#include "cli/commands.h"

namespace nibble {

std::string default_model_dir() {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    for (fs::path dir = exe.parent_path(); !ec && !dir.empty() && dir != dir.root_path();
         dir = dir.parent_path())
        if (fs::exists(dir / "models/qwen3-tiny/config.json")) return (dir / "models/qwen3-tiny").string();
    return std::string(NIBBLE_SOURCE_DIR) + "/models/qwen3-tiny";
}

}  // namespace nibble
