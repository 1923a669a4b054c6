// Jinja lexer: template source -> tokens, with Jinja2's whitespace rules applied to the text.
//
// Rules (as Jinja2 with the options transformers uses, trim_blocks=True and lstrip_blocks=True):
//   - "\r\n" and "\r" become "\n"; one trailing newline of the template is dropped;
//   - `{%-`, `{{-`, `{#-` strip all whitespace before the tag, `-%}`, `-}}`, `-#}` all after it;
//   - trim_blocks: the first "\n" after a block or comment tag is dropped (not after `+%}`);
//   - lstrip_blocks: spaces and tabs from the start of a line up to a block or comment tag are
//     dropped (not before `{%+`);
//   - `{% raw %}...{% endraw %}` is kept as text.
// Errors are nibble::error "template line L, column C: ..." (column in code points, from 1).
#pragma once

#include <string>
#include <vector>

namespace nibble::jinja {

enum token_kind {
    token_kind_text,         // template data between tags
    token_kind_var_begin,    // {{
    token_kind_var_end,      // }}
    token_kind_block_begin,  // {%
    token_kind_block_end,    // %}
    token_kind_name,         // identifiers and keywords
    token_kind_string,       // string literal, escapes decoded
    token_kind_integer,
    token_kind_float,
    token_kind_op,  // + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
    token_kind_eof,
};

struct token {
    token_kind kind;
    std::string text;  // text, name, decoded string, number spelling, or operator
    int line = 1;
    int col = 1;
};

struct lexer_options {
    bool trim_blocks = true;
    bool lstrip_blocks = true;
};

// Tokenizes a whole template; the last token is token_kind_eof.
std::vector<token> jinja_tokenize(const std::string& source, const lexer_options& opt = {});

}  // namespace nibble::jinja
