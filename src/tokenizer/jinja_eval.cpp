#include "tokenizer/jinja_eval.h"

#include <unordered_map>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_parser.h"

namespace nibble::jinja {

namespace {

// An error that already names its template location (not wrapped again on the way up).
struct located_error : nibble::error {
    using nibble::error::error;
};

struct scope;
using scope_ptr = std::shared_ptr<scope>;

// Variables of one frame; lookups walk to the parent, assignments stay in this frame.
struct scope {
    scope_ptr parent;
    std::unordered_map<std::string, value> vars;

    explicit scope(scope_ptr p = nullptr) : parent(std::move(p)) {}
    const value* lookup(const std::string& name) const {
        for (const scope* s = this; s; s = s->parent.get()) {
            auto it = s->vars.find(name);
            if (it != s->vars.end()) return &it->second;
        }
        return nullptr;
    }
    void set(const std::string& name, value v) { vars[name] = std::move(v); }
};

enum flow { flow_normal, flow_break, flow_continue };

template <class F>
auto at_location(int line, int col, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const template_error&) {
        throw;
    } catch (const located_error&) {
        throw;
    } catch (const nibble::error& e) {
        throw located_error(fmt::format("template line {}, column {}: {}", line, col, e.what()));
    }
}

class interpreter {
  public:
    flow exec_list(const stmt_list& body, const scope_ptr& sc, std::string& out) {
        for (const stmt_ptr& s : body) {
            flow f = at_location(s->line, s->col, [&] { return exec(*s, sc, out); });
            if (f != flow_normal) return f;
        }
        return flow_normal;
    }

    value eval(const expr& e, const scope_ptr& sc) {
        return at_location(e.line, e.col, [&] { return eval_inner(e, sc); });
    }

  private:
    flow exec(const stmt& s, const scope_ptr& sc, std::string& out) {
        switch (s.kind) {
            case stmt_kind_text:
                out += s.text;
                return flow_normal;
            case stmt_kind_output:
                out += to_string(eval(*s.e, sc));
                return flow_normal;
            case stmt_kind_if:
                for (const auto& [cond, body] : s.branches)
                    if (!cond || truthy(eval(*cond, sc))) return exec_list(body, sc, out);
                return flow_normal;
            case stmt_kind_for:
                exec_for(s, sc, out);
                return flow_normal;
            case stmt_kind_set: {
                value v = eval(*s.e, sc);
                if (!s.attr.empty()) {
                    const value* ns = sc->lookup(s.targets[0]);
                    if (!ns || !ns->is_dict() || !ns->as_dict().is_namespace)
                        fail("cannot assign attribute '{}' on '{}': not a namespace", s.attr, s.targets[0]);
                    ns->as_dict().set(s.attr, std::move(v));
                } else {
                    assign(s.targets, v, *sc);
                }
                return flow_normal;
            }
            case stmt_kind_set_block: {
                std::string body;
                exec_list(s.body, sc, body);
                value v(body);
                if (s.e) v = apply_block_filter(*s.e, v, sc);
                sc->set(s.targets[0], v);
                return flow_normal;
            }
            case stmt_kind_macro:
                sc->set(s.text, make_macro(s, sc));
                return flow_normal;
            case stmt_kind_call_block: {
                value caller = make_macro(s, sc);
                out += to_string(eval_call(*s.e, sc, &caller));
                return flow_normal;
            }
            case stmt_kind_filter_block: {
                std::string body;
                exec_list(s.body, sc, body);
                out += to_string(apply_block_filter(*s.e, value(body), sc));
                return flow_normal;
            }
            case stmt_kind_with: {
                auto inner = std::make_shared<scope>(sc);
                for (size_t i = 0; i < s.targets.size(); ++i)
                    inner->set(s.targets[i], eval(*s.values[i], inner));
                return exec_list(s.body, inner, out);
            }
            case stmt_kind_break:
                return flow_break;
            case stmt_kind_continue:
                return flow_continue;
        }
        return flow_normal;
    }

    static void assign(const std::vector<std::string>& targets, const value& v, scope& sc) {
        if (targets.size() == 1) {
            sc.set(targets[0], v);
            return;
        }
        value_list items = iterate(v);
        if (items.size() != targets.size())
            fail("cannot unpack {} values into {} names", items.size(), targets.size());
        for (size_t i = 0; i < targets.size(); ++i) sc.set(targets[i], items[i]);
    }

    value apply_block_filter(const expr& filters, const value& body, const scope_ptr& sc) {
        auto inner = std::make_shared<scope>(sc);
        inner->set(k_block_body_var, body);
        return eval(filters, inner);
    }

    void exec_for(const stmt& s, const scope_ptr& sc, std::string& out) {
        if (s.recursive) fail("recursive for loops are not supported");
        auto loop_scope = std::make_shared<scope>(sc);
        value_list all = iterate(eval(*s.e, sc));
        value_list items;
        for (value& item : all) {
            if (s.cond) {
                assign(s.targets, item, *loop_scope);
                if (!truthy(eval(*s.cond, loop_scope))) continue;
            }
            items.push_back(std::move(item));
        }
        if (items.empty()) {
            exec_list(s.else_body, sc, out);
            return;
        }
        int64_t n = int64_t(items.size());
        for (int64_t i = 0; i < n; ++i) {
            value loop = make_dict();
            value_dict& d = loop.as_dict();
            d.set("index", i + 1);
            d.set("index0", i);
            d.set("revindex", n - i);
            d.set("revindex0", n - i - 1);
            d.set("first", i == 0);
            d.set("last", i == n - 1);
            d.set("length", n);
            d.set("depth", 1);
            d.set("depth0", 0);
            d.set("previtem", i > 0 ? items[size_t(i - 1)] : value());
            d.set("nextitem", i + 1 < n ? items[size_t(i + 1)] : value());
            d.set("cycle", native_fn([i](call_args& a) -> value {
                      if (a.positional.empty()) fail("loop.cycle needs at least one argument");
                      return a.positional[size_t(i) % a.positional.size()];
                  }));
            loop_scope->set("loop", loop);
            assign(s.targets, items[size_t(i)], *loop_scope);
            if (exec_list(s.body, loop_scope, out) == flow_break) break;
        }
    }

    // A macro (or a call block's caller): renders its body in a scope over the defining one.
    // The defining scope is held weakly: the macro lives in it, and a strong pointer would
    // make a cycle.
    value make_macro(const stmt& s, const scope_ptr& defined_in) {
        const stmt* def = &s;
        std::weak_ptr<scope> weak = defined_in;
        return value(native_fn([this, def, weak](call_args& args) -> value {
            scope_ptr parent = weak.lock();
            if (!parent) fail("macro '{}' called outside the scope that defined it", def->text);
            auto frame = std::make_shared<scope>(parent);
            size_t n_params = def->params.size();
            value_list varargs;
            for (size_t i = 0; i < args.positional.size(); ++i) {
                if (i < n_params)
                    frame->set(def->params[i].first, args.positional[i]);
                else
                    varargs.push_back(args.positional[i]);
            }
            value kwargs = make_dict();
            for (const auto& [k, v] : args.keyword) {
                bool is_param = k == "caller";
                for (const auto& p : def->params) is_param = is_param || p.first == k;
                if (is_param)
                    frame->set(k, v);
                else
                    kwargs.as_dict().set(k, v);
            }
            for (size_t i = args.positional.size(); i < n_params; ++i) {
                const auto& [name, def_expr] = def->params[i];
                if (frame->vars.count(name)) continue;
                frame->set(name, def_expr ? eval(*def_expr, frame) : value());
            }
            frame->set("varargs", make_list(std::move(varargs)));
            frame->set("kwargs", kwargs);
            std::string out;
            exec_list(def->body, frame, out);
            return value(out);
        }));
    }

    value eval_call(const expr& e, const scope_ptr& sc, const value* caller) {
        value fn = eval(*e.a, sc);
        call_args args;
        for (const expr_ptr& a : e.items) args.positional.push_back(eval(*a, sc));
        for (const auto& [k, a] : e.kwargs) args.keyword.emplace_back(k, eval(*a, sc));
        if (caller) args.keyword.emplace_back("caller", *caller);
        if (!fn.is_function()) {
            std::string what = e.a->kind == expr_kind_name   ? "'" + e.a->name + "'"
                               : e.a->kind == expr_kind_attr ? "'" + e.a->name + "'"
                                                             : "expression";
            if (fn.is_undefined()) fail("{} is undefined", what);
            fail("{} is not callable ({})", what, kind_name(fn));
        }
        return fn.as_function()(args);
    }

    call_args eval_args(const expr& e, const scope_ptr& sc) {
        call_args args;
        for (const expr_ptr& a : e.items) args.positional.push_back(eval(*a, sc));
        for (const auto& [k, a] : e.kwargs) args.keyword.emplace_back(k, eval(*a, sc));
        return args;
    }

    static std::optional<int64_t> slice_bound(const value& v) {
        if (v.is_none() || v.is_undefined()) return std::nullopt;
        if (!v.is_int()) fail("slice indices must be integers, got {}", kind_name(v));
        return v.as_int();
    }

    bool compare(const std::string& op, const value& a, const value& b) {
        if (op == "==") return values_equal(a, b);
        if (op == "!=") return !values_equal(a, b);
        if (op == "<") return values_less(a, b);
        if (op == ">") return values_less(b, a);
        if (op == "<=") return !values_less(b, a);
        if (op == ">=") return !values_less(a, b);
        if (op == "in") return contains(b, a);
        if (op == "notin") return !contains(b, a);
        fail("unknown comparison '{}'", op);
    }

    value eval_inner(const expr& e, const scope_ptr& sc) {
        switch (e.kind) {
            case expr_kind_literal:
                return e.lit;
            case expr_kind_name: {
                const value* v = sc->lookup(e.name);
                return v ? *v : value();
            }
            case expr_kind_list: {
                value_list items;
                for (const expr_ptr& x : e.items) items.push_back(eval(*x, sc));
                return make_list(std::move(items));
            }
            case expr_kind_dict: {
                value d = make_dict();
                for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
                    value k = eval(*e.items[i], sc);
                    d.as_dict().set(k.is_string() ? k.as_string() : to_string(k), eval(*e.items[i + 1], sc));
                }
                return d;
            }
            case expr_kind_attr:
                return get_attribute(eval(*e.a, sc), e.name);
            case expr_kind_index:
                return get_item(eval(*e.a, sc), eval(*e.b, sc));
            case expr_kind_slice: {
                value obj = eval(*e.a, sc);
                auto bound = [&](const expr_ptr& x) -> std::optional<int64_t> {
                    return x ? slice_bound(eval(*x, sc)) : std::nullopt;
                };
                return get_slice(obj, bound(e.b), bound(e.c), bound(e.d));
            }
            case expr_kind_call:
                return eval_call(e, sc, nullptr);
            case expr_kind_filter: {
                value x = eval(*e.a, sc);
                call_args args = eval_args(e, sc);
                // A template-defined callable can't be a filter; the name picks a built-in.
                return apply_filter(e.name, x, args);
            }
            case expr_kind_test: {
                value x = eval(*e.a, sc);
                call_args args = eval_args(e, sc);
                return value(apply_test(e.name, x, args) != e.negated);
            }
            case expr_kind_unary: {
                value x = eval(*e.a, sc);
                if (e.name == "not") return value(!truthy(x));
                if (e.name == "-") {
                    if (x.is_int()) return value(-x.as_int());
                    if (x.is_float() || x.is_bool()) return value(-x.as_double());
                    fail("bad operand type for unary -: {}", kind_name(x));
                }
                if (!x.is_number() && !x.is_bool()) fail("bad operand type for unary +: {}", kind_name(x));
                return x;
            }
            case expr_kind_binary: {
                const std::string& op = e.name;
                if (op == "and") {
                    value a = eval(*e.a, sc);
                    return truthy(a) ? eval(*e.b, sc) : a;
                }
                if (op == "or") {
                    value a = eval(*e.a, sc);
                    return truthy(a) ? a : eval(*e.b, sc);
                }
                if (op == "chain") {
                    value left = eval(*e.items[0], sc);
                    for (size_t i = 1; i < e.items.size(); ++i) {
                        value right = eval(*e.items[i], sc);
                        if (!compare(e.kwargs[i - 1].first, left, right)) return value(false);
                        left = std::move(right);
                    }
                    return value(true);
                }
                value a = eval(*e.a, sc);
                value b = eval(*e.b, sc);
                if (op == "==" || op == "!=" || op == "<" || op == ">" || op == "<=" || op == ">=" ||
                    op == "in" || op == "notin")
                    return value(compare(op, a, b));
                return binary_op(op, a, b);
            }
            case expr_kind_cond:
                if (truthy(eval(*e.b, sc))) return eval(*e.a, sc);
                return e.c ? eval(*e.c, sc) : value();
        }
        return value();
    }
};

}  // namespace

jinja_template::jinja_template(const std::string& source, const lexer_options& opt)
    : body_(jinja_parse(jinja_tokenize(source, opt))) {}

std::string jinja_template::render(const value& vars) const {
    auto globals = std::make_shared<scope>();
    value g = make_globals();
    for (const auto& [k, v] : g.as_dict().entries) globals->set(k, v);
    auto top = std::make_shared<scope>(globals);
    if (vars.is_dict())
        for (const auto& [k, v] : vars.as_dict().entries) top->set(k, v);
    interpreter in;
    std::string out;
    in.exec_list(body_, top, out);
    return out;
}

}  // namespace nibble::jinja
