#include "server/server.h"

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "core/error.h"
#include "server/reasoning.h"

namespace nibble {

using json = nlohmann::json;

namespace {

// Events of one request, from the engine thread to its HTTP handler.
struct event_queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<gen_event> q;
    void push(const gen_event& ev) {
        std::lock_guard lk(mu);
        q.push_back(ev);
        cv.notify_one();
    }
    // False when nothing arrived within `timeout`.
    bool pop(gen_event& ev, std::chrono::milliseconds timeout) {
        std::unique_lock lk(mu);
        if (!cv.wait_for(lk, timeout, [&] { return !q.empty(); })) return false;
        ev = std::move(q.front());
        q.pop_front();
        return true;
    }
};

// Compact JSON; bytes that are not UTF-8 (a token piece cut inside a character) become U+FFFD.
std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json utf8_bytes(const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(int(c));
    return b;
}

// The logprobs object of a choice for `tokens` (OpenAI's completions or chat shape).
json logprobs_json(const std::vector<token_info>& tokens, const tokenizer& tok, bool chat,
                   int64_t& text_offset) {
    auto piece = [&](int32_t id) { return tok.decode(std::span<const int32_t>(&id, 1)); };
    if (chat) {
        json content = json::array();
        for (const token_info& t : tokens) {
            json top = json::array();
            for (const token_logprob& a : t.top) {
                std::string p = piece(a.token);
                top.push_back({{"token", p}, {"logprob", a.logprob}, {"bytes", utf8_bytes(p)}});
            }
            std::string p = piece(t.token);
            content.push_back(
                {{"token", p}, {"logprob", t.logprob}, {"bytes", utf8_bytes(p)}, {"top_logprobs", top}});
        }
        return {{"content", content}};
    }
    json out = {{"tokens", json::array()},
                {"token_logprobs", json::array()},
                {"top_logprobs", json::array()},
                {"text_offset", json::array()}};
    for (const token_info& t : tokens) {
        std::string p = piece(t.token);
        json top = json::object();
        for (const token_logprob& a : t.top) top[piece(a.token)] = a.logprob;
        out["tokens"].push_back(p);
        out["token_logprobs"].push_back(t.logprob);
        out["top_logprobs"].push_back(top);
        out["text_offset"].push_back(text_offset);
        text_offset += int64_t(p.size());
    }
    return out;
}

std::string random_id(const char* prefix) {
    static std::mutex mu;
    static std::mt19937_64 rng{std::random_device{}()};
    std::lock_guard lk(mu);
    return fmt::format("{}{:016x}{:016x}", prefix, rng(), rng());
}

int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void send_error(httplib::Response& res, int status, const std::string& message,
                const std::string& param = "") {
    res.status = status;
    res.set_content(dump(api_error_body(status, message, param)), "application/json");
}

json stop_reason(const gen_event& ev) {
    if (ev.stop_string) return *ev.stop_string;
    if (ev.stop_token) return *ev.stop_token;
    return nullptr;
}

json finish_json(const gen_event& ev) {
    return ev.finish == finish_reason_none ? json(nullptr) : json(finish_reason_name(ev.finish));
}

// A streamed chat delta's fields for a split piece of text: only the non-empty ones, reasoning
// mirrored into reasoning_content (vLLM).
json reasoning_delta_json(const reasoning_delta& d) {
    json delta = json::object();
    if (!d.reasoning.empty()) {
        delta["reasoning"] = d.reasoning;
        delta["reasoning_content"] = d.reasoning;
    }
    if (!d.content.empty()) delta["content"] = d.content;
    return delta;
}

// False when a chat request turned thinking off (chat_template_kwargs.enable_thinking=false).
bool thinking_requested(const json& body) {
    auto kw = body.find("chat_template_kwargs");
    if (kw == body.end() || !kw->is_object()) return true;
    auto it = kw->find("enable_thinking");
    return !(it != kw->end() && it->is_boolean() && !it->get<bool>());
}

// One streaming or non-streaming generation request in flight.
struct generation {
    api_request req;
    std::string id, model;
    int64_t created;
    std::shared_ptr<event_queue> events = std::make_shared<event_queue>();
    int64_t engine_id = 0;
    bool sent_role = false, done = false;
    const tokenizer* tok = nullptr;
    std::vector<token_info> pending;  // logprobs not yet sent (their text may be held back)
    int64_t text_offset = 0;
    std::unique_ptr<reasoning_parser> reasoning;  // chat with --reasoning-parser only
    const std::atomic<bool>* stopping = nullptr;  // the server's: engine errors are then 503s

    // The status of an engine error: 503 once the server is stopping, else 500.
    int error_status() const { return stopping && *stopping ? 503 : 500; }
    json chunk(json choice) const {
        return {{"id", id},
                {"object", req.chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created},
                {"model", model},
                {"choices", json::array({std::move(choice)})}};
    }
    // SSE text for one engine event ("" when there is nothing to send).
    std::string sse(const gen_event& ev) {
        auto line = [](const json& j) { return "data: " + dump(j) + "\n\n"; };
        if (!ev.error.empty()) return line(api_error_body(error_status(), ev.error)) + "data: [DONE]\n\n";
        std::string out;
        if (req.chat && !sent_role) {
            out += line(chunk({{"index", 0},
                               {"delta", {{"role", "assistant"}, {"content", ""}}},
                               {"logprobs", nullptr},
                               {"finish_reason", nullptr}}));
            sent_role = true;
        }
        if (ev.done && ev.finish == finish_reason_none) return out + "data: [DONE]\n\n";  // aborted
        pending.insert(pending.end(), ev.tokens.begin(), ev.tokens.end());
        json delta = json::object();
        if (reasoning) {
            reasoning_delta d = reasoning->feed(ev.text);
            if (ev.done) {
                reasoning_delta rest = reasoning->finish();
                d.reasoning += rest.reasoning;
                d.content += rest.content;
            }
            delta = reasoning_delta_json(d);
        } else if (!ev.text.empty()) {
            delta = {{"content", ev.text}};
        }
        if (!delta.empty() || ev.done) {
            json c = {{"index", 0}};
            if (req.chat)
                c["delta"] = std::move(delta);
            else
                c["text"] = ev.text;
            c["logprobs"] =
                req.n_logprobs >= 0 ? logprobs_json(pending, *tok, req.chat, text_offset) : json(nullptr);
            pending.clear();
            c["finish_reason"] = ev.done ? finish_json(ev) : json(nullptr);
            if (ev.done) c["stop_reason"] = stop_reason(ev);
            out += line(chunk(std::move(c)));
        }
        if (ev.done) {
            if (req.include_usage) {
                json u = chunk(nullptr);
                u["choices"] = json::array();
                u["usage"] = api_usage(ev.n_prompt, ev.n_generated);
                out += line(u);
            }
            out += "data: [DONE]\n\n";
        }
        return out;
    }
};

}  // namespace

api_server::api_server(engine& eng, served_model model, server_options opt)
    : eng_(eng), model_(std::move(model)), opt_(std::move(opt)), http_(std::make_unique<httplib::Server>()) {
    // Streaming requests hold a worker each: allow many more than the default 8.
    http_->new_task_queue = [] { return new httplib::ThreadPool(64); };
    // An idle keep-alive connection holds its worker (and so shutdown) until this runs out.
    http_->set_keep_alive_timeout(2);
    http_->set_tcp_nodelay(true);  // streamed tokens leave at once (no Nagle delay), as uvicorn does
    routes();
}

api_server::~api_server() = default;

void api_server::run() {
    if (!http_->bind_to_port(opt_.host.c_str(), opt_.port))
        fail("cannot listen on {}:{} (in use, or not a local address?)", opt_.host, opt_.port);
    http_->listen_after_bind();
}

void api_server::stop() {
    stopping_ = true;  // new requests: 503
    eng_.stop();       // running and queued ones: a final error event each
    // Let their handlers write those out before the listener goes (httplib ends a chunked response
    // unfinished once stopped), a bounded wait for clients that do not read.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (n_active_ > 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    http_->stop();
}

void api_server::routes() {
    httplib::Server& s = *http_;
    s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        if (stopping_) {
            send_error(res, 503, "server shutting down");
            return httplib::Server::HandlerResponse::Handled;
        }
        if (opt_.api_key.empty() || req.method == "OPTIONS" || req.path.rfind("/v1", 0) != 0)
            return httplib::Server::HandlerResponse::Unhandled;
        if (req.get_header_value("Authorization") == "Bearer " + opt_.api_key)
            return httplib::Server::HandlerResponse::Unhandled;
        res.status = 401;
        res.set_content(R"({"error":"Unauthorized"})", "application/json");
        return httplib::Server::HandlerResponse::Handled;
    });
    s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            send_error(res, 500, e.what());
        } catch (...) {
            send_error(res, 500, "unknown error");
        }
    });
    s.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.status = 200; });
    s.Get("/version", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(dump(json{{"version", opt_.version}}), "application/json");
    });
    s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(dump(api_models(model_)), "application/json");
    });
    s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
        engine_stats st = eng_.stats();
        const std::string label = "{model_name=\"" + model_.name + "\"}";
        std::string out;
        auto metric = [&](const char* name, const char* type, const char* help, auto value) {
            out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{}{} {}\n", name, help, name, type, name, label,
                               value);
        };
        metric("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
               st.n_running);
        metric("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
               st.n_waiting);
        metric("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
               st.n_prompt_tokens);
        metric("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
               st.n_generation_tokens);
        metric("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
               st.kv_usage);
        metric("vllm:num_preemptions_total", "counter", "Cumulative number of preemption from the engine.",
               st.n_preemptions);
        metric("vllm:prefix_cache_queries_total", "counter",
               "Prefix cache queries, in terms of number of queried tokens.", st.prefix_cache.n_queried);
        metric("vllm:prefix_cache_hits_total", "counter",
               "Prefix cache hits, in terms of number of cached tokens.", st.prefix_cache.n_hit);
        out +=
            "# HELP vllm:request_success_total Count of successfully processed requests.\n"
            "# TYPE vllm:request_success_total counter\n";
        for (auto [reason, n] : {std::pair<const char*, int64_t>{"stop", st.n_finished_stop},
                                 {"length", st.n_finished_length},
                                 {"abort", st.n_aborted}})
            out += fmt::format("vllm:request_success_total{{model_name=\"{}\",finished_reason=\"{}\"}} {}\n",
                               model_.name, reason, n);
        res.set_content(out, "text/plain; version=0.0.4; charset=utf-8");
    });

    auto parse_body = [](const httplib::Request& req) {
        try {
            return json::parse(req.body);
        } catch (const json::parse_error& e) {
            // e.what(): "[json.exception.parse_error.101] parse error at line 1, column 15: syntax
            // error while parsing value - invalid string: ill-formed UTF-8 byte; last read: ..."
            std::string why = e.what();
            if (size_t at = why.find("] "); at != std::string::npos) why = why.substr(at + 2);
            throw api_error(400, "the request body is not valid JSON: " + why);
        }
    };
    s.Post("/tokenize", [this, parse_body](const httplib::Request& req, httplib::Response& res) {
        try {
            std::vector<int32_t> ids = api_parse_tokenize(parse_body(req), model_);
            json out = {{"count", ids.size()}, {"max_model_len", model_.runner->max_ctx()}, {"tokens", ids}};
            res.set_content(dump(out), "application/json");
        } catch (const api_error& e) {
            send_error(res, e.status, e.what(), e.param);
        }
    });
    s.Post("/detokenize", [this, parse_body](const httplib::Request& req, httplib::Response& res) {
        try {
            std::vector<int32_t> ids = api_parse_detokenize(parse_body(req), model_);
            res.set_content(dump(json{{"prompt", model_.runner->tok().decode(ids)}}), "application/json");
        } catch (const api_error& e) {
            send_error(res, e.status, e.what(), e.param);
        }
    });

    auto generate = [this, parse_body](const httplib::Request& hreq, httplib::Response& res, bool chat) {
        // Counts this request in n_active_ until its response is written (streams: until httplib
        // releases the content provider, after the last chunk).
        std::shared_ptr<void> active(nullptr, [this](void*) { --n_active_; });
        ++n_active_;
        auto g = std::make_shared<generation>();
        g->stopping = &stopping_;
        try {
            const json body = parse_body(hreq);
            g->req = api_parse_generation(body, model_, chat);
            if (chat && !opt_.reasoning_parser.empty())
                g->reasoning = reasoning_parser_make(opt_.reasoning_parser, thinking_requested(body));
        } catch (const api_error& e) {
            send_error(res, e.status, e.what(), e.param);
            return;
        }
        g->id = random_id(chat ? "chatcmpl-" : "cmpl-");
        g->model = model_.name;
        g->created = unix_now();
        gen_request er;
        er.prompt = g->req.prompt;
        er.params = g->req.params;
        er.skip_special = g->req.skip_special;
        er.n_logprobs = g->req.n_logprobs;
        g->tok = &model_.runner->tok();
        er.on_event = [q = g->events](const gen_event& ev) { q->push(ev); };
        try {
            g->engine_id = eng_.submit(std::move(er));
        } catch (const error& e) {
            send_error(res, 503, e.what());
            return;
        }
        if (g->req.stream) {
            res.set_header("Cache-Control", "no-cache");
            res.set_chunked_content_provider(
                "text/event-stream; charset=utf-8",
                [g](size_t, httplib::DataSink& sink) {
                    gen_event ev;
                    if (!g->events->pop(ev, std::chrono::milliseconds(50))) return true;
                    std::string out = g->sse(ev);
                    if (!out.empty() && !sink.write(out.data(), out.size())) return false;
                    if (ev.done) {
                        g->done = true;
                        sink.done();
                    }
                    return true;
                },
                [this, g, active](bool) {
                    if (!g->done) eng_.abort(g->engine_id);
                });
            return;
        }
        std::string text;
        std::vector<token_info> tokens;
        gen_event ev;
        while (true) {
            if (!g->events->pop(ev, std::chrono::milliseconds(1000))) continue;
            text += ev.text;
            tokens.insert(tokens.end(), ev.tokens.begin(), ev.tokens.end());
            if (ev.done) break;
        }
        if (!ev.error.empty()) {
            send_error(res, g->error_status(), ev.error);
            return;
        }
        json choice = {{"index", 0}};
        if (chat && g->reasoning) {
            reasoning_delta d = g->reasoning->feed(text);
            reasoning_delta rest = g->reasoning->finish();
            d.reasoning += rest.reasoning;
            d.content += rest.content;
            auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
            choice["message"] = {{"role", "assistant"},
                                 {"content", or_null(d.content)},
                                 {"reasoning", or_null(d.reasoning)},
                                 {"reasoning_content", or_null(d.reasoning)}};
        } else if (chat)
            choice["message"] = {{"role", "assistant"}, {"content", text}};
        else
            choice["text"] = text;
        int64_t offset = 0;
        choice["logprobs"] = g->req.n_logprobs >= 0
                                 ? logprobs_json(tokens, model_.runner->tok(), chat, offset)
                                 : json(nullptr);
        choice["finish_reason"] = finish_json(ev);
        choice["stop_reason"] = stop_reason(ev);
        json out = {{"id", g->id},
                    {"object", chat ? "chat.completion" : "text_completion"},
                    {"created", g->created},
                    {"model", g->model},
                    {"choices", json::array({choice})},
                    {"usage", api_usage(ev.n_prompt, ev.n_generated)}};
        res.set_content(dump(out), "application/json");
    };
    s.Post("/v1/completions",
           [generate](const httplib::Request& req, httplib::Response& res) { generate(req, res, false); });
    s.Post("/v1/chat/completions",
           [generate](const httplib::Request& req, httplib::Response& res) { generate(req, res, true); });
}

}  // namespace nibble
