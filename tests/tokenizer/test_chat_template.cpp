// The Jinja interpreter feature by feature (expected strings are what Python's Jinja2 renders
// with trim_blocks and lstrip_blocks, as transformers configures it), its errors, and loading
// chat templates from model folders.
#include <gtest/gtest.h>

#include "test_util.h"
#include "tokenizer/chat_template.h"

namespace {

using nibble::jinja::jinja_template;
using nibble::jinja::value;

std::string render(const std::string& src, const std::string& vars_json = "{}") {
    value vars = nibble::jinja::from_json(nlohmann::ordered_json::parse(vars_json));
    return jinja_template(src).render(vars);
}

std::string error_of(const std::string& src, const std::string& vars_json = "{}") {
    try {
        render(src, vars_json);
    } catch (const nibble::error& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(jinja, text_and_output) {
    EXPECT_EQ(render("hello"), "hello");
    EXPECT_EQ(render("a{{ x }}b", R"({"x": 1})"), "a1b");
    EXPECT_EQ(render("{{ none }} {{ true }} {{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 2.5e-5 }}"),
              "None True 1.0 0.30000000000000004 1e+20 2.5e-05");
    EXPECT_EQ(render("{{ [1, 'a', none] }} {{ {'k': 'v'} }}"), "[1, 'a', None] {'k': 'v'}");
    EXPECT_EQ(render("{# comment #}x{{ 'it''s' }}{{ \"q\\\"\\n\" }}"),
              "xitsq\"\n");  // adjacent literals concatenate
    EXPECT_EQ(render("one trailing newline dropped\n"), "one trailing newline dropped");
}

TEST(jinja, undefined_is_lenient) {
    EXPECT_EQ(render("[{{ missing }}][{{ missing.attr }}][{{ missing['k'] }}]"), "[][][]");
    EXPECT_EQ(render("{% if missing %}y{% else %}n{% endif %}"), "n");
    EXPECT_EQ(render("{{ missing is defined }} {{ missing is undefined }} {{ d.nokey is defined }}",
                     R"({"d": {}})"),
              "False True False");
    EXPECT_EQ(render("{% for x in missing %}x{% else %}empty{% endfor %}"), "empty");
    EXPECT_EQ(
        render("{{ missing | default('dflt') }} {{ none | default('d') }} {{ '' | default('e', true) }}"),
        "dflt None e");
}

TEST(jinja, whitespace_control) {
    EXPECT_EQ(render("a  {{- 'b' -}}  c"), "abc");
    EXPECT_EQ(render("a\n  {%- if true %}b{% endif -%}\n  c"), "abc");
    // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before it goes.
    EXPECT_EQ(render("{% if true %}\n    x\n    {% endif %}\ny"), "    x\ny");
    EXPECT_EQ(render("<\n  {% for i in [1, 2] %}\n  {{ i }}\n  {% endfor %}\n>"), "<\n  1\n  2\n>");
    // Not for expressions, and not with `+`.
    EXPECT_EQ(render("  {{ 1 }}\n  {%+ if true %}a{% endif +%}\nb"), "  1\n  a\nb");
    EXPECT_EQ(render("a {% if true %}b{% endif %} c"), "a b c");  // text before the tag on the line
    EXPECT_EQ(render("{# c #}\nx"), "x");
    EXPECT_EQ(render("{% raw %}{{ not parsed }}{% endraw %}"), "{{ not parsed }}");
    EXPECT_EQ(render("a\r\nb"), "a\nb");
}

TEST(jinja, control_flow) {
    EXPECT_EQ(render("{% if x == 1 %}one{% elif x == 2 %}two{% else %}other{% endif %}", R"({"x": 2})"),
              "two");
    EXPECT_EQ(
        render(
            "{% for x in [1,2,3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
            "{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
        "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;");
    EXPECT_EQ(render("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}"), "2242");
    EXPECT_EQ(render("{% for x in [] %}x{% else %}none{% endfor %}"), "none");
    EXPECT_EQ(
        render("{% for x in [1,2,3,4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}"
               "{% endif %}{{ x }}{% endfor %}"),
        "13");
    EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}", R"({"d": {"b": 1, "a": 2}})"),
              "b=1,a=2,");
    EXPECT_EQ(render("{% for k in d %}{{ k }}{% endfor %}", R"({"d": {"z": 1, "y": 2}})"), "zy");
    EXPECT_EQ(render("{% for x in 'héllo' %}{{ x }}.{% endfor %}"), "h.é.l.l.o.");
    EXPECT_EQ(render("{% for x in [1,2] %}{{ loop.previtem }}|{{ loop.nextitem }} {% endfor %}"), "|2 1| ");
    EXPECT_EQ(render("{% for x in [1,2,3] %}{{ loop.cycle('a', 'b') }}{% endfor %}"), "aba");
}

TEST(jinja, set_and_scopes) {
    EXPECT_EQ(render("{% set x = 1 %}{% set a, b = [2, 3] %}{{ x }}{{ a }}{{ b }}"), "123");
    // A set inside a loop does not leak out; a namespace does.
    EXPECT_EQ(render("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}"), "1");
    EXPECT_EQ(
        render("{% set ns = namespace(x=1, y='a') %}{% for i in [1,2] %}{% set ns.x = ns.x + i %}{% endfor %}"
               "{{ ns.x }}{{ ns.y }}"),
        "4a");
    EXPECT_EQ(render("{% set b %}  inner {{ 1 + 1 }} {% endset %}[{{ b }}]"), "[  inner 2 ]");
    EXPECT_EQ(render("{% set b | upper | trim %} shout {% endset %}[{{ b }}]"), "[SHOUT]");
    EXPECT_EQ(render("{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]"), "3[]");
    EXPECT_EQ(
        render("{% set messages = messages[1:] %}{{ messages | length }}", R"({"messages": [1, 2, 3]})"),
        "2");
    EXPECT_NE(error_of("{% set x = 1 %}{% set x.y = 2 %}").find("not a namespace"), std::string::npos);
}

TEST(jinja, macros_and_call) {
    EXPECT_EQ(
        render("{% macro m(a, b='B', c=none) %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ m(1) }} {{ m(1, c=3) }} "
               "{{ m(1, 2, 3) }}"),
        "1BNone 1B3 123");
    EXPECT_EQ(render("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1) | int }}{% endif %}"
                     "{% endmacro %}{{ fact(5) }}"),
              "120");
    EXPECT_EQ(render("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}"
                     "{% call wrap('b') %}bold{% endcall %}"),
              "<b>bold</b>");
    EXPECT_EQ(
        render(
            "{% macro row(x) %}{{ caller(x * 2) }}{% endmacro %}{% call(v) row(4) %}v={{ v }}{% endcall %}"),
        "v=8");
    EXPECT_EQ(render("{% filter upper %}abc{{ 'd' }}{% endfilter %}"), "ABCD");
    EXPECT_EQ(render("{% generation %}kept{% endgeneration %}"), "kept");
}

TEST(jinja, operators) {
    EXPECT_EQ(
        render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 2 ** 10 }}"),
        "3 -4 1 2 3.5 2.0 1024");
    EXPECT_EQ(render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 1 + 1.5 }} {{ 'a' ~ 1 ~ none }} {{ 'ab' * 2 }}"),
              "7 9 2.5 a1None abab");
    EXPECT_EQ(render("{{ [1] + [2] }} {{ 'x' + 'y' }}"), "[1, 2] xy");
    EXPECT_EQ(render("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }}"),
              "True True True True");
    EXPECT_EQ(
        render("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ [1, 2] == [1, 2] }}"),
        "True False True True True");
    EXPECT_EQ(
        render(
            "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ not none }} {{ 'a' if false else 'b' }} [{{ 'a' if false }}]"),
        "x y True b []");
    EXPECT_EQ(render("{{ -x }} {{ not x is defined }}", R"({"x": 3})"), "-3 False");
}

TEST(jinja, subscripts_and_slices) {
    const char* vars = R"({"xs": [0, 1, 2, 3, 4], "s": "héllo"})";
    EXPECT_EQ(
        render("{{ xs[::-1] }} {{ xs[1:] }} {{ xs[:-2] }} {{ xs[1:4:2] }} {{ xs[-1] }} [{{ xs[10] }}]", vars),
        "[4, 3, 2, 1, 0] [1, 2, 3, 4] [0, 1, 2] [1, 3] 4 []");
    EXPECT_EQ(render("{{ s[1] }} {{ s[::-1] }} {{ s[1:3] }} {{ s[-2:] }} {{ s | length }}", vars),
              "é olléh él lo 5");
    EXPECT_EQ(render("{{ d.a.b }} {{ d['a']['b'] }} {{ d.l.0 }}", R"({"d": {"a": {"b": 7}, "l": [9]}})"),
              "7 7 9");
}

TEST(jinja, string_methods) {
    EXPECT_EQ(
        render("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith('bc') }} {{ 'abc'.startswith(('x', 'a')) }}"),
        "True True True");
    EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }}"),
              "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b c']");
    EXPECT_EQ(render("[{{ '\\n x \\n'.strip() }}][{{ 'xxaxx'.strip('x') }}][{{ '\\nab\\n'.lstrip('\\n') }}]"
                     "[{{ '\\nab\\n'.rstrip('\\n') }}]"),
              "[x][a][ab\n][\nab]");
    EXPECT_EQ(render("{{ 'aXbX'.replace('X', '-') }} {{ 'aXbX'.replace('X', '-', 1) }}"), "a-b- a-bX");
    EXPECT_EQ(render("{{ 'ÉtÉ'.lower() }} {{ 'straße'.upper() }} {{ 'hello wORLD'.title() }} {{ "
                     "'hELLO'.capitalize() }}"),
              "été STRASSE Hello World Hello");
    EXPECT_EQ(render("{{ '{} and {}'.format(1, 'two') }} {{ '{0}{0}{name}'.format('x', name='y') }}"),
              "1 and two xxy");
    EXPECT_EQ(render("{{ ', '.join(['a', 'b']) }} {{ 'abcb'.find('b') }} {{ 'abcb'.count('b') }}"),
              "a, b 1 2");
    EXPECT_EQ(render("{{ '<think>x</think>y'.split('</think>')[-1] }} {{ 'a b'.split(' ')[0] }}"), "y a");
}

TEST(jinja, dict_and_list_methods) {
    const char* vars = R"({"d": {"a": 1, "b": null}})";
    EXPECT_EQ(render("{{ d.keys() }} {{ d.values() }} {{ d.items() }}", vars),
              "['a', 'b'] [1, None] [['a', 1], ['b', None]]");
    EXPECT_EQ(render("{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 5) }}", vars), "1 None 5");
    EXPECT_EQ(render("{% set l = [1] %}{% set _ = l.append(2) %}{{ l }} {{ l.index(2) }}"), "[1, 2] 1");
}

TEST(jinja, filters) {
    const char* vars = R"({"users": [{"name": "ann", "role": "user", "age": 30},
                                    {"name": "bob", "role": "assistant", "age": 25},
                                    {"name": "cy", "role": "user", "age": 35}]})";
    EXPECT_EQ(
        render("{{ users | selectattr('role', 'equalto', 'user') | map(attribute='name') | join(',') }}",
               vars),
        "ann,cy");
    EXPECT_EQ(render("{{ users | rejectattr('role', 'eq', 'user') | map(attribute='name') | list }}", vars),
              "['bob']");
    EXPECT_EQ(
        render("{{ users | map(attribute='age') | sum }} {{ users | sort(attribute='age') | first }}", vars),
        "90 {'name': 'bob', 'role': 'assistant', 'age': 25}");
    EXPECT_EQ(render("{{ ['a', 'code', 'b'] | reject('equalto', 'code') | join(', ') }} {{ [0, 1, 2] | "
                     "select | list }}"),
              "a, b [1, 2]");
    EXPECT_EQ(
        render("{{ [1, 2, 3] | first }} {{ [1, 2, 3] | last }} {{ 'abc' | first }} {{ [3, 1, 2] | sort }}"),
        "1 3 a [1, 2, 3]");
    EXPECT_EQ(
        render(
            "[{{ '  x  ' | trim }}] {{ 'ab' | upper }} {{ 'AB' | lower }} {{ 'hello wORLD' | capitalize }}"),
        "[x] AB ab Hello world");
    EXPECT_EQ(render("{{ 'hello-world x' | title }} {{ 42 | string }}{{ '7' | int + 1 }} {{ 'x' | int }} {{ "
                     "3.9 | int }}"),
              "Hello-World X 428 0 3");
    EXPECT_EQ(render("{{ {'b': 1, 'a': 2} | items | list }} {{ {'b': 1, 'a': 2} | dictsort }}"),
              "[['b', 1], ['a', 2]] [['a', 2], ['b', 1]]");
    EXPECT_EQ(render("{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}"),
              "a\n  b\n\n  c|  a\n  b");
    EXPECT_EQ(render("{{ [1, 2, 1] | unique | list }} {{ 'abc' | reverse }} {{ [1, 2] | reverse | list }}"),
              "[1, 2] cba [2, 1]");
    EXPECT_EQ(
        render(
            "{{ '%s-%d' | format('a', 3) }} {{ 'a b c' | wordcount }} {{ -3 | abs }} {{ 2.567 | round(2) }}"),
        "a-3 3 3 2.57");
    EXPECT_EQ(render("{{ [1, 2, 3] | length }} {{ 'héllo' | count }} {{ {'a': 1} | length }}"), "3 5 1");
}

TEST(jinja, tojson_matches_python_json_dumps) {
    const char* vars =
        R"({"v": {"name": "Zürich \"q\" \\ \n\t\u0001", "n": [1, 2.5, true, null], "e": {}, "l": []}})";
    EXPECT_EQ(render("{{ v | tojson }}", vars),
              R"({"name": "Zürich \"q\" \\ \n\t\u0001", "n": [1, 2.5, true, null], "e": {}, "l": []})");
    EXPECT_EQ(render("{{ v.n | tojson(indent=2) }}", vars), "[\n  1,\n  2.5,\n  true,\n  null\n]");
    EXPECT_EQ(render("{{ {'b': 1, 'a': {'c': []}} | tojson(indent=4) }}"),
              "{\n    \"b\": 1,\n    \"a\": {\n        \"c\": []\n    }\n}");
    EXPECT_EQ(render("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ 'é' | tojson(ensure_ascii=true) }}"),
              "{\"a\": 2, \"b\": 1} \"\\u00e9\"");
    EXPECT_EQ(render("{{ 1.0 | tojson }} {{ 'x' | tojson }}"), "1.0 \"x\"");
}

TEST(jinja, tests) {
    EXPECT_EQ(render("{{ 'a' is string }} {{ 1 is string }} {{ {} is mapping }} {{ [] is mapping }} {{ [] is "
                     "iterable }}"
                     " {{ 'a' is iterable }} {{ 1 is iterable }}"),
              "True False True False True True False");
    EXPECT_EQ(render("{{ none is none }} {{ 1 is number }} {{ 1.5 is float }} {{ 1 is integer }} {{ [] is "
                     "sequence }}"),
              "True True True True True");
    EXPECT_EQ(
        render("{{ false is false }} {{ 0 is false }} {{ true is true }} {{ x is true }}", R"({"x": 1})"),
        "True False True False");
    EXPECT_EQ(render("{{ 2 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 'a' is equalto 'a' }} {{ 1 "
                     "is eq(2) }}"),
              "True True True True False");
    EXPECT_EQ(render("{{ 'a' is in ['a'] }} {{ 'x' is not none }} {{ f is callable }} {{ 'AB' is upper }}",
                     R"({"f": 1})"),
              "True True False True");
    EXPECT_EQ(render("{{ enable_thinking is defined and enable_thinking is false }}",
                     R"({"enable_thinking": false})"),
              "True");
}

TEST(jinja, globals) {
    EXPECT_EQ(render("{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ dict(a=1) }}"),
              "[0, 1, 2] [1, 3, 5] {'a': 1}");
    try {
        render("ok{{ raise_exception('No user query found in messages.') }}");
        FAIL() << "raise_exception did not throw";
    } catch (const nibble::jinja::template_error& e) {
        EXPECT_STREQ(e.what(), "No user query found in messages.");
    }
    EXPECT_EQ(render("{{ strftime_now('%Y') | length }}"), "4");
}

TEST(jinja, syntax_errors_name_line_and_column) {
    EXPECT_EQ(error_of("line one\n{% if x %}\nunclosed"),
              "template line 3, column 9: unexpected end of template, expected 'elif'");
    EXPECT_EQ(error_of("{{ 1 + }}"), "template line 1, column 8: unexpected '}}'");
    EXPECT_EQ(error_of("ab\n  {% frobnicate %}"),
              "template line 2, column 6: unknown statement 'frobnicate'");
    EXPECT_EQ(error_of("{{ 'open }}"), "template line 1, column 4: unterminated string literal");
    EXPECT_EQ(error_of("é{{ x ! y }}"), "template line 1, column 7: unexpected character '!'");
    EXPECT_EQ(error_of("{% for x in xs %}{% endif %}"),
              "template line 1, column 21: unknown statement 'endif'");
    EXPECT_EQ(error_of("x\n{{ 1 | nosuchfilter }}"),
              "template line 2, column 6: unknown filter 'nosuchfilter'");
    EXPECT_EQ(error_of("{{ undefined_fn() }}"), "template line 1, column 4: 'undefined_fn' is undefined");
}

TEST(chat_template, load_from_model_folder) {
    nibble::test::temp_dir dir;
    nibble::test::write_file(dir / "tokenizer_config.json", R"({
        "bos_token": {"__type": "AddedToken", "content": "<B>"}, "eos_token": "<E>",
        "chat_template": [{"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}A:{% endif %}"},
                          {"name": "tool_use", "template": "tools={{ tools | length }}"}]})");
    nibble::chat_template t = nibble::chat_template_load(dir.path);
    auto messages = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "hi"}])");
    nibble::render_options opt;
    EXPECT_EQ(nibble::chat_template_render(t, messages, opt), "<B>user:hi<E>");
    opt.add_generation_prompt = true;
    EXPECT_EQ(nibble::chat_template_render(t, messages, opt), "<B>user:hi<E>A:");
    opt.tools = nlohmann::ordered_json::parse("[{}, {}]");
    EXPECT_EQ(nibble::chat_template_render(t, messages, opt), "tools=2");

    // chat_template.jinja next to tokenizer_config.json wins.
    nibble::test::write_file(dir / "chat_template.jinja", "{{ messages[0].content | upper }}{{ extra }}\n");
    t = nibble::chat_template_load(dir.path);
    opt.kwargs = nlohmann::ordered_json::parse(R"({"extra": "!"})");
    EXPECT_EQ(nibble::chat_template_render(t, messages, opt), "HI!");
}

TEST(chat_template, errors) {
    nibble::test::temp_dir dir;
    nibble::test::write_file(dir / "tokenizer_config.json", R"({"eos_token": "x"})");
    EXPECT_THROW(nibble::chat_template_load(dir.path), nibble::error);
    nibble::test::write_file(dir / "tokenizer_config.json", R"({"chat_template": "{% if %}"})");
    try {
        nibble::chat_template_load(dir.path);
        FAIL() << "no syntax error";
    } catch (const nibble::error& e) {
        EXPECT_NE(std::string(e.what()).find("line 1, column 7"), std::string::npos) << e.what();
    }
}

TEST(chat_template, strftime_now_can_be_pinned) {
    nibble::chat_template t = nibble::chat_template_from_string("{{ strftime_now('%d %b %Y %H:%M') }}");
    nibble::render_options opt;
    opt.now = 1736944245;  // 2025-01-15 12:30:45 UTC
    EXPECT_EQ(nibble::chat_template_render(t, nlohmann::ordered_json::array(), opt), "15 Jan 2025 12:30");
}

}  // namespace
