// Runtime values of the Jinja interpreter used for chat templates.
//
// A value is one of: undefined, none, bool, int, float, string (UTF-8 bytes), list, dict
// (insertion-ordered, string keys) or callable. Lists and dicts are shared by reference, as in
// Python: `ns.x = 1` through a namespace and `list.append(...)` mutate the one object every copy
// points to. A namespace is a dict with `is_namespace` set (attribute assignment allowed).
//
// Printing and comparisons follow Python/Jinja2: `{{ none }}` prints "None", `{{ true }}` prints
// "True", floats print as Python's repr ("1.0"), lists and dicts print as Python's repr. The
// `tojson` conversion matches Python's json.dumps as transformers calls it (ensure_ascii=False,
// ", " and ": " separators, "," with indent, key order kept).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace nibble::jinja {

struct value;
struct call_args;

struct undefined_t {
    bool operator==(const undefined_t&) const = default;
};

using value_list = std::vector<value>;

struct value_dict {
    std::vector<std::pair<std::string, value>> entries;  // insertion order
    bool is_namespace = false;

    const value* find(const std::string& key) const;  // nullptr when absent
    value* find(const std::string& key);
    void set(const std::string& key, value v);
    bool erase(const std::string& key);
};

// A callable: a global (range, namespace...), a bound method, or a macro.
using native_fn = std::function<value(call_args&)>;

enum value_kind : uint8_t {
    value_kind_undefined,
    value_kind_none,
    value_kind_bool,
    value_kind_int,
    value_kind_float,
    value_kind_string,
    value_kind_list,
    value_kind_dict,
    value_kind_function,
};

struct value {
    std::variant<undefined_t, std::nullptr_t, bool, int64_t, double, std::string, std::shared_ptr<value_list>,
                 std::shared_ptr<value_dict>, std::shared_ptr<native_fn>>
        v;

    value() : v(undefined_t{}) {}
    value(std::nullptr_t) : v(nullptr) {}
    value(bool b) : v(b) {}
    value(int i) : v(int64_t(i)) {}
    value(int64_t i) : v(i) {}
    value(double d) : v(d) {}
    value(const char* s) : v(std::string(s)) {}
    value(std::string s) : v(std::move(s)) {}
    value(value_list l) : v(std::make_shared<value_list>(std::move(l))) {}
    value(std::shared_ptr<value_list> l) : v(std::move(l)) {}
    value(std::shared_ptr<value_dict> d) : v(std::move(d)) {}
    value(native_fn f) : v(std::make_shared<native_fn>(std::move(f))) {}

    value_kind kind() const { return value_kind(v.index()); }
    bool is_undefined() const { return kind() == value_kind_undefined; }
    bool is_none() const { return kind() == value_kind_none; }
    bool is_bool() const { return kind() == value_kind_bool; }
    bool is_int() const { return kind() == value_kind_int; }
    bool is_float() const { return kind() == value_kind_float; }
    bool is_number() const { return is_int() || is_float(); }
    bool is_string() const { return kind() == value_kind_string; }
    bool is_list() const { return kind() == value_kind_list; }
    bool is_dict() const { return kind() == value_kind_dict; }
    bool is_function() const { return kind() == value_kind_function; }

    bool as_bool() const { return std::get<bool>(v); }
    int64_t as_int() const { return std::get<int64_t>(v); }
    double as_double() const;  // int, float or bool as a double
    const std::string& as_string() const { return std::get<std::string>(v); }
    value_list& as_list() const { return *std::get<std::shared_ptr<value_list>>(v); }
    value_dict& as_dict() const { return *std::get<std::shared_ptr<value_dict>>(v); }
    native_fn& as_function() const { return *std::get<std::shared_ptr<native_fn>>(v); }
};

// Positional and keyword arguments of a call.
struct call_args {
    std::vector<value> positional;
    std::vector<std::pair<std::string, value>> keyword;

    // The argument named `name` if passed by keyword, else positional `index`, else nullptr.
    const value* get(size_t index, const std::string& name) const;
};

value make_dict();
value make_namespace();
value make_list(value_list items = {});

// Jinja truthiness (Python's bool()).
bool truthy(const value& x);
// Python str(): what `{{ x }}` prints.
std::string to_string(const value& x);
// Python repr(): strings quoted, used inside printed lists/dicts.
std::string to_repr(const value& x);
// Python's float repr ("1.0", "0.1", "1e-07", "inf").
std::string float_repr(double d);
// Type name for error messages ("string", "list", ...).
const char* kind_name(const value& x);

// Python ==, with 1 == 1.0 == True.
bool values_equal(const value& a, const value& b);
// Python <; fails (nibble::error) on unorderable operands.
bool values_less(const value& a, const value& b);

// JSON conversion. Integers stay integers, floats stay floats, object key order is kept.
value from_json(const nlohmann::ordered_json& j);

struct tojson_options {
    std::optional<std::string> indent;  // nullopt: single line
    std::string item_sep = ", ";        // "," when indenting, unless given
    std::string key_sep = ": ";
    bool sort_keys = false;
    bool ensure_ascii = false;
};
// Python json.dumps; fails on callables. Undefined is written as null.
std::string to_json(const value& x, const tojson_options& opt = {});

// UTF-8 helpers: code points of a string and back (invalid bytes are kept as single units).
std::vector<uint32_t> utf8_decode(const std::string& s);
std::string utf8_encode(const std::vector<uint32_t>& cps);
size_t utf8_length(const std::string& s);

}  // namespace nibble::jinja
