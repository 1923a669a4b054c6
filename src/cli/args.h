// A small command-line parser shared by the subcommands: --flag VALUE, --flag=VALUE, boolean
// switches and positionals. Unknown flags and missing values are errors naming the flag.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace nibble {

class arg_parser {
  public:
    // `options` take a value, `switches` do not.
    arg_parser(command_args args, std::set<std::string> options, std::set<std::string> switches);

    bool has(const std::string& flag) const;
    std::optional<std::string> get(const std::string& flag) const;
    std::string get_or(const std::string& flag, const std::string& fallback) const;
    double get_double(const std::string& flag, double fallback) const;
    int64_t get_int(const std::string& flag, int64_t fallback) const;
    const std::vector<std::string>& positionals() const { return positionals_; }
    // Fails unless the number of positionals is in [lo, hi].
    void expect_positionals(size_t lo, size_t hi, const char* usage) const;

  private:
    std::map<std::string, std::string> values_;
    std::set<std::string> switches_set_;
    std::vector<std::string> positionals_;
};

// Comma-separated integers ("1,4,16").
std::vector<int64_t> parse_int_list(const std::string& s, const char* flag);

}  // namespace nibble
