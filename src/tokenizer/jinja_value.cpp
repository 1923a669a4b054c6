#include "tokenizer/jinja_value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace nibble::jinja {

const value* value_dict::find(const std::string& key) const {
    for (const auto& [k, v] : entries)
        if (k == key) return &v;
    return nullptr;
}

value* value_dict::find(const std::string& key) {
    for (auto& [k, v] : entries)
        if (k == key) return &v;
    return nullptr;
}

void value_dict::set(const std::string& key, value v) {
    if (value* slot = find(key)) {
        *slot = std::move(v);
        return;
    }
    entries.emplace_back(key, std::move(v));
}

bool value_dict::erase(const std::string& key) {
    for (auto it = entries.begin(); it != entries.end(); ++it) {
        if (it->first == key) {
            entries.erase(it);
            return true;
        }
    }
    return false;
}

double value::as_double() const {
    switch (kind()) {
        case value_kind_int:
            return double(as_int());
        case value_kind_float:
            return std::get<double>(v);
        case value_kind_bool:
            return as_bool() ? 1.0 : 0.0;
        default:
            fail("expected a number, got {}", kind_name(*this));
    }
}

const value* call_args::get(size_t index, const std::string& name) const {
    for (const auto& [k, v] : keyword)
        if (k == name) return &v;
    if (index < positional.size()) return &positional[index];
    return nullptr;
}

value make_dict() {
    return value(std::make_shared<value_dict>());
}

value make_namespace() {
    auto d = std::make_shared<value_dict>();
    d->is_namespace = true;
    return value(std::move(d));
}

value make_list(value_list items) {
    return value(std::make_shared<value_list>(std::move(items)));
}

bool truthy(const value& x) {
    switch (x.kind()) {
        case value_kind_undefined:
        case value_kind_none:
            return false;
        case value_kind_bool:
            return x.as_bool();
        case value_kind_int:
            return x.as_int() != 0;
        case value_kind_float:
            return x.as_double() != 0.0;
        case value_kind_string:
            return !x.as_string().empty();
        case value_kind_list:
            return !x.as_list().empty();
        case value_kind_dict:
            return x.as_dict().is_namespace || !x.as_dict().entries.empty();
        case value_kind_function:
            return true;
    }
    return false;
}

const char* kind_name(const value& x) {
    switch (x.kind()) {
        case value_kind_undefined:
            return "undefined";
        case value_kind_none:
            return "none";
        case value_kind_bool:
            return "bool";
        case value_kind_int:
            return "int";
        case value_kind_float:
            return "float";
        case value_kind_string:
            return "string";
        case value_kind_list:
            return "list";
        case value_kind_dict:
            return x.as_dict().is_namespace ? "namespace" : "dict";
        case value_kind_function:
            return "callable";
    }
    return "?";
}

std::string float_repr(double d) {
    if (std::isnan(d)) return "nan";
    if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
    if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
    // Shortest digits that round-trip, then Python's layout: scientific below 1e-4 or from 1e16.
    char buf[64];
    for (int prec = 1; prec <= 17; ++prec) {
        std::snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
        if (std::strtod(buf, nullptr) == d) break;
    }
    std::string s = buf;  // [-]D.DDDDe[+-]XX
    bool neg = s[0] == '-';
    if (neg) s.erase(0, 1);
    size_t e = s.find('e');
    int exp = std::atoi(s.c_str() + e + 1);
    std::string digits;
    for (size_t i = 0; i < e; ++i)
        if (s[i] != '.') digits += s[i];
    while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
    std::string out;
    if (exp < -4 || exp >= 16) {
        out = digits.substr(0, 1);
        if (digits.size() > 1) out += "." + digits.substr(1);
        char eb[16];
        std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
        out += eb;
    } else if (exp < 0) {
        out = "0." + std::string(size_t(-exp - 1), '0') + digits;
    } else if (size_t(exp) + 1 >= digits.size()) {
        out = digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
    } else {
        out = digits.substr(0, size_t(exp) + 1) + "." + digits.substr(size_t(exp) + 1);
    }
    return neg ? "-" + out : out;
}

static std::string string_repr(const std::string& s) {
    char quote = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
    std::string out(1, quote);
    for (unsigned char c : s) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else if (c == '\r')
            out += "\\r";
        else if (c == '\t')
            out += "\\t";
        else if (c == quote)
            out += std::string("\\") + char(c);
        else if (c < 0x20 || c == 0x7f) {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            out += b;
        } else
            out += char(c);
    }
    return out + quote;
}

std::string to_repr(const value& x) {
    switch (x.kind()) {
        case value_kind_string:
            return string_repr(x.as_string());
        case value_kind_list: {
            std::string out = "[";
            bool first = true;
            for (const value& e : x.as_list()) {
                if (!first) out += ", ";
                first = false;
                out += to_repr(e);
            }
            return out + "]";
        }
        case value_kind_dict: {
            if (x.as_dict().is_namespace) return "<Namespace>";
            std::string out = "{";
            bool first = true;
            for (const auto& [k, e] : x.as_dict().entries) {
                if (!first) out += ", ";
                first = false;
                out += string_repr(k) + ": " + to_repr(e);
            }
            return out + "}";
        }
        default:
            return to_string(x);
    }
}

std::string to_string(const value& x) {
    switch (x.kind()) {
        case value_kind_undefined:
            return "";
        case value_kind_none:
            return "None";
        case value_kind_bool:
            return x.as_bool() ? "True" : "False";
        case value_kind_int:
            return std::to_string(x.as_int());
        case value_kind_float:
            return float_repr(x.as_double());
        case value_kind_string:
            return x.as_string();
        case value_kind_function:
            return "<function>";
        default:
            return to_repr(x);
    }
}

static bool is_numeric(const value& x) {
    return x.is_int() || x.is_float() || x.is_bool();
}

bool values_equal(const value& a, const value& b) {
    if (is_numeric(a) && is_numeric(b)) {
        if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
        int64_t ia = a.is_bool() ? a.as_bool() : a.as_int(), ib = b.is_bool() ? b.as_bool() : b.as_int();
        return ia == ib;
    }
    if (a.kind() != b.kind()) return false;
    switch (a.kind()) {
        case value_kind_undefined:
        case value_kind_none:
            return true;
        case value_kind_string:
            return a.as_string() == b.as_string();
        case value_kind_list: {
            const value_list &la = a.as_list(), &lb = b.as_list();
            if (la.size() != lb.size()) return false;
            for (size_t i = 0; i < la.size(); ++i)
                if (!values_equal(la[i], lb[i])) return false;
            return true;
        }
        case value_kind_dict: {
            const value_dict &da = a.as_dict(), &db = b.as_dict();
            if (da.is_namespace || db.is_namespace) return &da == &db;
            if (da.entries.size() != db.entries.size()) return false;
            for (const auto& [k, v] : da.entries) {
                const value* o = db.find(k);
                if (!o || !values_equal(v, *o)) return false;
            }
            return true;
        }
        case value_kind_function:
            return &a.as_function() == &b.as_function();
        default:
            return false;
    }
}

bool values_less(const value& a, const value& b) {
    if (is_numeric(a) && is_numeric(b)) {
        if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
        int64_t ia = a.is_bool() ? a.as_bool() : a.as_int(), ib = b.is_bool() ? b.as_bool() : b.as_int();
        return ia < ib;
    }
    if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
    if (a.is_list() && b.is_list()) {
        const value_list &la = a.as_list(), &lb = b.as_list();
        for (size_t i = 0; i < la.size() && i < lb.size(); ++i) {
            if (values_less(la[i], lb[i])) return true;
            if (values_less(lb[i], la[i])) return false;
        }
        return la.size() < lb.size();
    }
    fail("'<' not supported between {} and {}", kind_name(a), kind_name(b));
}

value from_json(const nlohmann::ordered_json& j) {
    switch (j.type()) {
        case nlohmann::ordered_json::value_t::null:
            return value(nullptr);
        case nlohmann::ordered_json::value_t::boolean:
            return value(j.get<bool>());
        case nlohmann::ordered_json::value_t::number_integer:
            return value(j.get<int64_t>());
        case nlohmann::ordered_json::value_t::number_unsigned:
            return value(int64_t(j.get<uint64_t>()));
        case nlohmann::ordered_json::value_t::number_float:
            return value(j.get<double>());
        case nlohmann::ordered_json::value_t::string:
            return value(j.get<std::string>());
        case nlohmann::ordered_json::value_t::array: {
            value_list items;
            items.reserve(j.size());
            for (const auto& e : j) items.push_back(from_json(e));
            return make_list(std::move(items));
        }
        case nlohmann::ordered_json::value_t::object: {
            value d = make_dict();
            for (auto it = j.begin(); it != j.end(); ++it) d.as_dict().set(it.key(), from_json(it.value()));
            return d;
        }
        default:
            return value();
    }
}

static void json_string(const std::string& s, bool ensure_ascii, std::string& out) {
    out += '"';
    auto put_u = [&](uint32_t u) {
        char b[16];
        std::snprintf(b, sizeof b, "\\u%04x", unsigned(u & 0xFFFF));
        out += b;
    };
    // One ASCII character (or raw byte when non-ASCII is kept), escaped as Python's json.dumps does.
    auto put_ascii = [&](uint32_t c) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            default:
                if (c < 0x20)
                    put_u(c);
                else
                    out += char(c);
        }
    };
    if (ensure_ascii) {
        for (uint32_t cp : utf8_decode(s)) {
            if (cp < 0x80) {
                put_ascii(cp);
            } else if (cp >= 0x10000) {
                cp -= 0x10000;
                put_u(0xD800 + (cp >> 10));
                put_u(0xDC00 + (cp & 0x3FF));
            } else {
                put_u(cp);
            }
        }
    } else {
        for (unsigned char c : s) put_ascii(c);
    }
    out += '"';
}

static void json_value(const value& x, const tojson_options& opt, int depth, std::string& out) {
    auto newline = [&](int d) {
        out += '\n';
        for (int i = 0; i < d; ++i) out += *opt.indent;
    };
    switch (x.kind()) {
        case value_kind_undefined:
        case value_kind_none:
            out += "null";
            return;
        case value_kind_bool:
            out += x.as_bool() ? "true" : "false";
            return;
        case value_kind_int:
            out += std::to_string(x.as_int());
            return;
        case value_kind_float: {
            double d = x.as_double();
            if (std::isnan(d))
                out += "NaN";
            else if (std::isinf(d))
                out += d < 0 ? "-Infinity" : "Infinity";
            else
                out += float_repr(d);
            return;
        }
        case value_kind_string:
            json_string(x.as_string(), opt.ensure_ascii, out);
            return;
        case value_kind_list: {
            const value_list& l = x.as_list();
            if (l.empty()) {
                out += "[]";
                return;
            }
            out += '[';
            for (size_t i = 0; i < l.size(); ++i) {
                if (i) out += opt.item_sep;
                if (opt.indent) newline(depth + 1);
                json_value(l[i], opt, depth + 1, out);
            }
            if (opt.indent) newline(depth);
            out += ']';
            return;
        }
        case value_kind_dict: {
            std::vector<const std::pair<std::string, value>*> entries;
            for (const auto& e : x.as_dict().entries) entries.push_back(&e);
            if (opt.sort_keys)
                std::stable_sort(entries.begin(), entries.end(),
                                 [](auto* a, auto* b) { return a->first < b->first; });
            if (entries.empty()) {
                out += "{}";
                return;
            }
            out += '{';
            for (size_t i = 0; i < entries.size(); ++i) {
                if (i) out += opt.item_sep;
                if (opt.indent) newline(depth + 1);
                json_string(entries[i]->first, opt.ensure_ascii, out);
                out += opt.key_sep;
                json_value(entries[i]->second, opt, depth + 1, out);
            }
            if (opt.indent) newline(depth);
            out += '}';
            return;
        }
        case value_kind_function:
            fail("tojson: a callable is not JSON serializable");
    }
}

std::string to_json(const value& x, const tojson_options& opt) {
    std::string out;
    json_value(x, opt, 0, out);
    return out;
}

std::vector<uint32_t> utf8_decode(const std::string& s) {
    std::vector<uint32_t> out;
    out.reserve(s.size());
    size_t i = 0, n = s.size();
    while (i < n) {
        unsigned char c = s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; ok && k < len; ++k) {
            unsigned char cc = s[i + k];
            if ((cc >> 6) != 2) ok = false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (!ok) {
            out.push_back(0xDC00 + c);  // an invalid byte survives the round trip
            ++i;
            continue;
        }
        out.push_back(cp);
        i += size_t(len);
    }
    return out;
}

std::string utf8_encode(const std::vector<uint32_t>& cps) {
    std::string out;
    out.reserve(cps.size());
    for (uint32_t cp : cps) {
        if (cp >= 0xDC80 && cp <= 0xDCFF)
            out += char(cp - 0xDC00);
        else if (cp < 0x80)
            out += char(cp);
        else if (cp < 0x800) {
            out += char(0xC0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }
    return out;
}

size_t utf8_length(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s)
        if ((c >> 6) != 2) ++n;
    return n;
}

}  // namespace nibble::jinja
