// A model ready to run: the loaded checkpoint, its tokenizer, a backend with its KV cache, and the
// forward. Sequences live in slots; prefill feeds a prompt chunk by chunk, decode one token per slot.
//
// The KV cache is a pool of blocks (core/backend.h). By default every slot owns max_ctx positions (run,
// bench, perplexity). For serving (kv_blocks >= 0) the pool is handed out by the engine's block manager
// through set_block_table: kv_blocks blocks when > 0; when 0, on CUDA, as many as fit in
// gpu_memory_utilization of the device's memory once the weights are loaded and a worst-case step (max_step
// tokens, as many logit rows) has run (vLLM's profiling run), on the CPU n_slots × ceil(max_ctx /
// block_size).
//
// step() returns the logits on the host; step_device() leaves them in backend memory until the next
// step, where top_k() reduces each row to a short sorted list and logits_rows() copies chosen rows.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/forward.h"
#include "loader/model_loader.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

struct runner_options {
    int32_t max_ctx = 4096;  // positions per sequence (capped by max_position_embeddings)
    int32_t n_slots = 1;     // sequences held at once
    int32_t max_step = 256;  // tokens per forward step (prefill chunk)
    bool load_tokenizer = true;
    std::string device = "cpu";  // "cpu" or "cuda" (the latter needs a build with CUDA and a GPU)
    kv_cache_dtype kv_dtype = kv_cache_auto;  // --kv-cache-dtype
    bool step_graphs = true;                  // record and replay steps (CUDA graphs); --eager turns off
    int32_t block_size = 16;                  // KV positions per block (a power of two)
    int32_t kv_blocks = -1;                   // -1: each slot owns its positions; else see above
    double gpu_memory_utilization = 0.9;      // --gpu-memory-utilization (CUDA, kv_blocks == 0)
};

// "cuda" when this build has the CUDA backend and a GPU is present, else "cpu".
std::string default_device();

class model_runner {
  public:
    model_runner(const std::string& dir, const runner_options& opt);
    ~model_runner();

    // Feeds ids at positions start.. of `slot`; returns the logits after the last one ([vocab]).
    std::vector<float> prefill(int32_t slot, std::span<const int32_t> ids, int32_t start);
    // Logits after every id (rows [ids.size(), vocab]), for perplexity; the KV of `slot` is overwritten.
    std::vector<float> score(int32_t slot, std::span<const int32_t> ids);
    // One decode step for several slots at once: ids[i] at positions[i] of slots[i]; logits [n, vocab].
    std::vector<float> decode(std::span<const int32_t> slots, std::span<const int32_t> ids,
                              std::span<const int32_t> positions);
    // One mixed step (prefill chunks and decode tokens of several slots): ids[i] at positions[i] of
    // slots[i], at most max_step() tokens; returns the logits of the tokens listed in `rows`
    // (indices into ids), [rows.size(), vocab].
    std::vector<float> step(std::span<const int32_t> slots, std::span<const int32_t> ids,
                            std::span<const int32_t> positions, std::span<const int32_t> rows);
    // step() without the copy: the rows' logits stay in backend memory until the next step.
    void step_device(std::span<const int32_t> slots, std::span<const int32_t> ids,
                     std::span<const int32_t> positions, std::span<const int32_t> rows);
    // The k (1..top_k_rows_max) largest logits of each row of the last step, sorted (backend::top_k_rows).
    struct top_k_lists {
        int32_t k = 0;
        std::vector<float> values;  // [rows, k]
        std::vector<int32_t> ids;   // [rows, k]; -1 past the vocabulary
        std::vector<float> lse;     // [rows] log Σ exp(row)
    };
    top_k_lists top_k(int32_t k);
    // Rows (indices into the last step's `rows`) of its logits copied to the host, [rows.size(), vocab].
    std::vector<float> logits_rows(std::span<const int32_t> rows);

    const loaded_model& model() const { return model_; }
    const model_config& config() const { return model_.config; }
    const tokenizer& tok() const { return *tok_; }
    backend& device() { return *backend_; }
    // Turns step recording (CUDA graphs) on or off for the steps that follow (bench: graph vs eager).
    void set_step_graphs(bool on);
    bool step_graphs() const;
    int32_t max_ctx() const { return max_ctx_; }
    int32_t max_step() const { return max_step_; }
    int32_t n_slots() const { return n_slots_; }
    // The KV pool: blocks of block_size() positions; slot tables set by set_block_table (serving).
    int32_t n_blocks() const { return n_blocks_; }
    int32_t block_size() const { return block_size_; }
    void set_block_table(int32_t slot, std::span<const int32_t> blocks) {
        backend_->set_block_table(slot, blocks);
    }
    // Bytes of the KV cache per position as this backend stores it.
    uint64_t kv_bytes_per_position() const;
    // Device memory the backend holds once loaded (weights as stored, KV cache, step buffers); 0 on the CPU.
    uint64_t device_bytes() const { return device_bytes_; }
    // One line on the device memory in use, for the commands' start-up output ("" on the CPU).
    std::string memory_report() const;

  private:
    loaded_model model_;
    std::unique_ptr<tokenizer> tok_;
    std::unique_ptr<backend> backend_;
    std::unique_ptr<model_forward> forward_;
    // Sizes the pool to the memory left under opt.gpu_memory_utilization after a worst-case step.
    int32_t profile_kv_blocks(const runner_options& opt);

    int32_t max_ctx_, max_step_, n_slots_, n_blocks_ = 0, block_size_ = 16;
    uint64_t device_bytes_ = 0;
};

// A short hash of a logits vector (FNV-1a over the float bits), for quick regression checks.
std::string logits_hash(std::span<const float> logits);

}  // namespace nibble
