#include "cli/args.h"

#include <cstdlib>

#include "core/error.h"

namespace nibble {

arg_parser::arg_parser(command_args args, std::set<std::string> options, std::set<std::string> switches) {
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a.size() < 2 || a[0] != '-' || a == "-") {
            positionals_.push_back(a);
            continue;
        }
        std::string flag = a, value;
        bool inline_value = false;
        if (size_t eq = a.find('='); eq != std::string::npos) {
            flag = a.substr(0, eq);
            value = a.substr(eq + 1);
            inline_value = true;
        }
        if (switches.count(flag)) {
            if (inline_value) fail("option {} takes no value", flag);
            switches_set_.insert(flag);
        } else if (options.count(flag)) {
            if (!inline_value) {
                if (i + 1 >= args.size()) fail("option {} needs a value", flag);
                value = args[++i];
            }
            values_[flag] = value;
        } else {
            fail("unknown option {}", flag);
        }
    }
}

bool arg_parser::has(const std::string& flag) const {
    return switches_set_.count(flag) || values_.count(flag);
}

std::optional<std::string> arg_parser::get(const std::string& flag) const {
    auto it = values_.find(flag);
    if (it == values_.end()) return std::nullopt;
    return it->second;
}

std::string arg_parser::get_or(const std::string& flag, const std::string& fallback) const {
    return get(flag).value_or(fallback);
}

double arg_parser::get_double(const std::string& flag, double fallback) const {
    auto v = get(flag);
    if (!v) return fallback;
    char* end = nullptr;
    double d = std::strtod(v->c_str(), &end);
    if (v->empty() || *end) fail("option {}: '{}' is not a number", flag, *v);
    return d;
}

int64_t arg_parser::get_int(const std::string& flag, int64_t fallback) const {
    auto v = get(flag);
    if (!v) return fallback;
    char* end = nullptr;
    long long d = std::strtoll(v->c_str(), &end, 10);
    if (v->empty() || *end) fail("option {}: '{}' is not an integer", flag, *v);
    return d;
}

void arg_parser::expect_positionals(size_t lo, size_t hi, const char* usage) const {
    if (positionals_.size() < lo || positionals_.size() > hi)
        fail("wrong number of arguments; usage: {}", usage);
}

std::vector<int64_t> parse_int_list(const std::string& s, const char* flag) {
    std::vector<int64_t> out;
    size_t pos = 0;
    while (pos <= s.size()) {
        size_t comma = s.find(',', pos);
        std::string part = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        char* end = nullptr;
        long long v = std::strtoll(part.c_str(), &end, 10);
        if (part.empty() || *end) fail("option {}: '{}' is not a list of integers", flag, s);
        out.push_back(v);
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return out;
}

}  // namespace nibble
