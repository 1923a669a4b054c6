#include "engine/runner.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "cpu/cpu_backend.h"
#ifdef NIBBLE_HAVE_CUDA
#include "cuda/cuda_backend.h"
#include "cuda/device.h"
#endif

namespace nibble {

model_runner::model_runner(const std::string& dir, const runner_options& opt) : model_(load_model(dir)) {
    if (opt.load_tokenizer) tok_ = std::make_unique<tokenizer>(tokenizer::load(dir));
    max_ctx_ = int32_t(std::min<int64_t>(opt.max_ctx, model_.config.max_position_embeddings));
    max_step_ = std::max(1, opt.max_step);
    n_slots_ = std::max(1, opt.n_slots);
    if (opt.device == "cpu") {
        backend_ = std::make_unique<cpu_backend>();
    } else if (opt.device == "cuda") {
#ifdef NIBBLE_HAVE_CUDA
        backend_ = std::make_unique<cuda_backend>();
#else
        fail("this build has no CUDA backend (--device cuda)");
#endif
    } else {
        fail("unknown device '{}' (cpu or cuda)", opt.device);
    }
    block_size_ = opt.block_size;
    kv_cache_shape shape{n_slots_, max_ctx_, block_size_, 0};
    if (opt.kv_blocks > 0) shape.n_blocks = opt.kv_blocks;
    if (opt.kv_blocks == 0) shape.n_blocks = n_slots_ * kv_blocks_for(max_ctx_, block_size_);
    uint64_t free_b = 0, total_b = 0;
    const bool profile = opt.kv_blocks == 0 && backend_->memory_info(free_b, total_b);
    // A profiling run needs a pool for its one sequence of max_step tokens first.
    if (profile) shape = kv_cache_shape{1, max_step_, block_size_, 0};
    backend_->kv_init(model_.config, shape, opt.kv_dtype);
    forward_ =
        std::make_unique<model_forward>(model_.config, model_.weights, *backend_, max_step_, max_step_);
    forward_->set_step_graphs(opt.step_graphs);
    device_bytes_ = backend_->prepare(model_.weights);
    if (profile) {
        shape = kv_cache_shape{n_slots_, max_ctx_, block_size_, profile_kv_blocks(opt)};
        backend_->kv_init(model_.config, shape, opt.kv_dtype);
        device_bytes_ = backend_->device_bytes();
    }
    n_blocks_ = shape.n_blocks > 0 ? shape.n_blocks : n_slots_ * kv_blocks_for(max_ctx_, block_size_);
}

int32_t model_runner::profile_kv_blocks(const runner_options& opt) {
    if (!(opt.gpu_memory_utilization > 0.0 && opt.gpu_memory_utilization <= 1.0))
        fail("--gpu-memory-utilization must be in (0, 1], got {}", opt.gpu_memory_utilization);
    // The worst-case step: max_step tokens of one sequence, logits for every one of them.
    std::vector<int32_t> ids(size_t(max_step_), 0), slots(size_t(max_step_), 0), pos(size_t(max_step_), 0),
        rows;
    for (int32_t i = 0; i < max_step_; ++i) pos[size_t(i)] = i, rows.push_back(i);
    std::vector<float> logits(size_t(max_step_) * size_t(config().vocab_size));
    const bool graphs = forward_->step_graphs();
    forward_->set_step_graphs(false);
    forward_->step(step_tokens{ids, slots, pos}, rows, logits.data());
    forward_->set_step_graphs(graphs);
    uint64_t free_b = 0, total_b = 0;
    backend_->memory_info(free_b, total_b);
    // What the profiling pool holds is given back by the next kv_init: count it as available.
    const uint64_t profiled_kv =
        kv_bytes_per_position() * uint64_t(kv_blocks_for(max_step_, block_size_)) * uint64_t(block_size_);
    const double used = double(total_b - free_b) - double(profiled_kv);
    const double budget = opt.gpu_memory_utilization * double(total_b) - used;
    const double per_block = double(kv_bytes_per_position()) * double(block_size_);
    const int64_t fit = budget > 0 ? int64_t(budget / per_block) : 0;
    const int32_t need = kv_blocks_for(max_ctx_, block_size_);
    if (fit < need)
        fail(
            "{:.2f} GB of the GPU's {:.2f} GB are in use after loading; --gpu-memory-utilization {} leaves "
            "{:.2f} GB "
            "for the KV cache, {} blocks of {} positions, less than the {} blocks one sequence of "
            "--max-model-len {} "
            "needs (raise --gpu-memory-utilization or lower --max-model-len)",
            used / 1e9, double(total_b) / 1e9, opt.gpu_memory_utilization, std::max(budget, 0.0) / 1e9, fit,
            block_size_, need, max_ctx_);
    return int32_t(std::min<int64_t>(fit, INT32_MAX));
}

model_runner::~model_runner() = default;

std::string default_device() {
#ifdef NIBBLE_HAVE_CUDA
    if (cuda_device_count() > 0) return "cuda";
#endif
    return "cpu";
}

std::vector<float> model_runner::prefill(int32_t slot, std::span<const int32_t> ids, int32_t start) {
    if (ids.empty()) fail("prefill of an empty prompt");
    if (start + int64_t(ids.size()) > max_ctx_)
        fail("prompt of {} tokens at position {} exceeds the context of {} tokens", ids.size(), start,
             max_ctx_);
    const int64_t V = config().vocab_size;
    std::vector<float> logits(static_cast<size_t>(V));
    std::vector<int32_t> slots, pos;
    for (size_t c0 = 0; c0 < ids.size(); c0 += size_t(max_step_)) {
        size_t n = std::min(ids.size() - c0, size_t(max_step_));
        slots.assign(n, slot);
        pos.resize(n);
        for (size_t i = 0; i < n; ++i) pos[i] = start + int32_t(c0 + i);
        step_tokens s{ids.subspan(c0, n), slots, pos};
        const bool last = c0 + n == ids.size();
        int32_t row = int32_t(n - 1);
        forward_->step(s, last ? std::span<const int32_t>(&row, 1) : std::span<const int32_t>(),
                       logits.data());
    }
    return logits;
}

std::vector<float> model_runner::score(int32_t slot, std::span<const int32_t> ids) {
    if (int64_t(ids.size()) > max_ctx_)
        fail("{} tokens exceed the context of {} tokens", ids.size(), max_ctx_);
    const int64_t V = config().vocab_size;
    std::vector<float> logits(ids.size() * size_t(V));
    std::vector<int32_t> slots, pos, rows;
    for (size_t c0 = 0; c0 < ids.size(); c0 += size_t(max_step_)) {
        size_t n = std::min(ids.size() - c0, size_t(max_step_));
        slots.assign(n, slot);
        pos.resize(n);
        rows.resize(n);
        for (size_t i = 0; i < n; ++i) pos[i] = int32_t(c0 + i), rows[i] = int32_t(i);
        forward_->step(step_tokens{ids.subspan(c0, n), slots, pos}, rows, logits.data() + c0 * size_t(V));
    }
    return logits;
}

std::vector<float> model_runner::decode(std::span<const int32_t> slots, std::span<const int32_t> ids,
                                        std::span<const int32_t> positions) {
    const int64_t V = config().vocab_size;
    std::vector<float> logits(ids.size() * size_t(V));
    std::vector<int32_t> rows(ids.size());
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = int32_t(i);
    for (int32_t p : positions)
        if (p >= max_ctx_) fail("position {} reaches the end of the context ({} tokens)", p, max_ctx_);
    forward_->step(step_tokens{ids, slots, positions}, rows, logits.data());
    return logits;
}

namespace {

void check_step(std::span<const int32_t> slots, std::span<const int32_t> ids,
                std::span<const int32_t> positions, std::span<const int32_t> rows, int32_t max_step,
                int32_t max_ctx) {
    if (ids.size() != slots.size() || ids.size() != positions.size())
        fail("step: {} ids, {} slots, {} positions", ids.size(), slots.size(), positions.size());
    if (ids.empty() || int64_t(ids.size()) > max_step)
        fail("step of {} tokens (1..{} allowed)", ids.size(), max_step);
    for (int32_t p : positions)
        if (p >= max_ctx) fail("position {} reaches the end of the context ({} tokens)", p, max_ctx);
    for (int32_t r : rows)
        if (r < 0 || size_t(r) >= ids.size()) fail("step: logit row {} of {} tokens", r, ids.size());
}

}  // namespace

std::vector<float> model_runner::step(std::span<const int32_t> slots, std::span<const int32_t> ids,
                                      std::span<const int32_t> positions, std::span<const int32_t> rows) {
    check_step(slots, ids, positions, rows, max_step_, max_ctx_);
    std::vector<float> logits(rows.size() * size_t(config().vocab_size));
    forward_->step(step_tokens{ids, slots, positions}, rows, logits.data());
    return logits;
}

void model_runner::step_device(std::span<const int32_t> slots, std::span<const int32_t> ids,
                               std::span<const int32_t> positions, std::span<const int32_t> rows) {
    check_step(slots, ids, positions, rows, max_step_, max_ctx_);
    forward_->run(step_tokens{ids, slots, positions}, rows);
}

model_runner::top_k_lists model_runner::top_k(int32_t k) {
    top_k_lists t;
    t.k = k;
    const size_t R = size_t(forward_->n_logit_rows());
    t.values.resize(R * size_t(k));
    t.ids.resize(R * size_t(k));
    t.lse.resize(R);
    forward_->top_k(k, t.values.data(), t.ids.data(), t.lse.data());
    return t;
}

std::vector<float> model_runner::logits_rows(std::span<const int32_t> rows) {
    const size_t V = size_t(config().vocab_size);
    std::vector<float> out(rows.size() * V);
    for (size_t i = 0; i < rows.size(); ++i) forward_->logits_row(rows[i], out.data() + i * V);
    return out;
}

void model_runner::set_step_graphs(bool on) {
    forward_->set_step_graphs(on);
}
bool model_runner::step_graphs() const {
    return forward_->step_graphs();
}

uint64_t model_runner::kv_bytes_per_position() const {
    return 2ull * uint64_t(config().n_layers * config().n_kv_heads * config().head_dim) *
           uint64_t(kv_cache_dtype_bytes(backend_->kv_dtype()));
}

std::string model_runner::memory_report() const {
    if (device_bytes_ == 0) return "";
    const double kv = double(kv_bytes_per_position()) * double(n_blocks_) * double(block_size_);
    return fmt::format(
        "[{}] device memory after loading: {:.3f} GB (KV cache {:.3f} GB: {} blocks of {} positions = {:.1f} "
        "sequences of {}, {})",
        backend_->name(), double(device_bytes_) / 1e9, kv / 1e9, n_blocks_, block_size_,
        double(n_blocks_) * block_size_ / max_ctx_, max_ctx_, kv_cache_dtype_name(backend_->kv_dtype()));
}

std::string logits_hash(std::span<const float> logits) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (float f : logits) {
        uint32_t u;
        std::memcpy(&u, &f, 4);
        for (int i = 0; i < 4; ++i) h = (h ^ ((u >> (8 * i)) & 0xFF)) * 0x100000001B3ull;
    }
    return fmt::format("{:016x}", h);
}

}  // namespace nibble
