// The continuous-batching scheduler: decides which sequences run in each step, how many of their
// tokens, and which KV blocks hold them, never touching a tensor (tested without a model).
//
// A sequence has known tokens (prompt, then each sampled token appended) of which n_computed have
// their KV in its blocks. Each step gives every running sequence (admission order) up to
// n_tokens - n_computed tokens under the step budget (max_num_batched_tokens): a decoding sequence
// needs 1, a sequence still in prefill gets a chunk (chunked prefill); with max_batched_tokens >=
// n_slots every decoding sequence gets its token each step. Then waiting sequences are admitted from a
// FIFO queue while a table slot is free, their blocks fit the pool and budget is left. A step item whose
// chunk reaches n_tokens needs logits (sample = true); the caller then either appends the sampled token
// (append) or finishes the sequence (finish), which frees its slot and blocks at once.
// abort() may be called at any time for a known id; the sequence is dropped at the next schedule()
// (its slot and blocks freed), and listed in step_plan::dropped.
//
// KV blocks (engine/block_manager.h, vLLM V1's design): admission allocates blocks for every known
// token, reusing cached full blocks of an equal prefix (prefix caching: those tokens count as computed
// and are not fed again; the last token always is, for its logits). A decoding sequence whose last
// block is full takes a new one; when none is free, the most recently admitted running sequence is
// preempted (recompute: its blocks freed, its computed count reset, and it goes back to the front of
// the queue with all its known tokens; listed in step_plan::preempted) until the block fits, possibly
// the sequence itself. Blocks enter the prefix cache once their KV is written: schedule() marks the
// previous plan's chunks computed before planning (the caller runs exactly each plan, in order).
// Each item names its slot, a row of the backend's block tables; block_table(id) is its table.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

#include "engine/block_manager.h"

namespace nibble {

// The table slots (rows of the backend's block tables, one per running sequence): which are free.
// allocate() returns -1 when none is.
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
    std::vector<step_item> items;    // running sequences first, then newly admitted ones
    std::vector<int64_t> dropped;    // aborted sequences removed by this schedule()
    std::vector<int64_t> preempted;  // sequences sent back to the queue by this schedule()
    int32_t n_tokens = 0;            // sum of items' n_tokens
    int32_t n_cached_tokens = 0;     // prompt tokens newly admitted sequences found in the prefix cache
};

struct scheduler_options {
    int32_t n_slots = 1;               // sequences running at once (max_num_seqs)
    int32_t max_batched_tokens = 256;  // tokens per step (max_num_batched_tokens)
    int32_t n_blocks = 1024;           // KV blocks in the pool
    int32_t block_size = 16;           // positions per block
    int32_t max_ctx = 4096;            // positions per sequence: the pool must hold one such sequence
    bool prefix_caching = true;  // --enable-prefix-caching (vLLM's default) / --no-enable-prefix-caching
};

class scheduler {
  public:
    explicit scheduler(const scheduler_options& opt);

    // Queues a new sequence with its prompt (1 .. max_ctx - 1 tokens). The id must be new.
    void add(int64_t id, std::span<const int32_t> prompt);
    // Marks a waiting or running sequence to be dropped at the next schedule(); unknown ids are
    // ignored (it may have finished already).
    void abort(int64_t id);
    // Plans one step and records its chunks as computed (the caller runs exactly this plan).
    step_plan schedule();
    // After a sampled step item: one more known token (the sequence keeps running).
    void append(int64_t id, int32_t token);
    // After a sampled step item: the sequence is done; its slot and blocks are free for the next schedule().
    void finish(int64_t id);

    // The block table of a running sequence (valid until the next call that changes the scheduler).
    const std::vector<int32_t>& block_table(int64_t id) const { return blocks_.block_table(id); }

    int32_t n_running() const { return int32_t(running_.size()); }
    int32_t n_waiting() const { return int32_t(waiting_.size()); }
    bool idle() const { return running_.empty() && waiting_.empty(); }
    int32_t n_free_slots() const { return slots_.n_free(); }
    const block_manager& blocks() const { return blocks_; }
    int64_t n_preemptions() const { return n_preemptions_; }

  private:
    struct sequence {
        int32_t slot = -1;
        std::vector<int32_t> tokens;  // known tokens
        int32_t n_computed = 0;
        bool aborted = false;
    };
    void remove(int64_t id);
    // Sends a running sequence back to the front of the queue (recompute preemption).
    void preempt(int64_t id, step_plan& plan);
    // Gives a running sequence blocks for its known tokens, preempting later sequences (or itself)
    // when the pool is full; false when it was preempted itself.
    bool reserve_blocks(int64_t id, step_plan& plan);

    scheduler_options opt_;
    kv_slots slots_;
    block_manager blocks_;
    std::unordered_map<int64_t, sequence> seqs_;
    std::vector<int64_t> running_;  // admission order
    std::deque<int64_t> waiting_;   // FIFO
    int64_t n_preemptions_ = 0;
};

}  // namespace nibble
