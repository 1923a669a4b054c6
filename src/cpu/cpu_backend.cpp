#include "cpu/cpu_backend.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/formats.h"

namespace nibble {

float* cpu_backend::alloc(size_t n) {
    buffers_.push_back(std::make_unique<float[]>(n ? n : 1));
    return buffers_.back().get();
}

void cpu_backend::to_host(const float* src, size_t n, float* dst) {
    std::memcpy(dst, src, n * sizeof(float));
}

void cpu_backend::embed(const tensor_view& table, const step_tokens& s, float* out) {
    const int64_t vocab = table.shape[0], h = table.shape[1];
    for (size_t t = 0; t < s.ids.size(); ++t) {
        int64_t id = s.ids[t];
        if (id < 0 || id >= vocab) fail("token id {} is outside the vocabulary [0, {})", id, vocab);
        for (int64_t j = 0; j < h; ++j)
            out[int64_t(t) * h + j] = load_float(table.type, table.data, size_t(id * h + j));
    }
}

void cpu_backend::rms_norm(const float* x, const tensor_view& w, int64_t rows, int64_t cols, float eps,
                           float* out) {
#pragma omp parallel for schedule(static) if (rows > 4)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        float ss = 0;
        for (int64_t j = 0; j < cols; ++j) ss += xr[j] * xr[j];
        float inv = 1.0f / std::sqrt(ss / float(cols) + eps);
        for (int64_t j = 0; j < cols; ++j)
            out[r * cols + j] = load_float(w.type, w.data, size_t(j)) * (xr[j] * inv);
    }
}

void cpu_backend::add(float* x, const float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void cpu_backend::silu_mul(const float* gate, const float* up, int64_t n, float* out) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
        float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void cpu_backend::gather_rows(const float* src, int64_t cols, std::span<const int32_t> rows, float* dst) {
    for (size_t i = 0; i < rows.size(); ++i)
        std::memcpy(dst + int64_t(i) * cols, src + int64_t(rows[i]) * cols, size_t(cols) * sizeof(float));
}

void cpu_backend::kv_init(const model_config& c, const kv_cache_shape& shape, kv_cache_dtype dt) {
    tables_.init(shape);
    kv_dtype_ = dt == kv_cache_auto ? kv_cache_f32 : dt;
    n_layers_ = int32_t(c.n_layers);
    kv_dim_ = c.n_kv_heads * c.head_dim;
    const size_t n =
        size_t(n_layers_) * size_t(tables_.n_blocks()) * size_t(tables_.block_size()) * size_t(kv_dim_);
    k_cache_.assign(n, 0.0f);
    v_cache_.assign(n, 0.0f);
    inv_freq_ = rope_inv_freq(c);
}

float* cpu_backend::kv_row(bool value, int32_t slot, int32_t layer, int32_t pos) {
    const size_t block = size_t(tables_.block_of(slot, pos)), bs = size_t(tables_.block_size());
    const size_t off =
        ((size_t(layer) * size_t(tables_.n_blocks()) + block) * bs + size_t(pos) % bs) * size_t(kv_dim_);
    return (value ? v_cache_.data() : k_cache_.data()) + off;
}

}  // namespace nibble
