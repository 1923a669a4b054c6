// Jinja syntax tree: expressions and statements, as built by jinja_parse and walked by the
// evaluator. Every node keeps the line and column of its first token for error messages.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace nibble::jinja {

struct expr;
struct stmt;
using expr_ptr = std::unique_ptr<expr>;
using stmt_ptr = std::unique_ptr<stmt>;
using stmt_list = std::vector<stmt_ptr>;

enum expr_kind {
    expr_kind_literal,  // lit
    expr_kind_name,     // name
    expr_kind_list,     // items (also tuples)
    expr_kind_dict,     // items: key, value, key, value...
    expr_kind_attr,     // a.name
    expr_kind_index,    // a[b]
    expr_kind_slice,    // a[b:c:d], each of b, c, d may be null
    expr_kind_call,     // a(items..., kwargs...)
    expr_kind_filter,   // a | name(items..., kwargs...)
    expr_kind_test,     // a is [not] name(items...)
    expr_kind_unary,    // name (not, -, +) a
    expr_kind_binary,   // a name b; name: or and == != < <= > >= in notin + - * / // % ** ~
    expr_kind_cond,     // a if b else c (c may be null)
};

struct expr {
    expr_kind kind;
    int line = 0, col = 0;
    value lit;
    std::string name;
    std::vector<expr_ptr> items;
    std::vector<std::pair<std::string, expr_ptr>> kwargs;
    expr_ptr a, b, c, d;
    bool negated = false;  // `is not`
};

enum stmt_kind {
    stmt_kind_text,          // text
    stmt_kind_output,        // {{ e }}
    stmt_kind_if,            // branches (the else branch has a null condition)
    stmt_kind_for,           // for targets in e [if cond] body [else else_body]
    stmt_kind_set,           // set targets = e, or set targets[0].attr = e
    stmt_kind_set_block,     // set targets[0] [| filters in e] body endset
    stmt_kind_macro,         // macro name(params) body
    stmt_kind_call_block,    // call(params) e body endcall
    stmt_kind_filter_block,  // filter e body endfilter
    stmt_kind_with,          // with targets = values body endwith
    stmt_kind_break,
    stmt_kind_continue,
};

// The placeholder name that block filters (`{% filter %}`, `{% set x | f %}`) are applied to.
inline constexpr const char* k_block_body_var = "\x01body";

struct stmt {
    stmt_kind kind;
    int line = 0, col = 0;
    std::string text;  // text, or the macro name
    expr_ptr e;
    expr_ptr cond;                                         // for-loop filter
    std::vector<std::pair<expr_ptr, stmt_list>> branches;  // if / elif / else
    std::vector<std::string> targets;
    std::string attr;                                      // set ns.attr
    std::vector<expr_ptr> values;                          // with
    std::vector<std::pair<std::string, expr_ptr>> params;  // macro / call parameters and defaults
    stmt_list body, else_body;
    bool recursive = false;
};

}  // namespace nibble::jinja
