// Jinja template: parse once, render many times with a dict of variables.
//
// Semantics follow Jinja2 as transformers configures it for chat templates (trim_blocks,
// lstrip_blocks, loopcontrols, the default Undefined) with transformers' globals:
//   raise_exception(msg)  throws template_error carrying exactly `msg`;
//   strftime_now(fmt)     formats the local time now (a `strftime_now` variable passed to
//                         render replaces it, e.g. to pin the date in tests);
//   range, namespace, dict; and `tojson` as json.dumps(ensure_ascii=False).
// Undefined variables are falsy and print as ""; attribute or item access on an undefined (or
// missing) value gives undefined rather than failing, as lenient as @huggingface/jinja.
// Syntax errors and runtime type errors are nibble::error "template line L, column C: ...".
#pragma once

#include <string>

#include "core/error.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_lexer.h"
#include "tokenizer/jinja_value.h"

namespace nibble::jinja {

// raise_exception() from the template: what() is the template's own message.
struct template_error : nibble::error {
    using nibble::error::error;
};

class jinja_template {
  public:
    // Parses `source`; fails (nibble::error with line and column) on a syntax error.
    explicit jinja_template(const std::string& source, const lexer_options& opt = {});

    // Renders with `vars` (a dict; its entries become top-level variables over the globals).
    std::string render(const value& vars) const;

  private:
    stmt_list body_;
};

}  // namespace nibble::jinja
