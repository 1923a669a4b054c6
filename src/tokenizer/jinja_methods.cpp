// Attribute and item access, Python methods of str/list/dict, slicing, operators, globals.
#include <algorithm>
#include <cmath>
#include <ctime>

#include <utf8proc.h>

#include "core/error.h"
#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_eval.h"

namespace nibble::jinja {

namespace {

bool is_py_space(uint32_t cp) {
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f) || cp == 0x85 ||
           cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

bool is_cased(uint32_t cp) {
    auto c = utf8proc_category(utf8proc_int32_t(cp));
    return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}

uint32_t cp_upper(uint32_t cp) {
    return uint32_t(utf8proc_toupper(utf8proc_int32_t(cp)));
}
uint32_t cp_lower(uint32_t cp) {
    return uint32_t(utf8proc_tolower(utf8proc_int32_t(cp)));
}

const std::string& want_string(const value* v, const char* what) {
    if (!v || !v->is_string()) fail("{}: expected a string argument", what);
    return v->as_string();
}

int64_t normalize_index(int64_t i, int64_t n) {
    return i < 0 ? i + n : i;
}

std::vector<std::string> str_split(const std::string& s, const value* sep, int64_t maxsplit) {
    std::vector<std::string> out;
    if (!sep || sep->is_none() || sep->is_undefined()) {
        std::vector<uint32_t> cps = utf8_decode(s);
        size_t i = 0, n = cps.size();
        while (true) {
            while (i < n && is_py_space(cps[i])) ++i;
            if (i >= n) break;
            if (maxsplit >= 0 && int64_t(out.size()) == maxsplit) {
                size_t end = n;
                while (end > i && is_py_space(cps[end - 1])) --end;
                out.push_back(utf8_encode({cps.begin() + long(i), cps.begin() + long(end)}));
                break;
            }
            size_t start = i;
            while (i < n && !is_py_space(cps[i])) ++i;
            out.push_back(utf8_encode({cps.begin() + long(start), cps.begin() + long(i)}));
        }
        return out;
    }
    const std::string& d = want_string(sep, "split");
    if (d.empty()) fail("split: empty separator");
    size_t pos = 0;
    while (true) {
        size_t hit = s.find(d, pos);
        if (hit == std::string::npos || (maxsplit >= 0 && int64_t(out.size()) == maxsplit)) {
            out.push_back(s.substr(pos));
            return out;
        }
        out.push_back(s.substr(pos, hit - pos));
        pos = hit + d.size();
    }
}

value strings_to_list(const std::vector<std::string>& parts) {
    value_list items;
    for (const std::string& p : parts) items.emplace_back(p);
    return make_list(std::move(items));
}

std::string str_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
    std::string out;
    if (from.empty()) {
        std::vector<uint32_t> cps = utf8_decode(s);
        int64_t done = 0;
        for (uint32_t cp : cps) {
            if (count < 0 || done < count) out += to, ++done;
            out += utf8_encode({cp});
        }
        if (count < 0 || done < count) out += to;
        return out;
    }
    size_t pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
        size_t hit = s.find(from, pos);
        if (hit == std::string::npos) break;
        out += s.substr(pos, hit - pos) + to;
        pos = hit + from.size();
        ++done;
    }
    return out + s.substr(pos);
}

bool str_affix(const std::string& s, const value* arg, bool prefix) {
    auto test = [&](const std::string& a) {
        if (a.size() > s.size()) return false;
        return prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0;
    };
    if (arg && arg->is_list()) {
        for (const value& v : arg->as_list())
            if (test(want_string(&v, prefix ? "startswith" : "endswith"))) return true;
        return false;
    }
    return test(want_string(arg, prefix ? "startswith" : "endswith"));
}

std::string py_title(const std::string& s) {
    std::vector<uint32_t> cps = utf8_decode(s);
    bool prev_cased = false;
    for (uint32_t& cp : cps) {
        bool cased = is_cased(cp);
        if (cased) cp = prev_cased ? cp_lower(cp) : uint32_t(utf8proc_totitle(utf8proc_int32_t(cp)));
        prev_cased = cased;
    }
    return utf8_encode(cps);
}

// Python str.format with {}, {0}, {name} fields (no format specs) and {{ }} escapes.
std::string str_format(const std::string& fmt_s, const call_args& a) {
    std::string out;
    size_t auto_index = 0;
    for (size_t i = 0; i < fmt_s.size(); ++i) {
        char c = fmt_s[i];
        if (c == '}' && i + 1 < fmt_s.size() && fmt_s[i + 1] == '}') {
            out += '}', ++i;
            continue;
        }
        if (c != '{') {
            out += c;
            continue;
        }
        if (i + 1 < fmt_s.size() && fmt_s[i + 1] == '{') {
            out += '{', ++i;
            continue;
        }
        size_t end = fmt_s.find('}', i);
        if (end == std::string::npos) fail("format: unmatched '{{'");
        std::string field = fmt_s.substr(i + 1, end - i - 1);
        if (field.find(':') != std::string::npos || field.find('!') != std::string::npos)
            fail("format: format specs are not supported ('{}')", field);
        const value* v = nullptr;
        if (field.empty()) {
            v = auto_index < a.positional.size() ? &a.positional[auto_index] : nullptr;
            ++auto_index;
        } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
            size_t k = std::stoul(field);
            v = k < a.positional.size() ? &a.positional[k] : nullptr;
        } else {
            for (const auto& [name, kv] : a.keyword)
                if (name == field) v = &kv;
        }
        if (!v) fail("format: no argument for field '{{{}}}'", field);
        out += to_string(*v);
        i = end;
    }
    return out;
}

int64_t find_index(const std::string& s, const std::string& sub) {
    size_t hit = s.find(sub);
    return hit == std::string::npos ? -1 : int64_t(utf8_length(s.substr(0, hit)));
}

value string_method(const std::string& s, const std::string& name) {
    auto m = [](auto f) { return value(native_fn(f)); };
    if (name == "startswith")
        return m([s](call_args& a) { return value(str_affix(s, a.get(0, "prefix"), true)); });
    if (name == "endswith")
        return m([s](call_args& a) { return value(str_affix(s, a.get(0, "suffix"), false)); });
    if (name == "split" || name == "rsplit")
        return m([s, name](call_args& a) {
            const value* max = a.get(1, "maxsplit");
            int64_t maxsplit = max && max->is_int() ? max->as_int() : -1;
            if (name == "rsplit" && maxsplit >= 0) fail("rsplit with maxsplit is not supported");
            return strings_to_list(str_split(s, a.get(0, "sep"), maxsplit));
        });
    if (name == "strip" || name == "lstrip" || name == "rstrip")
        return m([s, name](call_args& a) {
            return value(str_strip(s, a.get(0, "chars"), name != "rstrip", name != "lstrip"));
        });
    if (name == "replace")
        return m([s](call_args& a) {
            const value* count = a.get(2, "count");
            return value(str_replace(s, want_string(a.get(0, "old"), "replace"),
                                     want_string(a.get(1, "new"), "replace"),
                                     count && count->is_int() ? count->as_int() : -1));
        });
    if (name == "upper") return m([s](call_args&) { return value(str_upper(s)); });
    if (name == "lower") return m([s](call_args&) { return value(str_lower(s)); });
    if (name == "title") return m([s](call_args&) { return value(py_title(s)); });
    if (name == "capitalize") return m([s](call_args&) { return value(str_capitalize(s)); });
    if (name == "format") return m([s](call_args& a) { return value(str_format(s, a)); });
    if (name == "join")
        return m([s](call_args& a) {
            std::string out;
            bool first = true;
            for (const value& v : iterate(a.positional.empty() ? value() : a.positional[0])) {
                if (!first) out += s;
                first = false;
                out += to_string(v);
            }
            return value(out);
        });
    if (name == "find")
        return m([s](call_args& a) { return value(find_index(s, want_string(a.get(0, "sub"), "find"))); });
    if (name == "count")
        return m([s](call_args& a) {
            const std::string& sub = want_string(a.get(0, "sub"), "count");
            if (sub.empty()) return value(int64_t(utf8_length(s) + 1));
            int64_t n = 0;
            for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
            return value(n);
        });
    if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum" ||
        name == "isupper" || name == "islower")
        return m([s, name](call_args&) {
            std::vector<uint32_t> cps = utf8_decode(s);
            if (cps.empty()) return value(false);
            bool any_cased = false;
            for (uint32_t cp : cps) {
                auto cat = utf8proc_category(utf8proc_int32_t(cp));
                bool alpha = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
                bool digit = cat == UTF8PROC_CATEGORY_ND;
                if (name == "isdigit" && !digit) return value(false);
                if (name == "isalpha" && !alpha) return value(false);
                if (name == "isalnum" && !alpha && !digit) return value(false);
                if (name == "isspace" && !is_py_space(cp)) return value(false);
                if (name == "isupper" && cat == UTF8PROC_CATEGORY_LL) return value(false);
                if (name == "islower" && cat == UTF8PROC_CATEGORY_LU) return value(false);
                any_cased = any_cased || is_cased(cp);
            }
            return value((name != "isupper" && name != "islower") || any_cased);
        });
    if (name == "splitlines")
        return m([s](call_args&) {
            std::vector<std::string> lines;
            size_t pos = 0;
            while (pos < s.size()) {
                size_t nl = s.find('\n', pos);
                if (nl == std::string::npos) nl = s.size();
                lines.push_back(s.substr(pos, nl - pos));
                pos = nl + 1;
            }
            return strings_to_list(lines);
        });
    return value();
}

value list_method(const value& list, const std::string& name) {
    auto m = [](auto f) { return value(native_fn(f)); };
    if (name == "append")
        return m([list](call_args& a) {
            if (a.positional.size() != 1) fail("append takes one argument");
            list.as_list().push_back(a.positional[0]);
            return value(nullptr);
        });
    if (name == "pop")
        return m([list](call_args& a) {
            value_list& l = list.as_list();
            if (l.empty()) fail("pop from empty list");
            int64_t i = a.positional.empty() ? -1 : a.positional[0].as_int();
            i = normalize_index(i, int64_t(l.size()));
            if (i < 0 || i >= int64_t(l.size())) fail("pop index out of range");
            value v = l[size_t(i)];
            l.erase(l.begin() + i);
            return v;
        });
    if (name == "index" || name == "count")
        return m([list, name](call_args& a) {
            if (a.positional.size() != 1) fail("{} takes one argument", name);
            int64_t n = 0, i = 0;
            for (const value& v : list.as_list()) {
                if (values_equal(v, a.positional[0])) {
                    if (name == "index") return value(i);
                    ++n;
                }
                ++i;
            }
            if (name == "index") fail("index: value is not in list");
            return value(n);
        });
    return value();
}

value dict_method(const value& dict, const std::string& name) {
    auto m = [](auto f) { return value(native_fn(f)); };
    if (name == "items")
        return m([dict](call_args&) {
            value_list items;
            for (const auto& [k, v] : dict.as_dict().entries) items.push_back(make_list({value(k), v}));
            return make_list(std::move(items));
        });
    if (name == "keys")
        return m([dict](call_args&) {
            value_list items;
            for (const auto& [k, v] : dict.as_dict().entries) items.emplace_back(k);
            return make_list(std::move(items));
        });
    if (name == "values")
        return m([dict](call_args&) {
            value_list items;
            for (const auto& [k, v] : dict.as_dict().entries) items.push_back(v);
            return make_list(std::move(items));
        });
    if (name == "get")
        return m([dict](call_args& a) {
            const value* key = a.get(0, "key");
            const value* def = a.get(1, "default");
            const value* hit = key && key->is_string() ? dict.as_dict().find(key->as_string()) : nullptr;
            return hit ? *hit : def ? *def : value(nullptr);
        });
    return value();
}

}  // namespace

// Python's full case mapping where one code point becomes several (SpecialCasing.txt).
const char* special_upper(uint32_t cp) {
    switch (cp) {
        case 0xDF:
            return "SS";
        case 0xFB00:
            return "FF";
        case 0xFB01:
            return "FI";
        case 0xFB02:
            return "FL";
        case 0xFB03:
            return "FFI";
        case 0xFB04:
            return "FFL";
        case 0xFB05:
        case 0xFB06:
            return "ST";
        case 0x149:
            return "\u02BCN";
        default:
            return nullptr;
    }
}

std::string str_upper(const std::string& s) {
    std::string out;
    for (uint32_t cp : utf8_decode(s)) {
        if (const char* sp = special_upper(cp))
            out += sp;
        else
            out += utf8_encode({cp_upper(cp)});
    }
    return out;
}

std::string str_lower(const std::string& s) {
    std::vector<uint32_t> out;
    for (uint32_t cp : utf8_decode(s)) {
        if (cp == 0x130) {  // İ -> i + combining dot above
            out.push_back('i');
            out.push_back(0x307);
        } else {
            out.push_back(cp_lower(cp));
        }
    }
    return utf8_encode(out);
}

std::string str_capitalize(const std::string& s) {
    std::vector<uint32_t> cps = utf8_decode(s);
    for (size_t i = 0; i < cps.size(); ++i)
        cps[i] = i == 0 ? uint32_t(utf8proc_totitle(utf8proc_int32_t(cps[i]))) : cp_lower(cps[i]);
    return utf8_encode(cps);
}

std::string str_strip(const std::string& s, const value* chars, bool left, bool right) {
    std::vector<uint32_t> cps = utf8_decode(s);
    std::vector<uint32_t> set;
    bool whitespace = !chars || chars->is_none() || chars->is_undefined();
    if (!whitespace) set = utf8_decode(want_string(chars, "strip"));
    auto strip_it = [&](uint32_t cp) {
        return whitespace ? is_py_space(cp) : std::find(set.begin(), set.end(), cp) != set.end();
    };
    size_t b = 0, e = cps.size();
    if (left)
        while (b < e && strip_it(cps[b])) ++b;
    if (right)
        while (e > b && strip_it(cps[e - 1])) --e;
    return utf8_encode({cps.begin() + long(b), cps.begin() + long(e)});
}

value get_attribute(const value& obj, const std::string& name) {
    switch (obj.kind()) {
        case value_kind_dict: {
            if (const value* v = obj.as_dict().find(name)) return *v;
            return obj.as_dict().is_namespace ? value() : dict_method(obj, name);
        }
        case value_kind_string:
            return string_method(obj.as_string(), name);
        case value_kind_list:
            return list_method(obj, name);
        default:
            return value();
    }
}

value get_item(const value& obj, const value& key) {
    if (obj.is_list() && (key.is_int() || key.is_bool())) {
        const value_list& l = obj.as_list();
        int64_t i = normalize_index(key.is_int() ? key.as_int() : key.as_bool(), int64_t(l.size()));
        return i >= 0 && i < int64_t(l.size()) ? l[size_t(i)] : value();
    }
    if (obj.is_string() && key.is_int()) {
        std::vector<uint32_t> cps = utf8_decode(obj.as_string());
        int64_t i = normalize_index(key.as_int(), int64_t(cps.size()));
        return i >= 0 && i < int64_t(cps.size()) ? value(utf8_encode({cps[size_t(i)]})) : value();
    }
    if (obj.is_dict() && key.is_string()) {
        const value* v = obj.as_dict().find(key.as_string());
        return v ? *v : value();
    }
    if (key.is_string()) return get_attribute(obj, key.as_string());
    return value();
}

value get_slice(const value& obj, std::optional<int64_t> start, std::optional<int64_t> stop,
                std::optional<int64_t> step_opt) {
    int64_t step = step_opt.value_or(1);
    if (step == 0) fail("slice step cannot be zero");
    std::vector<uint32_t> cps;
    int64_t n;
    if (obj.is_list())
        n = int64_t(obj.as_list().size());
    else if (obj.is_string())
        cps = utf8_decode(obj.as_string()), n = int64_t(cps.size());
    else if (obj.is_undefined() || obj.is_none())
        return value();
    else
        fail("cannot slice a {}", kind_name(obj));
    // Python's slice.indices().
    auto clamp = [&](std::optional<int64_t> v, int64_t def) {
        if (!v) return def;
        int64_t x = *v < 0 ? *v + n : *v;
        if (step > 0) return std::clamp<int64_t>(x, 0, n);
        return std::clamp<int64_t>(x, -1, n - 1);
    };
    int64_t b = clamp(start, step > 0 ? 0 : n - 1), e = clamp(stop, step > 0 ? n : -1);
    std::vector<int64_t> idx;
    for (int64_t i = b; step > 0 ? i < e : i > e; i += step) idx.push_back(i);
    if (obj.is_list()) {
        value_list out;
        for (int64_t i : idx) out.push_back(obj.as_list()[size_t(i)]);
        return make_list(std::move(out));
    }
    std::vector<uint32_t> out;
    for (int64_t i : idx) out.push_back(cps[size_t(i)]);
    return value(utf8_encode(out));
}

value_list iterate(const value& x) {
    switch (x.kind()) {
        case value_kind_list:
            return x.as_list();
        case value_kind_dict: {
            value_list keys;
            for (const auto& [k, v] : x.as_dict().entries) keys.emplace_back(k);
            return keys;
        }
        case value_kind_string: {
            value_list chars;
            for (uint32_t cp : utf8_decode(x.as_string())) chars.emplace_back(utf8_encode({cp}));
            return chars;
        }
        case value_kind_undefined:
        case value_kind_none:
            return {};
        default:
            fail("'{}' object is not iterable", kind_name(x));
    }
}

bool contains(const value& container, const value& item) {
    switch (container.kind()) {
        case value_kind_string:
            if (!item.is_string())
                fail("'in <string>' requires a string as left operand, not {}", kind_name(item));
            return container.as_string().find(item.as_string()) != std::string::npos;
        case value_kind_list:
            for (const value& v : container.as_list())
                if (values_equal(v, item)) return true;
            return false;
        case value_kind_dict:
            return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
        case value_kind_undefined:
        case value_kind_none:
            return false;
        default:
            fail("argument of type '{}' is not iterable", kind_name(container));
    }
}

value binary_op(const std::string& op, const value& a, const value& b) {
    if (op == "~") return value(to_string(a) + to_string(b));
    bool num = (a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool());
    bool ints = num && !a.is_float() && !b.is_float();
    auto as_i = [](const value& v) { return v.is_bool() ? int64_t(v.as_bool()) : v.as_int(); };
    if (op == "+") {
        if (ints) return value(as_i(a) + as_i(b));
        if (num) return value(a.as_double() + b.as_double());
        if (a.is_list() && b.is_list()) {
            value_list out = a.as_list();
            out.insert(out.end(), b.as_list().begin(), b.as_list().end());
            return make_list(std::move(out));
        }
        if (a.is_string() || b.is_string()) return value(to_string(a) + to_string(b));
    } else if (op == "-") {
        if (ints) return value(as_i(a) - as_i(b));
        if (num) return value(a.as_double() - b.as_double());
    } else if (op == "*") {
        if (ints) return value(as_i(a) * as_i(b));
        if (num) return value(a.as_double() * b.as_double());
        const value* seq = a.is_string() || a.is_list() ? &a : &b;
        const value* count = seq == &a ? &b : &a;
        if ((seq->is_string() || seq->is_list()) && count->is_int()) {
            if (seq->is_string()) {
                std::string out;
                for (int64_t i = 0; i < count->as_int(); ++i) out += seq->as_string();
                return value(out);
            }
            value_list out;
            for (int64_t i = 0; i < count->as_int(); ++i)
                out.insert(out.end(), seq->as_list().begin(), seq->as_list().end());
            return make_list(std::move(out));
        }
    } else if (op == "/") {
        if (num) {
            if (b.as_double() == 0) fail("division by zero");
            return value(a.as_double() / b.as_double());
        }
    } else if (op == "//" || op == "%") {
        if (num && b.as_double() == 0) fail("integer division or modulo by zero");
        if (ints) {
            int64_t x = as_i(a), y = as_i(b), q = x / y, r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) --q, r += y;  // Python floors
            return value(op == "//" ? q : r);
        }
        if (num) {
            double x = a.as_double(), y = b.as_double();
            if (op == "//") return value(std::floor(x / y));
            double r = std::fmod(x, y);
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            return value(r);
        }
    } else if (op == "**") {
        if (ints && as_i(b) >= 0) {
            int64_t r = 1, base = as_i(a);
            for (int64_t i = 0; i < as_i(b); ++i) r *= base;
            return value(r);
        }
        if (num) return value(std::pow(a.as_double(), b.as_double()));
    }
    fail("unsupported operand types for {}: {} and {}", op, kind_name(a), kind_name(b));
}

value make_globals() {
    value g = make_dict();
    value_dict& d = g.as_dict();
    d.set("range", native_fn([](call_args& a) {
              if (a.positional.empty() || a.positional.size() > 3) fail("range expects 1 to 3 arguments");
              for (const value& v : a.positional)
                  if (!v.is_int()) fail("range: arguments must be integers");
              int64_t start = 0, stop, step = 1;
              if (a.positional.size() == 1)
                  stop = a.positional[0].as_int();
              else
                  start = a.positional[0].as_int(), stop = a.positional[1].as_int();
              if (a.positional.size() == 3) step = a.positional[2].as_int();
              if (step == 0) fail("range: step must not be zero");
              value_list out;
              for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
              return make_list(std::move(out));
          }));
    auto make_mapping = [](call_args& a, value target) {
        if (a.positional.size() > 1) fail("expected at most 1 positional argument");
        if (!a.positional.empty()) {
            const value& src = a.positional[0];
            if (src.is_dict()) {
                for (const auto& [k, v] : src.as_dict().entries) target.as_dict().set(k, v);
            } else {
                for (const value& pair : iterate(src)) {
                    value_list kv = iterate(pair);
                    if (kv.size() != 2 || !kv[0].is_string()) fail("expected (key, value) pairs");
                    target.as_dict().set(kv[0].as_string(), kv[1]);
                }
            }
        }
        for (const auto& [k, v] : a.keyword) target.as_dict().set(k, v);
        return target;
    };
    d.set("namespace", native_fn([make_mapping](call_args& a) { return make_mapping(a, make_namespace()); }));
    d.set("dict", native_fn([make_mapping](call_args& a) { return make_mapping(a, make_dict()); }));
    d.set("raise_exception", native_fn([](call_args& a) -> value {
              throw template_error(a.positional.empty() ? std::string() : to_string(a.positional[0]));
          }));
    d.set("strftime_now", native_fn([](call_args& a) {
              const value* f = a.get(0, "format");
              if (!f || !f->is_string()) fail("strftime_now expects a format string");
              std::time_t now = std::time(nullptr);
              std::tm tm{};
              localtime_r(&now, &tm);
              char buf[256];
              size_t n = std::strftime(buf, sizeof buf, f->as_string().c_str(), &tm);
              return value(std::string(buf, n));
          }));
    return g;
}

}  // namespace nibble::jinja
