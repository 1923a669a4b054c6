// Jinja parser: tokens -> syntax tree. Grammar and precedence follow Jinja2 (conditional
// expression < or < and < not < comparisons and `in` < + - < ~ < * / // % < ** < unary - +
// < postfix (attribute, subscript, slice, call), filters and `is` tests).
// Statements: if/elif/else, for (tuple targets, `if` filter, else, recursive), set (name, tuple,
// namespace attribute, block set with filters), macro, call, filter, with, break, continue;
// `generation` blocks (transformers' extension) are transparent.
// Syntax errors are nibble::error "template line L, column C: ...".
#pragma once

#include <string>
#include <vector>

#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_lexer.h"

namespace nibble::jinja {

stmt_list jinja_parse(const std::vector<token>& tokens);

}  // namespace nibble::jinja
