// The reasoning parser (server/reasoning.h) over every way of cutting the same outputs into pieces,
// and `nibble serve --reasoning-parser qwen3` end to end on the bundled model: the chat message and
// delta shapes, enable_thinking=false, completions untouched, usage unchanged, bad flag values.
#include <gtest/gtest.h>

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "server/reasoning.h"
#include "server/serve_util.h"
#include "test_util.h"

using namespace nibble;
using json = nlohmann::json;

namespace {

struct split {
    std::string reasoning, content;
    bool operator==(const split&) const = default;
};

std::ostream& operator<<(std::ostream& os, const split& s) {
    return os << "{reasoning '" << s.reasoning << "', content '" << s.content << "'}";
}

// Feeds `pieces` to a fresh parser and concatenates what it returns.
split parse(const std::vector<std::string>& pieces, bool thinking = true) {
    reasoning_parser p(thinking);
    split out;
    auto add = [&](const reasoning_delta& d) {
        // Once content started, no more reasoning comes.
        if (!out.content.empty()) {
            EXPECT_TRUE(d.reasoning.empty()) << d.reasoning;
        }
        out.reasoning += d.reasoning;
        out.content += d.content;
    };
    for (const std::string& piece : pieces) add(p.feed(piece));
    add(p.finish());
    return out;
}

// Checks `text` cut every way into 1, 2 and 3 pieces, and byte by byte, against `want`.
void expect_every_split(const std::string& text, const split& want, bool thinking = true) {
    SCOPED_TRACE("text '" + text + "'");
    EXPECT_EQ(parse({text}, thinking), want);
    const size_t n = text.size();
    for (size_t i = 0; i <= n; ++i) {
        EXPECT_EQ(parse({text.substr(0, i), text.substr(i)}, thinking), want) << "cut at " << i;
        for (size_t j = i; j <= n; ++j)
            EXPECT_EQ(parse({text.substr(0, i), text.substr(i, j - i), text.substr(j)}, thinking), want)
                << "cuts at " << i << ", " << j;
    }
    std::vector<std::string> bytes;
    for (char c : text) bytes.emplace_back(1, c);
    EXPECT_EQ(parse(bytes, thinking), want) << "byte by byte";
}

}  // namespace

TEST(reasoning_parser, both_tags_every_split) {
    expect_every_split("<think>abc</think>def", {"abc", "def"});
}

TEST(reasoning_parser, only_the_closing_tag) {
    // Qwen3.5-style templates open <think> in the prompt.
    expect_every_split("abc</think>def", {"abc", "def"});
    expect_every_split("</think>", {"", ""});
    expect_every_split("</think>def", {"", "def"});
}

TEST(reasoning_parser, empty_reasoning_and_empty_content) {
    expect_every_split("<think></think>def", {"", "def"});
    expect_every_split("<think>abc</think>", {"abc", ""});
    expect_every_split("<think></think>", {"", ""});
    expect_every_split("<think>\n\n</think>\n\nok", {"\n\n", "\n\nok"});
}

TEST(reasoning_parser, no_closing_tag_is_all_reasoning_while_thinking) {
    // vLLM's Qwen3 rule: thinking on and no </think> means the thinking was cut short.
    expect_every_split("abc", {"abc", ""});
    expect_every_split("<think>abc", {"abc", ""});
    expect_every_split("<think>", {"", ""});
    expect_every_split("<thi", {"<thi", ""});
    expect_every_split("abc</thi", {"abc</thi", ""});
    expect_every_split("<thinking>x", {"<thinking>x", ""});
    EXPECT_EQ(parse({}), split{});
    EXPECT_EQ(parse({"", "", ""}), split{});
}

TEST(reasoning_parser, thinking_off_is_all_content_untouched) {
    expect_every_split("abc", {"", "abc"}, false);
    expect_every_split("<think>abc</think>def", {"", "<think>abc</think>def"}, false);
}

TEST(reasoning_parser, only_the_first_tags_count) {
    expect_every_split("a</think>b</think>c", {"a", "b</think>c"});
    expect_every_split("<think>a</think><think>b", {"a", "<think>b"});
    // Only a leading <think> is dropped.
    expect_every_split("x<think>y</think>z", {"x<think>y", "z"});
    expect_every_split("<<think>a</think>b", {"<<think>a", "b"});
    expect_every_split("a<</think>b", {"a<", "b"});
}

TEST(reasoning_parser, multibyte_utf8_around_the_tags) {
    // Pieces may even cut inside a character: the bytes still land in the right field, in order.
    expect_every_split("<think>é世</think>😀ü", {"é世", "😀ü"});
    expect_every_split("世界</think>", {"世界", ""});
    expect_every_split("<think>😀", {"😀", ""});
}

TEST(reasoning_parser, holds_back_only_what_may_be_a_tag) {
    reasoning_parser p;
    EXPECT_TRUE(p.feed("<th").empty());
    EXPECT_TRUE(p.feed("ink>").empty());
    EXPECT_EQ(p.feed("plan").reasoning, "plan");
    reasoning_delta d = p.feed("ning </thi");
    EXPECT_EQ(d.reasoning, "ning ");
    EXPECT_TRUE(d.content.empty());
    d = p.feed("nk>ans");
    EXPECT_TRUE(d.reasoning.empty());
    EXPECT_EQ(d.content, "ans");
    EXPECT_EQ(p.feed("wer</think>").content, "wer</think>");
    EXPECT_TRUE(p.finish().empty());
}

TEST(reasoning_parser, names) {
    EXPECT_TRUE(reasoning_parser_known("qwen3"));
    EXPECT_FALSE(reasoning_parser_known("deepseek_r1"));
    EXPECT_FALSE(reasoning_parser_known(""));
    EXPECT_EQ(reasoning_parser_names(), std::vector<std::string>{"qwen3"});
    EXPECT_NE(reasoning_parser_make("qwen3", true), nullptr);
    EXPECT_THROW(reasoning_parser_make("nope", true), error);
}

namespace {

json post(int port, const std::string& path, const json& body, int* status = nullptr) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60);
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    if (!r) return json();
    if (status) *status = r->status;
    return json::parse(r->body, nullptr, false);
}

// The data events of a streamed response (without [DONE]).
std::vector<json> post_stream(int port, const std::string& path, json body) {
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60);
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    std::vector<json> events;
    if (!r) return events;
    const std::string& b = r->body;
    for (size_t pos = 0; pos < b.size();) {
        size_t end = b.find("\n\n", pos);
        if (end == std::string::npos || b.compare(pos, 6, "data: ") != 0) break;
        std::string data = b.substr(pos + 6, end - pos - 6);
        if (data != "[DONE]") events.push_back(json::parse(data, nullptr, false));
        pos = end + 2;
    }
    return events;
}

// The text the model generates for `messages` (rendered by /tokenize), through /v1/completions.
json completion_of(int port, const json& messages, const json& kwargs) {
    json t =
        post(port, "/tokenize",
             {{"messages", messages}, {"add_generation_prompt", true}, {"chat_template_kwargs", kwargs}});
    return post(port, "/v1/completions", {{"prompt", t["tokens"]}, {"max_tokens", 20}, {"temperature", 0}});
}

}  // namespace

TEST(serve_reasoning, chat_splits_by_vllms_qwen3_rule_and_completions_are_untouched) {
    test::serve_process srv("--reasoning-parser qwen3");
    ASSERT_TRUE(srv.ok()) << srv.log();
    const json messages = json::array({{{"role", "user"}, {"content", "Write a function."}}});
    for (bool thinking : {true, false}) {
        SCOPED_TRACE(thinking ? "thinking on (default)" : "enable_thinking=false");
        const json kwargs = thinking ? json::object() : json{{"enable_thinking", false}};
        const json want = completion_of(srv.port(), messages, kwargs);
        const std::string text = want["choices"][0]["text"];
        ASSERT_FALSE(text.empty());
        // The tiny model emits no tags: thinking on, the whole output is unfinished reasoning.
        ASSERT_EQ(text.find("think>"), std::string::npos) << text;

        json body = {{"messages", messages}, {"max_tokens", 20}, {"temperature", 0}};
        if (!thinking) body["chat_template_kwargs"] = kwargs;
        int status = 0;
        json r = post(srv.port(), "/v1/chat/completions", body, &status);
        ASSERT_EQ(status, 200) << r.dump();
        const json& msg = r["choices"][0]["message"];
        EXPECT_EQ(msg["role"], "assistant");
        if (thinking) {
            EXPECT_EQ(msg["reasoning"], text);
            EXPECT_EQ(msg["reasoning_content"], text);
            EXPECT_TRUE(msg["content"].is_null()) << msg.dump();
        } else {
            EXPECT_EQ(msg["content"], text);
            EXPECT_TRUE(msg["reasoning"].is_null()) << msg.dump();
            EXPECT_TRUE(msg["reasoning_content"].is_null()) << msg.dump();
        }
        EXPECT_EQ(r["usage"], want["usage"]);  // completion_tokens counts every generated token
        EXPECT_EQ(r["choices"][0]["finish_reason"], want["choices"][0]["finish_reason"]);

        std::vector<json> events = post_stream(srv.port(), "/v1/chat/completions", body);
        ASSERT_GE(events.size(), 3u);
        EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
        std::string reasoning, content;
        for (size_t i = 1; i < events.size(); ++i) {
            if (events[i]["choices"].empty()) {
                EXPECT_EQ(events[i]["usage"], want["usage"]);
                continue;
            }
            const json& delta = events[i]["choices"][0]["delta"];
            for (auto& [k, v] : delta.items()) {
                ASSERT_TRUE(v.is_string()) << delta.dump();
                EXPECT_FALSE(v.get<std::string>().empty()) << "empty '" << k << "' in " << delta.dump();
                EXPECT_TRUE(k == "reasoning" || k == "reasoning_content" || k == "content") << k;
            }
            EXPECT_EQ(delta.contains("reasoning"), delta.contains("reasoning_content")) << delta.dump();
            if (delta.contains("reasoning")) {
                EXPECT_EQ(delta["reasoning"], delta["reasoning_content"]);
                reasoning += delta["reasoning"].get<std::string>();
            }
            if (delta.contains("content")) content += delta["content"].get<std::string>();
        }
        EXPECT_EQ(reasoning, thinking ? text : "");
        EXPECT_EQ(content, thinking ? "" : text);
        EXPECT_EQ(events.back()["usage"], want["usage"]);
    }
    // Completions know no reasoning.
    json c = post(srv.port(), "/v1/completions", {{"prompt", "<think>a</think>"}, {"max_tokens", 4}});
    EXPECT_FALSE(c["choices"][0].contains("reasoning"));
    EXPECT_EQ(srv.terminate(), 0) << srv.log();
}

TEST(serve_reasoning, an_unknown_parser_is_rejected_at_startup) {
    auto r = test::run_nibble("serve " + test::bundled_model() + " --port 0 --reasoning-parser deepseek_r1");
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("--reasoning-parser"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("qwen3"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("deepseek_r1"), std::string::npos) << r.out;
}
