// The engine loop: one thread that owns the model runner and the scheduler. Requests come in from
// any thread (submit / abort); each step runs the scheduler's plan as one mixed batch, samples each
// sequence that reached its last token (sampler, stop_checker, stream_decoder per sequence) and
// hands the new text to the request's callback. The step's logits stay in backend memory: each sampled
// row is reduced there to its top-K list (K the most any sequence needs) and sampled from it
// (sampler::sample_top, exact); only the rows it declines are copied whole and sampled from the full
// logits, in parallel across sequences. Callbacks, stop checks and scheduler calls stay serial, in plan
// order.
//
// Callbacks run on the engine thread and must be quick and not throw (push to a queue). Every
// submitted request gets exactly one event with done = true (finished, aborted or failed) and no
// event after it; abort() of a finished or unknown id does nothing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/block_manager.h"
#include "engine/runner.h"
#include "engine/sampler.h"
#include "engine/sampling_params.h"
#include "engine/stop_checker.h"

namespace nibble {

// A sampled token with its log-probability under the raw logits (vLLM's default logprobs mode) and
// the most likely alternatives (most likely first).
struct token_info {
    int32_t token;
    float logprob;
    std::vector<token_logprob> top;
};

struct gen_event {
    std::string text;                // new text to emit (may be empty)
    std::vector<token_info> tokens;  // the token sampled, when the request asked for logprobs
    bool done = false;               // the last event of the request
    finish_reason finish = finish_reason_none;
    std::optional<std::string> stop_string;  // vLLM's stop_reason
    std::optional<int32_t> stop_token;
    std::string error;  // non-empty: the request failed (done is set)
    int64_t n_prompt = 0, n_generated = 0;
};

struct gen_request {
    std::vector<int32_t> prompt;  // 1 .. max_ctx - 1 tokens
    sampling_params params;       // resolved and validated
    bool skip_special = true;
    int32_t n_logprobs = -1;  // -1: none; else the chosen token's logprob and this many top ones
    std::function<void(const gen_event&)> on_event;
};

struct engine_options {
    int32_t max_num_batched_tokens = 256;  // must not exceed the runner's max_step
    bool prefix_caching = true;            // automatic prefix caching of full KV blocks
};

// Counters for /metrics (a consistent snapshot).
struct engine_stats {
    int32_t n_running = 0, n_waiting = 0;
    int64_t n_prompt_tokens = 0, n_generation_tokens = 0;               // totals since start
    int64_t n_finished_stop = 0, n_finished_length = 0, n_aborted = 0;  // requests ended, by reason
    int32_t n_slots = 0;                                                // sequences at once
    int32_t n_blocks = 0, block_size = 0;                               // the KV pool
    double kv_usage = 0;                                                // fraction of blocks held
    prefix_cache_stats prefix_cache;                                    // tokens queried / hit
    int64_t n_preemptions = 0;                                          // since start
};

class engine {
  public:
    // Starts the loop thread; the runner must outlive the engine.
    engine(model_runner& runner, const engine_options& opt);
    ~engine();  // stop()

    // Queues a request; returns its id. Fails (nibble::error) after stop().
    int64_t submit(gen_request req);
    // Drops the request at the next step; its final event has finish_reason_none and no error.
    void abort(int64_t id);
    // Ends the loop: running requests get a final event with error "server shutting down".
    void stop();
    engine_stats stats() const;
    model_runner& runner() { return runner_; }

  private:
    struct sequence;
    void loop();
    void run_step();
    void fail_all(const std::string& message);

    model_runner& runner_;
    engine_options opt_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    int64_t next_id_ = 1;
    std::vector<std::pair<int64_t, gen_request>> inbox_;
    std::vector<int64_t> aborts_;
    engine_stats stats_;
    // Owned by the loop thread:
    std::unordered_map<int64_t, std::unique_ptr<sequence>> seqs_;
    std::unique_ptr<class scheduler> sched_;
    std::thread thread_;
};

}  // namespace nibble
