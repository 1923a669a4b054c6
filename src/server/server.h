// The OpenAI-compatible HTTP server (cpp-httplib) over an engine: /v1/models, /v1/completions,
// /v1/chat/completions (streaming as SSE per shared/spec/serving.md 1.4, and non-streaming),
// /health, /version, /tokenize, /detokenize, /metrics (Prometheus, vLLM's names).
//
// Bad requests get 4xx with the OpenAI error envelope and the server keeps serving. With an API
// key, paths under /v1 need "Authorization: Bearer KEY" (else 401 {"error": "Unauthorized"}).
// A streaming client that disconnects has its request aborted (found when a write fails).
//
// stop() (SIGINT / SIGTERM in `nibble serve`) drops work rather than draining it: from then on every
// new request gets 503 "server shutting down"; running and queued requests end at once with that
// error (a stream with `data: {"error": ...}` then `data: [DONE]`, a non-streaming request with a
// 503 body), their responses are written out in full, then the listener closes and run() returns
// once idle keep-alive connections time out (keep-alive timeout 2 s).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "engine/engine.h"
#include "server/openai_api.h"

namespace httplib {
class Server;
}

namespace nibble {

struct server_options {
    std::string host = "127.0.0.1";
    int port = 8000;
    std::string api_key;  // empty: no auth
    std::string version;  // for /version
    // --reasoning-parser (server/reasoning.h): empty, or a name it knows; chat responses then carry
    // `reasoning` (mirrored into `reasoning_content`) apart from `content`.
    std::string reasoning_parser;
};

class api_server {
  public:
    api_server(engine& eng, served_model model, server_options opt);
    ~api_server();
    // Binds and serves until stop(); fails (nibble::error) when the address cannot be bound.
    void run();
    // Stops the engine and the listener (see above); callable from any thread, returns within ~3 s.
    void stop();

  private:
    void routes();
    std::atomic<bool> stopping_{false};
    std::atomic<int> n_active_{0};  // generation requests whose response is not fully written
    engine& eng_;
    served_model model_;
    server_options opt_;
    std::unique_ptr<httplib::Server> http_;
};

}  // namespace nibble
