#include "tokenizer/jinja_parser.h"

#include <algorithm>
#include <cstdlib>
#include <initializer_list>

#include "core/error.h"

namespace nibble::jinja {

namespace {

class parser {
  public:
    explicit parser(const std::vector<token>& tokens) : toks_(tokens) {}

    stmt_list parse_template() {
        std::string end;
        stmt_list body = parse_body({}, end);
        return body;
    }

  private:
    const std::vector<token>& toks_;
    size_t pos_ = 0;

    const token& peek(size_t ahead = 0) const { return toks_[std::min(pos_ + ahead, toks_.size() - 1)]; }
    const token& next() {
        const token& t = peek();
        if (pos_ < toks_.size() - 1) ++pos_;
        return t;
    }

    [[noreturn]] void fail_at(const token& t, const std::string& what) const {
        fail("template line {}, column {}: {}", t.line, t.col, what);
    }

    static std::string describe(const token& t) {
        switch (t.kind) {
            case token_kind_eof:
                return "end of template";
            case token_kind_text:
                return "text";
            case token_kind_var_end:
                return "'}}'";
            case token_kind_block_end:
                return "'%}'";
            case token_kind_string:
                return "string literal";
            default:
                return "'" + t.text + "'";
        }
    }

    bool is_op(const char* op, size_t ahead = 0) const {
        return peek(ahead).kind == token_kind_op && peek(ahead).text == op;
    }
    bool is_name(const char* name, size_t ahead = 0) const {
        return peek(ahead).kind == token_kind_name && peek(ahead).text == name;
    }
    bool skip_op(const char* op) {
        if (!is_op(op)) return false;
        next();
        return true;
    }
    bool skip_name(const char* name) {
        if (!is_name(name)) return false;
        next();
        return true;
    }
    void expect_op(const char* op) {
        if (!skip_op(op)) fail_at(peek(), fmt::format("expected '{}', got {}", op, describe(peek())));
    }
    std::string expect_name() {
        if (peek().kind != token_kind_name) fail_at(peek(), "expected a name, got " + describe(peek()));
        return next().text;
    }
    void expect_block_end() {
        if (peek().kind != token_kind_block_end) fail_at(peek(), "expected '%}', got " + describe(peek()));
        next();
    }

    template <class T>
    std::unique_ptr<T> node_at(const token& t) {
        auto n = std::make_unique<T>();
        n->line = t.line;
        n->col = t.col;
        return n;
    }
    expr_ptr make_expr(expr_kind kind, const token& t) {
        auto e = node_at<expr>(t);
        e->kind = kind;
        return e;
    }
    stmt_ptr make_stmt(stmt_kind kind, const token& t) {
        auto s = node_at<stmt>(t);
        s->kind = kind;
        return s;
    }

    // ---- statements ---------------------------------------------------------------------

    // Parses until a block whose keyword is in `ends`; consumes "{%" and that keyword and
    // stores it in `found`. With no `ends`, parses to the end of the template.
    stmt_list parse_body(std::initializer_list<const char*> ends, std::string& found) {
        stmt_list out;
        while (true) {
            const token& t = peek();
            if (t.kind == token_kind_eof) {
                if (ends.size() == 0) return out;
                fail_at(t, fmt::format("unexpected end of template, expected '{}'", *ends.begin()));
            }
            if (t.kind == token_kind_text) {
                auto s = make_stmt(stmt_kind_text, t);
                s->text = next().text;
                out.push_back(std::move(s));
            } else if (t.kind == token_kind_var_begin) {
                next();
                auto s = make_stmt(stmt_kind_output, t);
                s->e = parse_expression();
                if (peek().kind != token_kind_var_end)
                    fail_at(peek(), "expected '}}', got " + describe(peek()));
                next();
                out.push_back(std::move(s));
            } else if (t.kind == token_kind_block_begin) {
                const token& kw = peek(1);
                if (kw.kind != token_kind_name) fail_at(kw, "expected a statement name, got " + describe(kw));
                for (const char* e : ends) {
                    if (kw.text == e) {
                        next();
                        found = next().text;
                        return out;
                    }
                }
                next();
                if (stmt_ptr s = parse_statement()) out.push_back(std::move(s));
            } else {
                fail_at(t, "unexpected " + describe(t));
            }
        }
    }

    stmt_ptr parse_statement() {
        const token& kw = next();
        const std::string& k = kw.text;
        if (k == "if") return parse_if(kw);
        if (k == "for") return parse_for(kw);
        if (k == "set") return parse_set(kw);
        if (k == "macro") return parse_macro(kw);
        if (k == "call") return parse_call_block(kw);
        if (k == "filter") return parse_filter_block(kw);
        if (k == "with") return parse_with(kw);
        if (k == "break" || k == "continue") {
            expect_block_end();
            return make_stmt(k == "break" ? stmt_kind_break : stmt_kind_continue, kw);
        }
        if (k == "generation") {
            // transformers' {% generation %} marks assistant text for masks; it renders as is.
            expect_block_end();
            std::string found;
            auto s = make_stmt(stmt_kind_if, kw);
            auto always = make_expr(expr_kind_literal, kw);
            always->lit = value(true);
            s->branches.emplace_back(std::move(always), parse_body({"endgeneration"}, found));
            expect_block_end();
            return s;
        }
        fail_at(kw, fmt::format("unknown statement '{}'", k));
    }

    stmt_ptr parse_if(const token& kw) {
        auto s = make_stmt(stmt_kind_if, kw);
        expr_ptr cond = parse_expression();
        while (true) {
            expect_block_end();
            std::string found;
            stmt_list body = parse_body({"elif", "else", "endif"}, found);
            s->branches.emplace_back(std::move(cond), std::move(body));
            if (found == "elif") {
                cond = parse_expression();
                continue;
            }
            if (found == "else") {
                expect_block_end();
                s->branches.emplace_back(nullptr, parse_body({"endif"}, found));
            }
            expect_block_end();
            return s;
        }
    }

    // Names separated by commas, optionally in parentheses: `a`, `a, b`, `(a, b)`.
    std::vector<std::string> parse_targets() {
        std::vector<std::string> names;
        bool paren = skip_op("(");
        do {
            names.push_back(expect_name());
        } while (skip_op(","));
        if (paren) expect_op(")");
        return names;
    }

    stmt_ptr parse_for(const token& kw) {
        auto s = make_stmt(stmt_kind_for, kw);
        s->targets = parse_targets();
        if (!skip_name("in")) fail_at(peek(), "expected 'in' in for loop, got " + describe(peek()));
        s->e = parse_tuple_or_expr(/*allow_cond=*/false);
        if (skip_name("if")) s->cond = parse_expression();
        if (skip_name("recursive")) s->recursive = true;
        expect_block_end();
        std::string found;
        s->body = parse_body({"else", "endfor"}, found);
        if (found == "else") {
            expect_block_end();
            s->else_body = parse_body({"endfor"}, found);
        }
        expect_block_end();
        return s;
    }

    stmt_ptr parse_set(const token& kw) {
        auto s = make_stmt(stmt_kind_set, kw);
        if (peek().kind == token_kind_name && is_op(".", 1)) {
            s->targets.push_back(next().text);
            next();
            s->attr = expect_name();
        } else {
            s->targets = parse_targets();
        }
        if (skip_op("=")) {
            s->e = parse_tuple_or_expr(/*allow_cond=*/true);
            expect_block_end();
            return s;
        }
        if (s->targets.size() != 1 || !s->attr.empty()) fail_at(peek(), "expected '=' in set");
        s->kind = stmt_kind_set_block;
        if (is_op("|")) s->e = parse_filters(body_placeholder(peek()));
        expect_block_end();
        std::string found;
        s->body = parse_body({"endset"}, found);
        expect_block_end();
        return s;
    }

    expr_ptr body_placeholder(const token& t) {
        auto e = make_expr(expr_kind_name, t);
        e->name = k_block_body_var;
        return e;
    }

    void parse_params(stmt& s) {
        expect_op("(");
        while (!skip_op(")")) {
            if (!s.params.empty()) expect_op(",");
            if (skip_op(")")) break;
            std::string name = expect_name();
            expr_ptr def;
            if (skip_op("=")) def = parse_expression();
            s.params.emplace_back(name, std::move(def));
        }
    }

    stmt_ptr parse_macro(const token& kw) {
        auto s = make_stmt(stmt_kind_macro, kw);
        s->text = expect_name();
        parse_params(*s);
        expect_block_end();
        std::string found;
        s->body = parse_body({"endmacro"}, found);
        expect_block_end();
        return s;
    }

    stmt_ptr parse_call_block(const token& kw) {
        auto s = make_stmt(stmt_kind_call_block, kw);
        if (is_op("(")) parse_params(*s);
        s->e = parse_expression();
        if (s->e->kind != expr_kind_call) fail_at(kw, "expected a call after 'call'");
        expect_block_end();
        std::string found;
        s->body = parse_body({"endcall"}, found);
        expect_block_end();
        return s;
    }

    stmt_ptr parse_filter_block(const token& kw) {
        auto s = make_stmt(stmt_kind_filter_block, kw);
        auto base = body_placeholder(kw);
        s->e = parse_filter_chain(std::move(base), /*first_without_bar=*/true);
        expect_block_end();
        std::string found;
        s->body = parse_body({"endfilter"}, found);
        expect_block_end();
        return s;
    }

    stmt_ptr parse_with(const token& kw) {
        auto s = make_stmt(stmt_kind_with, kw);
        while (peek().kind != token_kind_block_end) {
            if (!s->targets.empty()) expect_op(",");
            s->targets.push_back(expect_name());
            expect_op("=");
            s->values.push_back(parse_expression());
        }
        expect_block_end();
        std::string found;
        s->body = parse_body({"endwith"}, found);
        expect_block_end();
        return s;
    }

    // ---- expressions --------------------------------------------------------------------

    // `a, b` without brackets is a tuple (in `for ... in` and `set ... =`).
    expr_ptr parse_tuple_or_expr(bool allow_cond) {
        const token& t = peek();
        expr_ptr first = allow_cond ? parse_expression() : parse_or();
        if (!is_op(",")) return first;
        auto tuple = make_expr(expr_kind_list, t);
        tuple->items.push_back(std::move(first));
        while (skip_op(",")) {
            if (peek().kind == token_kind_block_end || is_name("if")) break;
            tuple->items.push_back(allow_cond ? parse_expression() : parse_or());
        }
        return tuple;
    }

    expr_ptr parse_expression() {
        expr_ptr e = parse_or();
        while (is_name("if")) {
            const token& t = next();
            auto c = make_expr(expr_kind_cond, t);
            c->a = std::move(e);
            c->b = parse_or();
            if (skip_name("else")) c->c = parse_expression();
            e = std::move(c);
        }
        return e;
    }

    expr_ptr binary(const token& t, const std::string& op, expr_ptr a, expr_ptr b) {
        auto e = make_expr(expr_kind_binary, t);
        e->name = op;
        e->a = std::move(a);
        e->b = std::move(b);
        return e;
    }

    expr_ptr parse_or() {
        expr_ptr e = parse_and();
        while (is_name("or")) {
            const token& t = next();
            e = binary(t, "or", std::move(e), parse_and());
        }
        return e;
    }

    expr_ptr parse_and() {
        expr_ptr e = parse_not();
        while (is_name("and")) {
            const token& t = next();
            e = binary(t, "and", std::move(e), parse_not());
        }
        return e;
    }

    expr_ptr parse_not() {
        if (is_name("not")) {
            const token& t = next();
            auto e = make_expr(expr_kind_unary, t);
            e->name = "not";
            e->a = parse_not();
            return e;
        }
        return parse_compare();
    }

    // Comparisons; a chain (a < b < c) is one node named "chain": items are the operands,
    // kwargs' names the operators.
    expr_ptr parse_compare() {
        expr_ptr e = parse_math1();
        if (!is_compare_next()) return e;
        const token& t0 = peek();
        std::vector<std::string> ops;
        std::vector<expr_ptr> operands;
        operands.push_back(std::move(e));
        while (is_compare_next()) {
            std::string op = peek().text;
            if (is_name("not")) {
                next();
                op = "notin";
            }
            next();
            ops.push_back(op);
            operands.push_back(parse_math1());
        }
        if (ops.size() == 1) return binary(t0, ops[0], std::move(operands[0]), std::move(operands[1]));
        auto c = make_expr(expr_kind_binary, t0);
        c->name = "chain";
        c->items = std::move(operands);
        for (const std::string& op : ops) c->kwargs.emplace_back(op, nullptr);
        return c;
    }

    bool is_compare_next() const {
        const token& t = peek();
        if (t.kind == token_kind_op && (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == "<=" ||
                                        t.text == ">" || t.text == ">="))
            return true;
        return is_name("in") || (is_name("not") && is_name("in", 1));
    }

    expr_ptr parse_math1() {
        expr_ptr e = parse_concat();
        while (is_op("+") || is_op("-")) {
            const token& t = next();
            e = binary(t, t.text, std::move(e), parse_concat());
        }
        return e;
    }

    expr_ptr parse_concat() {
        expr_ptr e = parse_math2();
        while (is_op("~")) {
            const token& t = next();
            e = binary(t, "~", std::move(e), parse_math2());
        }
        return e;
    }

    expr_ptr parse_math2() {
        expr_ptr e = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            const token& t = next();
            e = binary(t, t.text, std::move(e), parse_pow());
        }
        return e;
    }

    expr_ptr parse_pow() {
        expr_ptr e = parse_unary(true);
        while (is_op("**")) {
            const token& t = next();
            e = binary(t, "**", std::move(e), parse_unary(true));
        }
        return e;
    }

    expr_ptr parse_unary(bool with_filter) {
        const token& t = peek();
        expr_ptr e;
        if (is_op("-") || is_op("+")) {
            next();
            e = make_expr(expr_kind_unary, t);
            e->name = t.text;
            e->a = parse_unary(false);
        } else {
            e = parse_primary();
        }
        e = parse_postfix(std::move(e));
        if (with_filter) e = parse_filter_chain(std::move(e), false);
        return e;
    }

    expr_ptr parse_primary() {
        const token& t = next();
        switch (t.kind) {
            case token_kind_name: {
                if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
                    auto e = make_expr(expr_kind_literal, t);
                    e->lit = value(t.text == "true" || t.text == "True");
                    return e;
                }
                if (t.text == "none" || t.text == "None") {
                    auto e = make_expr(expr_kind_literal, t);
                    e->lit = value(nullptr);
                    return e;
                }
                auto e = make_expr(expr_kind_name, t);
                e->name = t.text;
                return e;
            }
            case token_kind_string: {
                std::string s = t.text;
                while (peek().kind == token_kind_string) s += next().text;  // adjacent literals
                auto e = make_expr(expr_kind_literal, t);
                e->lit = value(s);
                return e;
            }
            case token_kind_integer: {
                auto e = make_expr(expr_kind_literal, t);
                e->lit = value(int64_t(std::strtoll(t.text.c_str(), nullptr, 10)));
                return e;
            }
            case token_kind_float: {
                auto e = make_expr(expr_kind_literal, t);
                e->lit = value(std::strtod(t.text.c_str(), nullptr));
                return e;
            }
            case token_kind_op:
                if (t.text == "(") {
                    if (skip_op(")")) return make_expr(expr_kind_list, t);  // ()
                    expr_ptr first = parse_expression();
                    if (skip_op(")")) return first;
                    auto tuple = make_expr(expr_kind_list, t);
                    tuple->items.push_back(std::move(first));
                    while (skip_op(",")) {
                        if (is_op(")")) break;
                        tuple->items.push_back(parse_expression());
                    }
                    expect_op(")");
                    return tuple;
                }
                if (t.text == "[") {
                    auto list = make_expr(expr_kind_list, t);
                    while (!skip_op("]")) {
                        if (!list->items.empty()) expect_op(",");
                        if (skip_op("]")) break;
                        list->items.push_back(parse_expression());
                    }
                    return list;
                }
                if (t.text == "{") {
                    auto dict = make_expr(expr_kind_dict, t);
                    while (!skip_op("}")) {
                        if (!dict->items.empty()) expect_op(",");
                        if (skip_op("}")) break;
                        dict->items.push_back(parse_expression());
                        expect_op(":");
                        dict->items.push_back(parse_expression());
                    }
                    return dict;
                }
                break;
            default:
                break;
        }
        fail_at(t, "unexpected " + describe(t));
    }

    void parse_call_args(expr& call) {
        // "(" already consumed.
        while (!skip_op(")")) {
            if (!call.items.empty() || !call.kwargs.empty()) {
                expect_op(",");
                if (skip_op(")")) break;
            }
            if (peek().kind == token_kind_name && is_op("=", 1)) {
                std::string name = next().text;
                next();
                call.kwargs.emplace_back(name, parse_expression());
            } else {
                if (!call.kwargs.empty()) fail_at(peek(), "positional argument after keyword argument");
                call.items.push_back(parse_expression());
            }
        }
    }

    expr_ptr parse_postfix(expr_ptr e) {
        while (true) {
            const token& t = peek();
            if (is_op(".")) {
                next();
                const token& n = next();
                if (n.kind == token_kind_name) {
                    auto a = make_expr(expr_kind_attr, t);
                    a->a = std::move(e);
                    a->name = n.text;
                    e = std::move(a);
                } else if (n.kind == token_kind_integer) {
                    auto a = make_expr(expr_kind_index, t);
                    a->a = std::move(e);
                    a->b = make_expr(expr_kind_literal, n);
                    a->b->lit = value(int64_t(std::strtoll(n.text.c_str(), nullptr, 10)));
                    e = std::move(a);
                } else {
                    fail_at(n, "expected an attribute name after '.', got " + describe(n));
                }
            } else if (is_op("[")) {
                next();
                e = parse_subscript(t, std::move(e));
            } else if (is_op("(")) {
                next();
                auto c = make_expr(expr_kind_call, t);
                c->line = e->line;  // errors point at the callee
                c->col = e->col;
                c->a = std::move(e);
                parse_call_args(*c);
                e = std::move(c);
            } else {
                return e;
            }
        }
    }

    expr_ptr parse_subscript(const token& t, expr_ptr obj) {
        expr_ptr parts[3];
        int n_colons = 0;
        if (!is_op(":")) parts[0] = parse_expression();
        while (n_colons < 2 && skip_op(":")) {
            ++n_colons;
            if (!is_op(":") && !is_op("]")) parts[n_colons] = parse_expression();
        }
        expect_op("]");
        if (n_colons == 0) {
            auto e = make_expr(expr_kind_index, t);
            e->a = std::move(obj);
            e->b = std::move(parts[0]);
            return e;
        }
        auto e = make_expr(expr_kind_slice, t);
        e->a = std::move(obj);
        e->b = std::move(parts[0]);
        e->c = std::move(parts[1]);
        e->d = std::move(parts[2]);
        return e;
    }

    // `| name(args)` filters and `is [not] name(args)` tests after an operand.
    expr_ptr parse_filter_chain(expr_ptr e, bool first_without_bar) {
        while (true) {
            const token& t = peek();
            if (first_without_bar || is_op("|")) {
                if (!first_without_bar) next();
                first_without_bar = false;
                auto f = make_expr(expr_kind_filter, t);
                f->a = std::move(e);
                f->name = expect_name();
                while (skip_op(".")) f->name += "." + expect_name();
                if (skip_op("(")) parse_call_args(*f);
                e = parse_postfix(std::move(f));
            } else if (is_name("is")) {
                next();
                auto x = make_expr(expr_kind_test, t);
                x->a = std::move(e);
                x->negated = skip_name("not");
                x->name = expect_name();
                if (skip_op("(")) {
                    parse_call_args(*x);
                } else {
                    const token& n = peek();
                    bool arg_start =
                        n.kind == token_kind_string || n.kind == token_kind_integer ||
                        n.kind == token_kind_float ||
                        (n.kind == token_kind_name && n.text != "else" && n.text != "or" && n.text != "and" &&
                         n.text != "if" && n.text != "is" && n.text != "in" && n.text != "not") ||
                        (n.kind == token_kind_op && (n.text == "[" || n.text == "{"));
                    if (arg_start) x->items.push_back(parse_postfix(parse_primary()));
                }
                e = std::move(x);
            } else {
                return e;
            }
        }
    }

    expr_ptr parse_filters(expr_ptr base) { return parse_filter_chain(std::move(base), false); }
};

}  // namespace

stmt_list jinja_parse(const std::vector<token>& tokens) {
    return parser(tokens).parse_template();
}

}  // namespace nibble::jinja
