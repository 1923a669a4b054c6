// nibble serve end to end on 127.0.0.1 with the bundled model: the OpenAI surface, SSE framing,
// greedy output equal to `nibble run`, error bodies, continuous batching under concurrency, auth and
// graceful shutdown.
#include <gtest/gtest.h>

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "server/serve_util.h"
#include "test_util.h"

using namespace nibble;
using json = nlohmann::json;

namespace {

const char* k_prompt = "def fibonacci(n):";

std::string quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

httplib::Client client(int port) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60);
    c.set_connection_timeout(5);
    return c;
}

json post(int port, const std::string& path, const json& body, int* status = nullptr) {
    auto c = client(port);
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    if (!r) return json();
    if (status) *status = r->status;
    return json::parse(r->body, nullptr, false);
}

// The SSE events of a streamed response: the JSON of each data line, and whether [DONE] ended it.
struct sse_result {
    int status = 0;
    std::string content_type;
    std::vector<json> events;
    bool done = false;
    bool well_formed = true;  // every event is "data: ...\n\n", [DONE] last
};

sse_result post_stream(int port, const std::string& path, json body) {
    body["stream"] = true;
    auto c = client(port);
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    sse_result s;
    if (!r) return s;
    s.status = r->status;
    s.content_type = r->get_header_value("Content-Type");
    const std::string& b = r->body;
    size_t pos = 0;
    while (pos < b.size()) {
        size_t end = b.find("\n\n", pos);
        if (end == std::string::npos || b.compare(pos, 6, "data: ") != 0 || s.done) {
            s.well_formed = false;
            break;
        }
        std::string data = b.substr(pos + 6, end - pos - 6);
        if (data == "[DONE]")
            s.done = true;
        else
            s.events.push_back(json::parse(data, nullptr, false));
        pos = end + 2;
    }
    return s;
}

std::string stream_text(const sse_result& s, bool chat) {
    std::string text;
    for (const json& e : s.events)
        for (const json& c : e.value("choices", json::array())) {
            if (chat && c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
            if (!chat) text += c["text"].get<std::string>();
        }
    return text;
}

json run_json(const std::string& prompt, int max_tokens) {
    auto r = test::run_nibble("run --model " + test::bundled_model() + " --prompt " + quote(prompt) +
                              " --max-tokens " + std::to_string(max_tokens) + " --temperature 0 --json");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return json::parse(r.out, nullptr, false);
}

}  // namespace

TEST(serve, models_health_version_metrics) {
    test::serve_process srv("--served-model-name tiny");
    ASSERT_TRUE(srv.ok()) << srv.log();
    auto c = client(srv.port());
    auto r = c.Get("/v1/models");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    json m = json::parse(r->body);
    EXPECT_EQ(m["object"], "list");
    EXPECT_EQ(m["data"][0]["id"], "tiny");
    EXPECT_EQ(m["data"][0]["object"], "model");
    EXPECT_EQ(c.Get("/health")->status, 200);
    EXPECT_TRUE(json::parse(c.Get("/version")->body).contains("version"));
    r = c.Get("/metrics");
    EXPECT_NE(r->body.find("vllm:num_requests_running{model_name=\"tiny\"} 0"), std::string::npos) << r->body;
    EXPECT_NE(r->body.find("vllm:generation_tokens_total"), std::string::npos);
    // tokenize / detokenize round trip
    json t = post(srv.port(), "/tokenize", {{"prompt", k_prompt}});
    EXPECT_EQ(t["count"], t["tokens"].size());
    json d = post(srv.port(), "/detokenize", {{"tokens", t["tokens"]}});
    EXPECT_EQ(d["prompt"], k_prompt);
    EXPECT_EQ(srv.terminate(), 0) << srv.log();
}

TEST(serve, greedy_completion_matches_nibble_run) {
    json want = run_json(k_prompt, 24);
    test::serve_process srv;
    ASSERT_TRUE(srv.ok()) << srv.log();
    json body = {{"prompt", k_prompt}, {"max_tokens", 24}, {"temperature", 0}};
    int status = 0;
    json r = post(srv.port(), "/v1/completions", body, &status);
    ASSERT_EQ(status, 200) << r.dump();
    EXPECT_EQ(r["object"], "text_completion");
    EXPECT_EQ(r["choices"][0]["text"], want["text"]);
    EXPECT_EQ(r["choices"][0]["finish_reason"], want["finish_reason"]);
    EXPECT_EQ(r["usage"]["prompt_tokens"], want["prompt_ids"].size());
    EXPECT_EQ(r["usage"]["completion_tokens"], want["generated_ids"].size());

    body["stream_options"] = {{"include_usage", true}};
    sse_result s = post_stream(srv.port(), "/v1/completions", body);
    ASSERT_EQ(s.status, 200);
    EXPECT_EQ(s.content_type.rfind("text/event-stream", 0), 0u) << s.content_type;
    EXPECT_TRUE(s.well_formed);
    EXPECT_TRUE(s.done);
    ASSERT_GE(s.events.size(), 2u);
    EXPECT_EQ(stream_text(s, false), want["text"]);
    const json& usage = s.events.back();
    EXPECT_EQ(usage["choices"], json::array());
    EXPECT_EQ(usage["usage"]["completion_tokens"], want["generated_ids"].size());
    EXPECT_EQ(s.events[s.events.size() - 2]["choices"][0]["finish_reason"], want["finish_reason"]);
    std::set<std::string> ids;
    for (const json& e : s.events) ids.insert(e["id"].get<std::string>());
    EXPECT_EQ(ids.size(), 1u);
    // Token ids as the prompt give the same text.
    json ids_body = {{"prompt", want["prompt_ids"]}, {"max_tokens", 24}, {"temperature", 0}};
    EXPECT_EQ(post(srv.port(), "/v1/completions", ids_body)["choices"][0]["text"], want["text"]);
}

TEST(serve, chat_streaming_and_not_agree_with_the_rendered_prompt) {
    test::serve_process srv;
    ASSERT_TRUE(srv.ok()) << srv.log();
    json messages = json::array({{{"role", "user"}, {"content", "Write a function."}}});
    json body = {
        {"model", test::bundled_model()}, {"messages", messages}, {"max_tokens", 20}, {"temperature", 0}};
    int status = 0;
    json r = post(srv.port(), "/v1/chat/completions", body, &status);
    ASSERT_EQ(status, 200) << r.dump();
    EXPECT_EQ(r["object"], "chat.completion");
    EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
    const std::string text = r["choices"][0]["message"]["content"];

    // The same conversation, rendered by /tokenize, as a completion prompt.
    json t = post(srv.port(), "/tokenize", {{"messages", messages}, {"add_generation_prompt", true}});
    json c = post(srv.port(), "/v1/completions",
                  {{"prompt", t["tokens"]}, {"max_tokens", 20}, {"temperature", 0}});
    EXPECT_EQ(c["choices"][0]["text"], text);
    EXPECT_EQ(r["usage"]["prompt_tokens"], t["count"]);

    // List-of-parts content is the same message.
    json parts = body;
    parts["messages"][0]["content"] = json::array({{{"type", "text"}, {"text", "Write a function."}}});
    EXPECT_EQ(post(srv.port(), "/v1/chat/completions", parts)["choices"][0]["message"]["content"], text);

    sse_result s = post_stream(srv.port(), "/v1/chat/completions", body);
    EXPECT_TRUE(s.well_formed);
    EXPECT_TRUE(s.done);
    ASSERT_GE(s.events.size(), 2u);
    EXPECT_EQ(s.events[0]["object"], "chat.completion.chunk");
    EXPECT_EQ(s.events[0]["choices"][0]["delta"]["role"], "assistant");
    EXPECT_EQ(stream_text(s, true), text);
    EXPECT_EQ(s.events.back()["choices"][0]["finish_reason"], r["choices"][0]["finish_reason"]);
    EXPECT_FALSE(s.events.back().contains("usage"));  // no include_usage: no usage chunk
}

TEST(serve, bad_requests_get_openai_error_bodies_and_the_server_keeps_serving) {
    test::serve_process srv("--max-model-len 64");
    ASSERT_TRUE(srv.ok()) << srv.log();
    struct bad_case {
        std::string path, body;
        int status;
        std::string param;
    };
    const std::string long_prompt(400, 'a');
    std::vector<bad_case> cases = {
        {"/v1/completions", "{not json", 400, ""},
        {"/v1/completions", R"({"prompt": 5})", 400, "prompt"},
        {"/v1/completions", R"({"prompt": "x", "max_tokens": "ten"})", 400, "max_tokens"},
        {"/v1/completions", R"({"prompt": "x", "model": "no-such-model"})", 404, "model"},
        {"/v1/completions", R"({"prompt": "x", "temperature": -1})", 400, "temperature"},
        {"/v1/completions", R"({"prompt": "x", "top_p": 1.5})", 400, "top_p"},
        {"/v1/completions", R"({"prompt": "x", "n": 2})", 400, "n"},
        {"/v1/completions", R"({"prompt": "x", "logprobs": 21})", 400, "logprobs"},
        {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})",
         400, "top_logprobs"},
        {"/v1/completions", R"({"prompt": "x", "max_tokens": 1000})", 400, "max_tokens"},
        {"/v1/completions", R"({"prompt": [1, 99999999]})", 400, "prompt"},
        {"/v1/completions", json{{"prompt", long_prompt}}.dump(), 400, "prompt"},
        {"/v1/chat/completions", R"({"messages": "hi"})", 400, "messages"},
        {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "x"}], "tools": []})", 400,
         "tools"},
        {"/v1/chat/completions",
         R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})",
         400, "response_format"},
        {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "x"}], "stream": "yes"})", 400,
         "stream"},
    };
    for (const bad_case& bc : cases) {
        auto c = client(srv.port());
        auto r = c.Post(bc.path.c_str(), bc.body, "application/json");
        ASSERT_TRUE(r) << bc.body;
        EXPECT_EQ(r->status, bc.status) << bc.body << " -> " << r->body;
        json e = json::parse(r->body, nullptr, false);
        ASSERT_TRUE(e.contains("error")) << r->body;
        EXPECT_TRUE(e["error"]["message"].is_string());
        EXPECT_TRUE(e["error"]["type"].is_string());
        EXPECT_EQ(e["error"]["code"], bc.status);
        if (bc.param.empty())
            EXPECT_TRUE(e["error"]["param"].is_null());
        else
            EXPECT_EQ(e["error"]["param"], bc.param) << r->body;
    }
    int status = 0;
    post(srv.port(), "/v1/completions", {{"prompt", "x"}, {"max_tokens", 4}}, &status);
    EXPECT_EQ(status, 200);
    EXPECT_EQ(client(srv.port()).Get("/health")->status, 200);
}

TEST(serve, concurrent_streams_are_batched_and_all_complete) {
    // 4 slots for 10 requests: some wait in the queue, all finish with the text they get alone.
    test::serve_process srv("--max-num-seqs 4 --max-num-batched-tokens 16");
    ASSERT_TRUE(srv.ok()) << srv.log();
    const int n = 10;
    std::vector<json> bodies;
    std::vector<std::string> alone(n);
    for (int i = 0; i < n; ++i) {
        bodies.push_back({{"prompt", "def f" + std::to_string(i) + "(x):\n    return"},
                          {"max_tokens", 8 + 3 * i},
                          {"temperature", 0},
                          {"ignore_eos", true},
                          {"stream_options", {{"include_usage", true}}}});
        alone[i] = post(srv.port(), "/v1/completions", bodies[i])["choices"][0]["text"];
    }
    std::vector<sse_result> got(n);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i)
        threads.emplace_back([&, i] { got[i] = post_stream(srv.port(), "/v1/completions", bodies[i]); });
    for (auto& t : threads) t.join();
    for (int i = 0; i < n; ++i) {
        EXPECT_EQ(got[i].status, 200) << i;
        EXPECT_TRUE(got[i].done) << i;
        EXPECT_TRUE(got[i].well_formed) << i;
        EXPECT_EQ(stream_text(got[i], false), alone[i]) << i;
        ASSERT_FALSE(got[i].events.empty());
        EXPECT_EQ(got[i].events.back()["usage"]["completion_tokens"], 8 + 3 * i) << i;
    }
    auto m = client(srv.port()).Get("/metrics");
    EXPECT_NE(m->body.find("vllm:request_success_total{model_name=\"" + test::bundled_model() +
                           "\",finished_reason=\"length\"} 20"),
              std::string::npos)
        << m->body;
}

TEST(serve, api_key_guards_v1_only) {
    test::serve_process srv("--api-key sekrit");
    ASSERT_TRUE(srv.ok()) << srv.log();
    auto c = client(srv.port());
    auto r = c.Get("/v1/models");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(c.Get("/health")->status, 200);
    httplib::Headers h = {{"Authorization", "Bearer sekrit"}};
    EXPECT_EQ(c.Get("/v1/models", h)->status, 200);
}

TEST(serve, a_client_that_disconnects_frees_its_slot) {
    test::serve_process srv("--max-num-seqs 1");
    ASSERT_TRUE(srv.ok()) << srv.log();
    {
        // Read the first bytes of a long stream, then close the socket.
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(uint16_t(srv.port()));
        ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        const std::string body =
            json{{"prompt", k_prompt}, {"max_tokens", 1000}, {"ignore_eos", true}, {"stream", true}}.dump();
        const std::string req =
            "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            "application/json\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body;
        ASSERT_EQ(send(fd, req.data(), req.size(), 0), ssize_t(req.size()));
        char buf[256];
        EXPECT_GT(recv(fd, buf, sizeof buf, 0), 0);
        close(fd);
    }
    // The only slot must come free for the next request.
    int status = 0;
    json r = post(srv.port(), "/v1/completions", {{"prompt", "x"}, {"max_tokens", 4}}, &status);
    EXPECT_EQ(status, 200) << r.dump();
    // ... and the dropped stream stopped early (1000 tokens take the tiny model about 0.7 s).
    const std::string m = client(srv.port()).Get("/metrics")->body;
    const std::string key = "vllm:generation_tokens_total{model_name=\"" + test::bundled_model() + "\"} ";
    const size_t at = m.find(key);
    ASSERT_NE(at, std::string::npos) << m;
    EXPECT_LT(std::stoll(m.substr(at + key.size())), 1000) << m;
    EXPECT_NE(m.find("finished_reason=\"abort\"} 1"), std::string::npos) << m;
}

TEST(serve, sigterm_ends_running_requests_and_exits_cleanly) {
    test::serve_process srv;
    ASSERT_TRUE(srv.ok()) << srv.log();
    sse_result s;
    int status = 0;
    json plain;
    std::thread streaming([&] {
        s = post_stream(srv.port(), "/v1/completions",
                        {{"prompt", k_prompt}, {"max_tokens", 2000}, {"ignore_eos", true}});
    });
    std::thread blocking([&] {
        plain = post(srv.port(), "/v1/completions",
                     {{"prompt", "x"}, {"max_tokens", 2000}, {"ignore_eos", true}}, &status);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(srv.terminate(), 0) << srv.log();
    streaming.join();
    blocking.join();
    // Both requests ended (with an error, as the server went down), none hung.
    EXPECT_LT(stream_text(s, false).size(), 20000u);
}

TEST(serve, logprobs_of_greedy_tokens) {
    test::serve_process srv;
    ASSERT_TRUE(srv.ok()) << srv.log();
    json body = {{"prompt", k_prompt}, {"max_tokens", 12}, {"temperature", 0}, {"logprobs", 3}};
    json r = post(srv.port(), "/v1/completions", body);
    const json& lp = r["choices"][0]["logprobs"];
    ASSERT_TRUE(lp.is_object()) << r.dump();
    ASSERT_EQ(lp["tokens"].size(), 12u);
    std::string joined;
    for (size_t i = 0; i < 12; ++i) {
        joined += lp["tokens"][i].get<std::string>();
        const double chosen = lp["token_logprobs"][i];
        EXPECT_LE(chosen, 0.0);
        ASSERT_EQ(lp["top_logprobs"][i].size(), 3u);
        double best = -1e30;
        for (auto& [k, v] : lp["top_logprobs"][i].items()) best = std::max(best, v.get<double>());
        EXPECT_NEAR(chosen, best, 1e-5) << i;  // greedy takes the most likely token
    }
    EXPECT_EQ(joined, r["choices"][0]["text"]);

    json chat = {{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})},
                 {"max_tokens", 6},
                 {"temperature", 0},
                 {"logprobs", true},
                 {"top_logprobs", 2},
                 {"stream_options", {{"include_usage", true}}}};
    sse_result s = post_stream(srv.port(), "/v1/chat/completions", chat);
    ASSERT_TRUE(s.done);
    size_t n = 0;
    for (const json& e : s.events)
        for (const json& c : e["choices"])
            if (c["logprobs"].is_object())
                for (const json& t : c["logprobs"]["content"]) {
                    ++n;
                    EXPECT_EQ(t["top_logprobs"].size(), 2u);
                }
    EXPECT_EQ(n, s.events.back()["usage"]["completion_tokens"].get<size_t>());
}
