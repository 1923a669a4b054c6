// The OpenAI-compatible HTTP server (cpp-httplib) over an engine: /v1/models, /v1/completions,
// /v1/chat/completions (streaming as SSE per shared/spec/serving.md 1.4, and non-streaming),
// /health, /version, /tokenize, /detokenize, /metrics (Prometheus, vLLM's names).
//
// Bad requests get 4xx with the OpenAI error envelope and the server keeps serving. With an API
// key, paths under /v1 need "Authorization: Bearer KEY" (else 401 {"error": "Unauthorized"}).
// A streaming client that disconnects has its request aborted (found when a write fails).
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
    // Stops listening; callable from any thread. In-flight handlers finish first.
    void stop();

  private:
    void routes();
    engine& eng_;
    served_model model_;
    server_options opt_;
    std::unique_ptr<httplib::Server> http_;
};

}  // namespace nibble
