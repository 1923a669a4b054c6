#include "engine/scheduler.h"

#include <algorithm>

#include "core/error.h"

namespace nibble {

kv_slots::kv_slots(int32_t n_slots) : n_slots_(n_slots) {
    if (n_slots < 1) fail("need at least one KV slot, got {}", n_slots);
    for (int32_t s = n_slots - 1; s >= 0; --s) free_.push_back(s);
}

int32_t kv_slots::allocate() {
    if (free_.empty()) return -1;
    int32_t s = free_.back();
    free_.pop_back();
    return s;
}

void kv_slots::release(int32_t slot) {
    free_.push_back(slot);
    // Keep the lowest slot last so that slot numbers stay small and deterministic.
    std::sort(free_.begin(), free_.end(), std::greater<int32_t>());
}

namespace {

const scheduler_options& checked(const scheduler_options& o) {
    if (o.max_batched_tokens < 1) fail("max_num_batched_tokens must be >= 1, got {}", o.max_batched_tokens);
    if (o.max_ctx < 2) fail("the context must hold at least 2 positions, got {}", o.max_ctx);
    if (o.block_size < 1 || o.n_blocks < 1)
        fail("KV pool of {} blocks of {} positions", o.n_blocks, o.block_size);
    if (int64_t(o.n_blocks) * o.block_size < o.max_ctx)
        fail(
            "a KV pool of {} blocks of {} positions cannot hold one sequence of {} positions (max_model_len)",
            o.n_blocks, o.block_size, o.max_ctx);
    return o;
}

}  // namespace

scheduler::scheduler(const scheduler_options& opt)
    : opt_(checked(opt)),
      slots_(opt.n_slots),
      blocks_(opt.n_blocks, opt.block_size, block_hash_fnv1a, opt.prefix_caching) {}

void scheduler::add(int64_t id, std::span<const int32_t> prompt) {
    if (prompt.empty()) fail("sequence {} has an empty prompt", id);
    if (int64_t(prompt.size()) >= opt_.max_ctx)
        fail("sequence {}: a prompt of {} tokens does not fit the context of {}", id, prompt.size(),
             opt_.max_ctx);
    if (seqs_.count(id)) fail("sequence {} was added twice", id);
    sequence s;
    s.tokens.assign(prompt.begin(), prompt.end());
    seqs_.emplace(id, std::move(s));
    waiting_.push_back(id);
}

void scheduler::abort(int64_t id) {
    auto it = seqs_.find(id);
    if (it != seqs_.end()) it->second.aborted = true;
}

void scheduler::remove(int64_t id) {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) return;
    if (it->second.slot >= 0) slots_.release(it->second.slot);
    if (blocks_.contains(id)) blocks_.free(id);
    seqs_.erase(it);
    running_.erase(std::remove(running_.begin(), running_.end(), id), running_.end());
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), id), waiting_.end());
}

void scheduler::preempt(int64_t id, step_plan& plan) {
    sequence& s = seqs_.at(id);
    blocks_.free(id);
    slots_.release(s.slot);
    s.slot = -1;
    s.n_computed = 0;
    running_.erase(std::remove(running_.begin(), running_.end(), id), running_.end());
    waiting_.push_front(id);
    plan.preempted.push_back(id);
    ++n_preemptions_;
}

bool scheduler::reserve_blocks(int64_t id, step_plan& plan) {
    const sequence& s = seqs_.at(id);
    while (blocks_.n_tokens(id) < int32_t(s.tokens.size())) {
        if (blocks_.can_append(id)) {
            blocks_.append_slot(id, s.tokens[size_t(blocks_.n_tokens(id))]);
            continue;
        }
        const int64_t victim = running_.back();  // the most recently admitted
        preempt(victim, plan);
        if (victim == id) return false;
    }
    return true;
}

step_plan scheduler::schedule() {
    step_plan plan;
    for (auto& [id, s] : seqs_)
        if (s.aborted) plan.dropped.push_back(id);
    std::sort(plan.dropped.begin(), plan.dropped.end());
    for (int64_t id : plan.dropped) remove(id);
    // The previous plan ran: its chunks' KV is written, so their full blocks may enter the prefix cache.
    for (int64_t id : running_)
        if (seqs_.at(id).n_computed > blocks_.n_computed(id))
            blocks_.mark_computed(id, seqs_.at(id).n_computed);

    int32_t budget = opt_.max_batched_tokens;
    auto take = [&](int64_t id, sequence& s) {
        int32_t n = std::min(int32_t(s.tokens.size()) - s.n_computed, budget);
        if (n <= 0) return;
        plan.items.push_back({id, s.slot, s.n_computed, n, s.n_computed + n == int32_t(s.tokens.size())});
        s.n_computed += n;
        budget -= n;
        plan.n_tokens += n;
    };
    const std::vector<int64_t> running = running_;
    for (int64_t id : running) {
        sequence& s = seqs_.at(id);
        if (s.slot < 0) continue;  // preempted for an earlier sequence in this loop
        if (!reserve_blocks(id, plan)) continue;
        take(id, s);
    }
    while (!waiting_.empty() && budget > 0 && slots_.n_free() > 0) {
        const int64_t id = waiting_.front();
        // Not back in the step that preempted it (it would take the blocks just freed for others).
        if (std::find(plan.preempted.begin(), plan.preempted.end(), id) != plan.preempted.end()) break;
        sequence& s = seqs_.at(id);
        if (!blocks_.can_allocate(s.tokens)) break;
        waiting_.pop_front();
        s.n_computed = blocks_.allocate(id, s.tokens);
        plan.n_cached_tokens += s.n_computed;
        s.slot = slots_.allocate();
        running_.push_back(id);
        take(id, s);
    }
    return plan;
}

void scheduler::append(int64_t id, int32_t token) {
    sequence& s = seqs_.at(id);
    if (s.n_computed != int32_t(s.tokens.size()))
        fail("sequence {}: token appended before its chunk was computed", id);
    s.tokens.push_back(token);
}

void scheduler::finish(int64_t id) {
    remove(id);
}

}  // namespace nibble
