// Helpers shared by the tests: temporary folders, running the nibble binary, writing small files.
#pragma once

#include <string>

namespace nibble::test {

// A fresh empty folder under the system temp dir, removed when the object dies.
struct temp_dir {
    std::string path;
    temp_dir();
    ~temp_dir();
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

void write_file(const std::string& path, const std::string& text);
std::string read_file(const std::string& path);

struct run_result {
    int exit_code;
    std::string out;  // stdout and stderr together
};
// Runs `nibble ARGS` (ARGS already shell-quoted as needed).
run_result run_nibble(const std::string& args);

}  // namespace nibble::test
