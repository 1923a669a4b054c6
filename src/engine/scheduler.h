// The continuous-batching scheduler: decides which sequences run in each step and how many of
// their tokens, never touching a tensor (tested without a model).
//
// A sequence has n_tokens known tokens (prompt, then each sampled token appended) of which
// n_computed are in its KV slot. Each step gives every running sequence (admission order) up to
// n_tokens - n_computed tokens under the step budget (max_num_batched_tokens): a decoding
// sequence needs 1, a sequence still in prefill gets a chunk (chunked prefill); with
// max_batched_tokens >= n_slots every decoding sequence gets its token each step. Then waiting
// sequences are admitted from a FIFO queue while a KV slot is free and budget is left. A step item
// whose chunk reaches n_tokens needs logits (sample = true); the caller then either appends the
// sampled token (append) or finishes the sequence (finish), which frees its slot at once.
// abort() may be called at any time for a known id; the sequence is dropped at the next schedule()
// (its slot freed), and listed in step_plan::dropped.
//
// KV accounting lives in kv_slots alone (one slot of max_ctx positions per sequence), so that it
// can become a paged block manager.
#pragma once

#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

namespace nibble {

// The KV slots: which are free. allocate() returns -1 when none is.
class kv_slots {
  public:
    explicit kv_slots(int32_t n_slots);
    int32_t allocate();
    void release(int32_t slot);
    int32_t n_free() const { return int32_t(free_.size()); }
    int32_t n_slots() const { return n_slots_; }

  private:
    int32_t n_slots_;
    std::vector<int32_t> free_;  // lowest slot last (allocated first)
};

struct step_item {
    int64_t id;
    int32_t slot;
    int32_t start;     // position of the first token of the chunk
    int32_t n_tokens;  // tokens fed this step (1 for a decode)
    bool sample;       // the chunk ends at the last known token: logits are needed
};

struct step_plan {
    std::vector<step_item> items;  // running sequences first, then newly admitted ones
    std::vector<int64_t> dropped;  // aborted sequences removed by this schedule()
    int32_t n_tokens = 0;          // sum of items' n_tokens
};

class scheduler {
  public:
    // max_batched_tokens >= 1 tokens per step, over n_slots sequences at once.
    scheduler(int32_t n_slots, int32_t max_batched_tokens);

    // Queues a new sequence with n_prompt >= 1 tokens. The id must be new.
    void add(int64_t id, int32_t n_prompt);
    // Marks a waiting or running sequence to be dropped at the next schedule(); unknown ids are
    // ignored (it may have finished already).
    void abort(int64_t id);
    // Plans one step and records its chunks as computed (the caller runs exactly this plan).
    step_plan schedule();
    // After a sampled step item: one more known token (the sequence keeps running).
    void append(int64_t id);
    // After a sampled step item: the sequence is done; its slot is free for the next schedule().
    void finish(int64_t id);

    int32_t n_running() const { return int32_t(running_.size()); }
    int32_t n_waiting() const { return int32_t(waiting_.size()); }
    bool idle() const { return running_.empty() && waiting_.empty(); }
    int32_t n_free_slots() const { return slots_.n_free(); }

  private:
    struct sequence {
        int32_t slot = -1;
        int32_t n_tokens = 0;
        int32_t n_computed = 0;
        bool aborted = false;
    };
    void remove(int64_t id);

    kv_slots slots_;
    int32_t max_batched_tokens_;
    std::unordered_map<int64_t, sequence> seqs_;
    std::vector<int64_t> running_;  // admission order
    std::deque<int64_t> waiting_;   // FIFO
};

}  // namespace nibble
