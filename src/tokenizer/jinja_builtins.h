// Jinja built-ins used by the evaluator: attribute/item access with the Python methods of
// strings, lists and dicts, slicing, operators, filters, tests and global functions.
// All failures are nibble::error without a location (the evaluator adds it).
#pragma once

#include <optional>
#include <string>

#include "tokenizer/jinja_value.h"

namespace nibble::jinja {

// obj.name: a dict key, else a bound method (str.split, dict.items, list.append...), else undefined.
value get_attribute(const value& obj, const std::string& name);
// obj[key]: list/string index (negative from the end), dict key; undefined when missing.
value get_item(const value& obj, const value& key);
// obj[start:stop:step] on a list or string, Python semantics.
value get_slice(const value& obj, std::optional<int64_t> start, std::optional<int64_t> stop,
                std::optional<int64_t> step);
// Iteration: a list's items, a dict's keys, a string's characters; undefined/none give nothing.
value_list iterate(const value& x);
// Python `item in container`.
bool contains(const value& container, const value& item);
// Binary arithmetic and string operators: + - * / // % ** ~.
value binary_op(const std::string& op, const value& a, const value& b);

// `x | name(args)`; fails on an unknown filter.
value apply_filter(const std::string& name, const value& x, const call_args& args);
// `x is name(args)`; fails on an unknown test.
bool apply_test(const std::string& name, const value& x, const call_args& args);

// The global functions: range, namespace, dict, raise_exception, strftime_now.
value make_globals();

// String helpers shared by filters and methods (UTF-8 aware).
std::string str_upper(const std::string& s);
std::string str_lower(const std::string& s);
std::string str_capitalize(const std::string& s);
std::string str_strip(const std::string& s, const value* chars, bool left, bool right);

}  // namespace nibble::jinja
