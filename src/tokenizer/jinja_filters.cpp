// Jinja filters and tests, with Jinja2's argument names and defaults.
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "tokenizer/jinja_builtins.h"

namespace nibble::jinja {

namespace {

bool arg_bool(const call_args& a, size_t i, const char* name, bool def) {
    const value* v = a.get(i, name);
    return v ? truthy(*v) : def;
}

// Attribute path "a.b.0" (Jinja's make_attrgetter).
value attr_path(const value& x, const std::string& path) {
    value cur = x;
    size_t pos = 0;
    while (pos <= path.size()) {
        size_t dot = path.find('.', pos);
        std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
        bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
        cur = numeric ? get_item(cur, value(int64_t(std::atoll(part.c_str())))) : get_item(cur, value(part));
        if (dot == std::string::npos) break;
        pos = dot + 1;
    }
    return cur;
}

value attr_of(const value& x, const value& attribute) {
    if (attribute.is_int()) return get_item(x, attribute);
    return attr_path(x, to_string(attribute));
}

// Sort key: strings lowered unless case_sensitive.
value sort_key(const value& v, bool case_sensitive) {
    return v.is_string() && !case_sensitive ? value(str_lower(v.as_string())) : v;
}

// select/reject/selectattr/rejectattr: args after the attribute are (test name, test args...).
value select_impl(const value& x, const call_args& a, bool with_attr, bool keep) {
    size_t first = with_attr ? 1 : 0;
    if (with_attr && a.positional.empty()) fail("selectattr/rejectattr need an attribute name");
    std::string test;
    call_args test_args;
    if (a.positional.size() > first) {
        test = to_string(a.positional[first]);
        test_args.positional.assign(a.positional.begin() + long(first) + 1, a.positional.end());
        test_args.keyword = a.keyword;
    }
    value_list out;
    for (const value& item : iterate(x)) {
        value subject = with_attr ? attr_of(item, a.positional[0]) : item;
        bool ok = test.empty() ? truthy(subject) : apply_test(test, subject, test_args);
        if (ok == keep) out.push_back(item);
    }
    return make_list(std::move(out));
}

std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&#34;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

// Python printf-style formatting for the `format` filter: %s %r %d %i %f %% (with precision).
std::string percent_format(const std::string& f, const call_args& a) {
    std::string out;
    size_t next = 0;
    for (size_t i = 0; i < f.size(); ++i) {
        if (f[i] != '%') {
            out += f[i];
            continue;
        }
        size_t j = i + 1;
        std::string spec;
        while (j < f.size() && std::string("0123456789.-+ ").find(f[j]) != std::string::npos) spec += f[j++];
        if (j >= f.size()) fail("format: incomplete format");
        char conv = f[j];
        i = j;
        if (conv == '%') {
            out += '%';
            continue;
        }
        if (next >= a.positional.size()) fail("format: not enough arguments");
        const value& v = a.positional[next++];
        if (conv == 's')
            out += to_string(v);
        else if (conv == 'r')
            out += to_repr(v);
        else if (conv == 'd' || conv == 'i')
            out += fmt::format("{}", int64_t(v.as_double()));
        else if (conv == 'f') {
            size_t dot = spec.find('.');
            int prec = dot == std::string::npos ? 6 : std::atoi(spec.c_str() + dot + 1);
            out += fmt::format("{:.{}f}", v.as_double(), prec);
        } else
            fail("format: unsupported conversion '%{}'", conv);
    }
    return out;
}

value to_int(const value& x, const value* def) {
    if (x.is_int()) return x;
    if (x.is_bool()) return value(int64_t(x.as_bool()));
    if (x.is_float()) return value(int64_t(x.as_double()));
    if (x.is_string()) {
        std::string s = str_strip(x.as_string(), nullptr, true, true);
        char* end = nullptr;
        long long i = std::strtoll(s.c_str(), &end, 10);
        if (!s.empty() && *end == 0) return value(int64_t(i));
        double d = std::strtod(s.c_str(), &end);
        if (!s.empty() && *end == 0) return value(int64_t(d));
    }
    return def ? *def : value(int64_t(0));
}

}  // namespace

value apply_filter(const std::string& name, const value& x, const call_args& a) {
    const value* a0 = a.positional.empty() ? nullptr : &a.positional[0];
    if (name == "length" || name == "count") {
        if (x.is_string()) return value(int64_t(utf8_length(x.as_string())));
        if (x.is_list()) return value(int64_t(x.as_list().size()));
        if (x.is_dict()) return value(int64_t(x.as_dict().entries.size()));
        if (x.is_undefined()) return value(int64_t(0));
        fail("object of type '{}' has no length", kind_name(x));
    }
    if (name == "tojson") {
        tojson_options opt;
        if (const value* indent = a.get(0, "indent"); indent && !indent->is_none()) {
            opt.indent = indent->is_int() ? std::string(size_t(std::max<int64_t>(0, indent->as_int())), ' ')
                                          : to_string(*indent);
            opt.item_sep = ",";
        }
        if (const value* seps = a.get(99, "separators");
            seps && seps->is_list() && seps->as_list().size() == 2) {
            opt.item_sep = to_string(seps->as_list()[0]);
            opt.key_sep = to_string(seps->as_list()[1]);
        }
        opt.sort_keys = arg_bool(a, 99, "sort_keys", false);
        opt.ensure_ascii = arg_bool(a, 99, "ensure_ascii", false);
        return value(to_json(x, opt));
    }
    if (name == "trim") {
        if (!x.is_string()) return value(str_strip(to_string(x), a.get(0, "chars"), true, true));
        return value(str_strip(x.as_string(), a.get(0, "chars"), true, true));
    }
    if (name == "string") return x.is_string() ? x : value(to_string(x));
    if (name == "safe") return x;
    if (name == "escape" || name == "e" || name == "forceescape") return value(html_escape(to_string(x)));
    if (name == "upper") return value(str_upper(to_string(x)));
    if (name == "lower") return value(str_lower(to_string(x)));
    if (name == "capitalize") return value(str_capitalize(to_string(x)));
    if (name == "title") {
        // Jinja's title: words start after whitespace, '-', or an opening bracket.
        std::vector<uint32_t> cps = utf8_decode(to_string(x));
        bool start = true;
        std::string out;
        for (uint32_t cp : cps) {
            std::string c = utf8_encode({cp});
            out += start ? str_upper(c) : str_lower(c);
            start = cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '-' || cp == '(' ||
                    cp == '{' || cp == '[' || cp == '<';
        }
        return value(out);
    }
    if (name == "default" || name == "d") {
        bool boolean = arg_bool(a, 1, "boolean", false);
        if (x.is_undefined() || (boolean && !truthy(x))) {
            const value* def = a.get(0, "default_value");
            return def ? *def : value("");
        }
        return x;
    }
    if (name == "join") {
        const value* sep = a.get(0, "d");
        const value* attribute = a.get(1, "attribute");
        std::string out, s = sep ? to_string(*sep) : "";
        bool first = true;
        for (const value& v : iterate(x)) {
            if (!first) out += s;
            first = false;
            out += to_string(attribute ? attr_of(v, *attribute) : v);
        }
        return value(out);
    }
    if (name == "first" || name == "last") {
        value_list items = iterate(x);
        if (items.empty()) return value();
        return name == "first" ? items.front() : items.back();
    }
    if (name == "list") return make_list(iterate(x));
    if (name == "items") {
        if (x.is_undefined()) return make_list();
        if (!x.is_dict()) fail("items: expected a mapping, got {}", kind_name(x));
        value_list out;
        for (const auto& [k, v] : x.as_dict().entries) out.push_back(make_list({value(k), v}));
        return make_list(std::move(out));
    }
    if (name == "int") return to_int(x, a.get(0, "default"));
    if (name == "float") {
        if (x.is_number() || x.is_bool()) return value(x.as_double());
        if (x.is_string()) {
            char* end = nullptr;
            std::string s = str_strip(x.as_string(), nullptr, true, true);
            double d = std::strtod(s.c_str(), &end);
            if (!s.empty() && *end == 0) return value(d);
        }
        const value* def = a.get(0, "default");
        return def ? *def : value(0.0);
    }
    if (name == "abs") {
        if (x.is_int()) return value(x.as_int() < 0 ? -x.as_int() : x.as_int());
        return value(std::fabs(x.as_double()));
    }
    if (name == "round") {
        const value* p = a.get(0, "precision");
        std::string method = a.get(1, "method") ? to_string(*a.get(1, "method")) : "common";
        double scale = std::pow(10.0, p ? p->as_double() : 0.0), v = x.as_double() * scale;
        v = method == "ceil" ? std::ceil(v) : method == "floor" ? std::floor(v) : std::round(v);
        return value(v / scale);
    }
    if (name == "replace") {
        if (!a0 || a.positional.size() < 2) fail("replace needs two arguments");
        value method = get_attribute(value(to_string(x)), "replace");
        call_args args = a;
        return method.as_function()(args);
    }
    if (name == "reverse") {
        if (x.is_string()) return get_slice(x, std::nullopt, std::nullopt, -1);
        value_list items = iterate(x);
        std::reverse(items.begin(), items.end());
        return make_list(std::move(items));
    }
    if (name == "indent") {
        const value* w = a.get(0, "width");
        std::string pad = !w               ? "    "
                          : w->is_string() ? w->as_string()
                                           : std::string(size_t(w->as_int()), ' ');
        bool first = arg_bool(a, 1, "first", false), blank = arg_bool(a, 2, "blank", false);
        std::string s = to_string(x) + "\n", out;
        std::vector<std::string> lines;
        for (size_t pos = 0; pos < s.size();) {
            size_t nl = s.find('\n', pos);
            lines.push_back(s.substr(pos, nl - pos));
            pos = nl + 1;
        }
        for (size_t i = 0; i < lines.size(); ++i) {
            if (i > 0) out += "\n";
            bool indent_it = i > 0 ? (blank || !lines[i].empty()) : first;
            out += (indent_it ? pad : "") + lines[i];
        }
        return value(out);
    }
    if (name == "map") {
        value_list out;
        const value* attribute = a.get(99, "attribute");
        if (attribute) {
            const value* def = a.get(99, "default");
            for (const value& v : iterate(x)) {
                value r = attr_of(v, *attribute);
                out.push_back(r.is_undefined() && def ? *def : r);
            }
        } else {
            if (!a0) fail("map needs a filter name or attribute=");
            call_args rest;
            rest.positional.assign(a.positional.begin() + 1, a.positional.end());
            rest.keyword = a.keyword;
            for (const value& v : iterate(x)) out.push_back(apply_filter(to_string(*a0), v, rest));
        }
        return make_list(std::move(out));
    }
    if (name == "select") return select_impl(x, a, false, true);
    if (name == "reject") return select_impl(x, a, false, false);
    if (name == "selectattr") return select_impl(x, a, true, true);
    if (name == "rejectattr") return select_impl(x, a, true, false);
    if (name == "unique" || name == "sort" || name == "min" || name == "max") {
        bool case_sensitive = arg_bool(a, name == "sort" ? 1 : 0, "case_sensitive", false);
        const value* attribute = a.get(name == "sort" ? 2 : 99, "attribute");
        value_list items = iterate(x);
        auto key = [&](const value& v) {
            return sort_key(attribute ? attr_of(v, *attribute) : v, case_sensitive);
        };
        if (name == "unique") {
            value_list out, seen;
            for (const value& v : items) {
                value k = key(v);
                if (std::none_of(seen.begin(), seen.end(),
                                 [&](const value& s) { return values_equal(s, k); })) {
                    seen.push_back(k);
                    out.push_back(v);
                }
            }
            return make_list(std::move(out));
        }
        std::stable_sort(items.begin(), items.end(),
                         [&](const value& p, const value& q) { return values_less(key(p), key(q)); });
        if (name == "min") return items.empty() ? value() : items.front();
        if (name == "max") {
            if (items.empty()) return value();
            // The first of equal maxima, as Python's max().
            value best = items.back();
            for (const value& v : items)
                if (!values_less(key(v), key(best))) return v;
            return best;
        }
        if (arg_bool(a, 0, "reverse", false)) std::reverse(items.begin(), items.end());
        return make_list(std::move(items));
    }
    if (name == "dictsort") {
        if (!x.is_dict()) fail("dictsort: expected a mapping, got {}", kind_name(x));
        bool case_sensitive = arg_bool(a, 0, "case_sensitive", false);
        bool by_value = a.get(1, "by") && to_string(*a.get(1, "by")) == "value";
        value_list items;
        for (const auto& [k, v] : x.as_dict().entries) items.push_back(make_list({value(k), v}));
        std::stable_sort(items.begin(), items.end(), [&](const value& p, const value& q) {
            return values_less(sort_key(p.as_list()[by_value], case_sensitive),
                               sort_key(q.as_list()[by_value], case_sensitive));
        });
        if (arg_bool(a, 2, "reverse", false)) std::reverse(items.begin(), items.end());
        return make_list(std::move(items));
    }
    if (name == "sum") {
        const value* attribute = a.get(0, "attribute");
        const value* start = a.get(1, "start");
        value total = start ? *start : value(int64_t(0));
        for (const value& v : iterate(x))
            total = binary_op("+", total, attribute ? attr_of(v, *attribute) : v);
        return total;
    }
    if (name == "attr") return a0 ? get_attribute(x, to_string(*a0)) : value();
    if (name == "format") return value(percent_format(to_string(x), a));
    if (name == "wordcount") {
        call_args none;
        return value(
            int64_t(iterate(get_attribute(value(to_string(x)), "split").as_function()(none)).size()));
    }
    if (name == "batch") {
        if (!a0 || !a0->is_int() || a0->as_int() <= 0) fail("batch needs a positive size");
        value_list out, cur;
        for (const value& v : iterate(x)) {
            cur.push_back(v);
            if (int64_t(cur.size()) == a0->as_int()) out.push_back(make_list(std::move(cur))), cur.clear();
        }
        if (!cur.empty()) {
            if (const value* fill = a.get(1, "fill_with"))
                while (int64_t(cur.size()) < a0->as_int()) cur.push_back(*fill);
            out.push_back(make_list(std::move(cur)));
        }
        return make_list(std::move(out));
    }
    fail("unknown filter '{}'", name);
}

bool apply_test(const std::string& name, const value& x, const call_args& a) {
    const value* a0 = a.positional.empty() ? nullptr : &a.positional[0];
    auto need = [&]() -> const value& {
        if (!a0) fail("test '{}' needs an argument", name);
        return *a0;
    };
    if (name == "defined") return !x.is_undefined();
    if (name == "undefined") return x.is_undefined();
    if (name == "none") return x.is_none();
    if (name == "string") return x.is_string();
    if (name == "mapping") return x.is_dict() && !x.as_dict().is_namespace;
    if (name == "iterable") return x.is_list() || x.is_dict() || x.is_string() || x.is_undefined();
    if (name == "sequence") return x.is_list() || x.is_dict() || x.is_string();
    if (name == "number") return x.is_number() || x.is_bool();
    if (name == "integer") return x.is_int();
    if (name == "float") return x.is_float();
    if (name == "boolean") return x.is_bool();
    if (name == "true") return x.is_bool() && x.as_bool();
    if (name == "false") return x.is_bool() && !x.as_bool();
    if (name == "callable") return x.is_function();
    if (name == "escaped") return false;
    if (name == "lower") return x.is_string() && str_lower(x.as_string()) == x.as_string();
    if (name == "upper") return x.is_string() && str_upper(x.as_string()) == x.as_string();
    if (name == "odd" || name == "even") {
        if (!x.is_int()) fail("test '{}' needs an integer", name);
        return (x.as_int() % 2 != 0) == (name == "odd");
    }
    if (name == "divisibleby") {
        const value& n = need();
        if (!x.is_int() || !n.is_int() || n.as_int() == 0) fail("divisibleby needs non-zero integers");
        return x.as_int() % n.as_int() == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==") return values_equal(x, need());
    if (name == "ne" || name == "!=") return !values_equal(x, need());
    if (name == "lt" || name == "lessthan" || name == "<") return values_less(x, need());
    if (name == "le" || name == "<=") return !values_less(need(), x);
    if (name == "gt" || name == "greaterthan" || name == ">") return values_less(need(), x);
    if (name == "ge" || name == ">=") return !values_less(x, need());
    if (name == "in") return contains(need(), x);
    if (name == "sameas") {
        const value& o = need();
        if (x.kind() != o.kind()) return false;
        if (x.is_list()) return &x.as_list() == &o.as_list();
        if (x.is_dict()) return &x.as_dict() == &o.as_dict();
        return values_equal(x, o);
    }
    fail("unknown test '{}'", name);
}

}  // namespace nibble::jinja
