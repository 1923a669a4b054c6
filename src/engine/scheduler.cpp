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

scheduler::scheduler(int32_t n_slots, int32_t max_batched_tokens)
    : slots_(n_slots), max_batched_tokens_(max_batched_tokens) {
    if (max_batched_tokens < 1) fail("max_num_batched_tokens must be >= 1, got {}", max_batched_tokens);
}

void scheduler::add(int64_t id, int32_t n_prompt) {
    if (n_prompt < 1) fail("sequence {} has an empty prompt", id);
    if (seqs_.count(id)) fail("sequence {} was added twice", id);
    seqs_[id] = sequence{-1, n_prompt, 0, false};
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
    seqs_.erase(it);
    running_.erase(std::remove(running_.begin(), running_.end(), id), running_.end());
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), id), waiting_.end());
}

step_plan scheduler::schedule() {
    step_plan plan;
    for (auto& [id, s] : seqs_)
        if (s.aborted) plan.dropped.push_back(id);
    std::sort(plan.dropped.begin(), plan.dropped.end());
    for (int64_t id : plan.dropped) remove(id);

    int32_t budget = max_batched_tokens_;
    auto take = [&](int64_t id, sequence& s) {
        int32_t n = std::min(s.n_tokens - s.n_computed, budget);
        if (n <= 0) return;
        plan.items.push_back({id, s.slot, s.n_computed, n, s.n_computed + n == s.n_tokens});
        s.n_computed += n;
        budget -= n;
        plan.n_tokens += n;
    };
    for (int64_t id : running_) take(id, seqs_.at(id));
    while (!waiting_.empty() && budget > 0 && slots_.n_free() > 0) {
        int64_t id = waiting_.front();
        waiting_.pop_front();
        sequence& s = seqs_.at(id);
        s.slot = slots_.allocate();
        running_.push_back(id);
        take(id, s);
    }
    return plan;
}

void scheduler::append(int64_t id) {
    sequence& s = seqs_.at(id);
    if (s.n_computed != s.n_tokens) fail("sequence {}: token appended before its chunk was computed", id);
    ++s.n_tokens;
}

void scheduler::finish(int64_t id) {
    remove(id);
}

}  // namespace nibble
