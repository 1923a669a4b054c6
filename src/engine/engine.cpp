#include "engine/engine.h"

#include <algorithm>
#include <optional>

#include "core/error.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"

namespace nibble {

namespace {

// Top-K list length for a sequence without greedy or top_k: enough for min_p to cut inside it on a peaked
// distribution (it declines otherwise and samples the full row).
constexpr int32_t k_top_k_default = 64;

}  // namespace

struct engine::sequence {
    gen_request req;
    std::vector<int32_t> tokens;  // prompt, then generated
    sampler smp;
    stop_checker stop;
    stream_decoder dec;
    sequence(gen_request r, const model_runner& run)
        : req(std::move(r)),
          tokens(req.prompt),
          smp(req.params, req.prompt),
          stop(req.params, run.max_ctx() - int64_t(req.prompt.size())),
          dec(run.tok(), req.skip_special) {}
};

engine::engine(model_runner& runner, const engine_options& opt) : runner_(runner), opt_(opt) {
    if (opt.max_num_batched_tokens > runner.max_step())
        fail("max_num_batched_tokens {} exceeds the runner's step of {} tokens", opt.max_num_batched_tokens,
             runner.max_step());
    // One table slot per running sequence over the runner's KV pool.
    scheduler_options so;
    so.n_slots = runner.n_slots();
    so.max_batched_tokens = opt.max_num_batched_tokens;
    so.n_blocks = runner.n_blocks();
    so.block_size = runner.block_size();
    so.max_ctx = runner.max_ctx();
    so.prefix_caching = opt.prefix_caching;
    sched_ = std::make_unique<scheduler>(so);
    stats_.n_slots = runner.n_slots();
    stats_.n_blocks = runner.n_blocks();
    stats_.block_size = runner.block_size();
    thread_ = std::thread([this] { loop(); });
}

engine::~engine() {
    stop();
}

int64_t engine::submit(gen_request req) {
    if (req.prompt.empty() || int64_t(req.prompt.size()) >= runner_.max_ctx())
        fail("a prompt of {} tokens does not fit the context of {}", req.prompt.size(), runner_.max_ctx());
    std::lock_guard lk(mu_);
    if (stopping_) fail("the engine is stopping");
    int64_t id = next_id_++;
    inbox_.emplace_back(id, std::move(req));
    ++stats_.n_waiting;
    cv_.notify_one();
    return id;
}

void engine::abort(int64_t id) {
    std::lock_guard lk(mu_);
    aborts_.push_back(id);
    cv_.notify_one();
}

void engine::stop() {
    {
        std::lock_guard lk(mu_);
        stopping_ = true;
        cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
}

engine_stats engine::stats() const {
    std::lock_guard lk(mu_);
    return stats_;
}

void engine::fail_all(const std::string& message) {
    for (auto& [id, s] : seqs_) {
        gen_event ev;
        ev.done = true;
        ev.error = message;
        ev.n_prompt = int64_t(s->req.prompt.size());
        ev.n_generated = s->stop.n_generated();
        s->req.on_event(ev);
        sched_->abort(id);
    }
    seqs_.clear();
    sched_->schedule();  // drops them all, frees their slots
}

void engine::loop() {
    while (true) {
        std::vector<std::pair<int64_t, gen_request>> inbox;
        std::vector<int64_t> aborts;
        {
            std::unique_lock lk(mu_);
            cv_.wait(lk, [&] { return stopping_ || !inbox_.empty() || !aborts_.empty() || !sched_->idle(); });
            if (stopping_) break;
            inbox.swap(inbox_);
            aborts.swap(aborts_);
        }
        int64_t n_new_prompt_tokens = 0;  // counted once per request (vllm:prompt_tokens_total)
        for (auto& [id, req] : inbox) {
            auto seq = std::make_unique<sequence>(std::move(req), runner_);
            sched_->add(id, seq->req.prompt);
            n_new_prompt_tokens += int64_t(seq->req.prompt.size());
            seqs_[id] = std::move(seq);
        }
        for (int64_t id : aborts) sched_->abort(id);
        try {
            run_step();
        } catch (const std::exception& e) {
            fail_all(std::string("engine step failed: ") + e.what());
        }
        std::lock_guard lk(mu_);
        stats_.n_running = sched_->n_running();
        stats_.n_waiting = sched_->n_waiting() + int32_t(inbox_.size());
        stats_.kv_usage = sched_->blocks().usage();
        stats_.prefix_cache = sched_->blocks().stats();
        stats_.n_preemptions = sched_->n_preemptions();
        stats_.n_prompt_tokens += n_new_prompt_tokens;
    }
    // Inbox requests never started: they end too.
    for (auto& [id, req] : inbox_) {
        gen_event ev;
        ev.done = true;
        ev.error = "server shutting down";
        req.on_event(ev);
    }
    inbox_.clear();
    fail_all("server shutting down");
}

void engine::run_step() {
    step_plan plan = sched_->schedule();
    for (int64_t id : plan.dropped) {
        auto it = seqs_.find(id);
        if (it == seqs_.end()) continue;
        gen_event ev;
        ev.done = true;
        ev.text = it->second->stop.flush();
        ev.n_prompt = int64_t(it->second->req.prompt.size());
        ev.n_generated = it->second->stop.n_generated();
        {
            std::lock_guard lk(mu_);
            ++stats_.n_aborted;
            stats_.n_running = sched_->n_running();
        }
        it->second->req.on_event(ev);
        seqs_.erase(it);
    }
    if (plan.items.empty()) return;

    std::vector<int32_t> ids, slots, positions, rows;
    for (const step_item& it : plan.items) {
        const sequence& s = *seqs_.at(it.id);
        runner_.set_block_table(it.slot, sched_->block_table(it.id));
        for (int32_t i = 0; i < it.n_tokens; ++i) {
            ids.push_back(s.tokens[size_t(it.start + i)]);
            slots.push_back(it.slot);
            positions.push_back(it.start + i);
        }
        if (it.sample) rows.push_back(int32_t(ids.size()) - 1);
    }
    runner_.step_device(slots, ids, positions, rows);

    // Sampling, row by row in plan order: first every row the candidate path can take from the top-K
    // lists (serial, ~µs each), then the rows it declined from their full logits, in parallel (each
    // sequence owns its sampler).
    struct sampled {
        sequence* s = nullptr;
        int32_t token = -1;
        float logprob = 0;
        std::vector<token_logprob> top;
    };
    std::vector<sampled> out;
    int32_t k = 0;
    for (const step_item& it : plan.items) {
        if (!it.sample) continue;
        sequence& s = *seqs_.at(it.id);
        out.push_back({&s});
        const int32_t want = s.smp.top_wanted(k_top_k_default);
        if (want > 0) k = std::max({k, want, s.req.n_logprobs});
    }
    k = std::min(k, top_k_rows_max);
    const int64_t V = runner_.config().vocab_size;
    std::vector<int32_t> declined;
    model_runner::top_k_lists lists;
    if (k > 0) lists = runner_.top_k(k);
    for (size_t r = 0; r < out.size(); ++r) {
        sampled& o = out[r];
        const gen_request& req = o.s->req;
        // Entries past the vocabulary (k > V) are left out.
        const size_t n = size_t(std::min<int64_t>(k, V));
        std::optional<int32_t> tok;
        if (k > 0 && req.n_logprobs <= int32_t(n)) {
            std::span<const float> vals(lists.values.data() + r * size_t(k), n);
            std::span<const int32_t> top_ids(lists.ids.data() + r * size_t(k), n);
            tok = o.s->smp.sample_top(vals, top_ids, lists.lse[r], V,
                                      req.n_logprobs >= 0 ? &o.logprob : nullptr);
            if (tok && req.n_logprobs > 0) o.top = top_logprobs(vals, top_ids, lists.lse[r], req.n_logprobs);
        }
        if (tok)
            o.token = *tok;
        else
            declined.push_back(int32_t(r));
    }
    if (!declined.empty()) {
        std::vector<float> full = runner_.logits_rows(declined);
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t i = 0; i < declined.size(); ++i) {
            sampled& o = out[size_t(declined[i])];
            std::span<float> l(full.data() + i * size_t(V), size_t(V));
            const int32_t n_lp = o.s->req.n_logprobs;
            if (n_lp > 0) o.top = top_logprobs(l, n_lp);  // before sample() scratches l
            o.token = o.s->smp.sample(l, n_lp >= 0 ? &o.logprob : nullptr);
        }
    }

    size_t row = 0;
    int64_t n_generated = 0;
    for (const step_item& it : plan.items) {
        if (!it.sample) continue;
        sequence& s = *seqs_.at(it.id);
        sampled& o = out[row++];
        gen_event ev;
        const int32_t tok = o.token;
        if (s.req.n_logprobs >= 0) ev.tokens.push_back({tok, o.logprob, std::move(o.top)});
        s.tokens.push_back(tok);
        ++n_generated;
        stop_result res = s.stop.push(tok, s.dec.push(tok));
        ev.n_prompt = int64_t(s.req.prompt.size());
        ev.n_generated = s.stop.n_generated();
        if (res.finished()) {
            if (res.finish != finish_reason_stop || !res.stop_string) res.text += s.dec.flush();
            ev.text = std::move(res.text);
            ev.done = true;
            ev.finish = res.finish;
            ev.stop_string = res.stop_string;
            ev.stop_token = res.stop_token;
            sched_->finish(it.id);
            {  // counted before the client hears of it, so that /metrics read after the answer includes it
                std::lock_guard lk(mu_);
                ++(res.finish == finish_reason_stop ? stats_.n_finished_stop : stats_.n_finished_length);
                stats_.n_running = sched_->n_running();
                stats_.kv_usage = sched_->blocks().usage();
            }
            s.req.on_event(ev);
            seqs_.erase(it.id);
        } else {
            ev.text = std::move(res.text);
            s.req.on_event(ev);
            sched_->append(it.id, tok);
        }
    }
    std::lock_guard lk(mu_);
    stats_.n_generation_tokens += n_generated;
}

}  // namespace nibble
