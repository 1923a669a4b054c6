// RoPE (with Qwen3's per-head q/k RMSNorm), the KV cache (f32, or values rounded through bf16 / fp8), and
// causal grouped-query attention on the CPU.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/formats.h"
#include "cpu/cpu_backend.h"

namespace nibble {

std::vector<float> rope_inv_freq(const model_config& c) {
    const int64_t half = c.head_dim / 2;
    std::vector<float> f(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i)
        f[size_t(i)] = float(1.0 / std::pow(double(c.rope_theta), double(2 * i) / double(c.head_dim)));
    if (c.rope == rope_kind_llama3) {
        // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, a smooth blend between.
        const double old_ctx = double(c.rope_original_max_position);
        const double low_wavelen = old_ctx / c.rope_low_freq_factor,
                     high_wavelen = old_ctx / c.rope_high_freq_factor;
        for (float& v : f) {
            double wavelen = 2 * M_PI / v;
            if (wavelen < high_wavelen) continue;
            if (wavelen > low_wavelen) {
                v = float(v / c.rope_factor);
                continue;
            }
            double smooth = (old_ctx / wavelen - c.rope_low_freq_factor) /
                            (c.rope_high_freq_factor - c.rope_low_freq_factor);
            v = float((1 - smooth) * v / c.rope_factor + smooth * v);
        }
    }
    return f;
}

namespace {

void head_rms_norm(float* x, const tensor_view& w, int64_t hd, float eps) {
    float ss = 0;
    for (int64_t j = 0; j < hd; ++j) ss += x[j] * x[j];
    float inv = 1.0f / std::sqrt(ss / float(hd) + eps);
    for (int64_t j = 0; j < hd; ++j) x[j] = load_float(w.type, w.data, size_t(j)) * (x[j] * inv);
}

// The value a K or V element has once stored in a cache of dtype dt.
float kv_round(kv_cache_dtype dt, float x) {
    switch (dt) {
        case kv_cache_bf16:
            return bf16_to_float(bf16_from_float(x));
        case kv_cache_fp8:
            return e4m3_to_float(e4m3_from_float_sat(x));
        default:
            return x;
    }
}

// rotate_half convention (transformers): pairs (i, i + hd/2).
void rope(float* x, int64_t hd, int32_t pos, const std::vector<float>& inv_freq) {
    const int64_t half = hd / 2;
    for (int64_t i = 0; i < half; ++i) {
        float a = float(pos) * inv_freq[size_t(i)];
        float c = std::cos(a), s = std::sin(a);
        float x0 = x[i], x1 = x[i + half];
        x[i] = x0 * c - x1 * s;
        x[i + half] = x1 * c + x0 * s;
    }
}

}  // namespace

void cpu_backend::rope_and_cache(const model_config& c, int32_t layer, const layer_weights& l,
                                 const step_tokens& s, float* q, float* k, const float* v) {
    const int64_t hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads, T = int64_t(s.ids.size());
    const bool qk_norm = !l.q_norm.empty();
#pragma omp parallel for schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; ++t) {
        for (int64_t h = 0; h < nh; ++h) {
            float* x = q + (t * nh + h) * hd;
            if (qk_norm) head_rms_norm(x, l.q_norm, hd, c.rms_norm_eps);
            rope(x, hd, s.positions[size_t(t)], inv_freq_);
        }
        for (int64_t h = 0; h < nkv; ++h) {
            float* x = k + (t * nkv + h) * hd;
            if (qk_norm) head_rms_norm(x, l.k_norm, hd, c.rms_norm_eps);
            rope(x, hd, s.positions[size_t(t)], inv_freq_);
        }
    }
    kv_store(layer, s, k, v);
}

void cpu_backend::kv_store(int32_t layer, const step_tokens& s, const float* k, const float* v) {
    const kv_cache_dtype dt = kv_dtype_;
    auto store = [dt](const float* src, int64_t n, float* dst) {
        for (int64_t i = 0; i < n; ++i) dst[i] = kv_round(dt, src[i]);
    };
    for (size_t t = 0; t < s.slots.size(); ++t) {
        const int64_t off = int64_t(t) * kv_dim_;
        store(k + off, kv_dim_, kv_row(false, s.slots[t], layer, s.positions[t]));
        store(v + off, kv_dim_, kv_row(true, s.slots[t], layer, s.positions[t]));
    }
}

void cpu_backend::attention(const model_config& c, int32_t layer, const step_tokens& s, const float* q,
                            float* out) {
    const int64_t hd = c.head_dim, nh = c.n_heads, group = c.n_heads / c.n_kv_heads,
                  T = int64_t(s.ids.size());
    const float scale = 1.0f / std::sqrt(float(hd));
    // Validate slots/positions once, outside the parallel region.
    for (int64_t t = 0; t < T; ++t) kv_row(false, s.slots[size_t(t)], layer, s.positions[size_t(t)]);
#pragma omp parallel
    {
        std::vector<float> p;
#pragma omp for collapse(2) schedule(static)
        for (int64_t t = 0; t < T; ++t) {
            for (int64_t h = 0; h < nh; ++h) {
                const int32_t slot = s.slots[size_t(t)], pos = s.positions[size_t(t)];
                const float* qh = q + (t * nh + h) * hd;
                const int64_t kvh = h / group;
                p.resize(size_t(pos + 1));
                float m = -INFINITY;
                for (int32_t j = 0; j <= pos; ++j) {
                    const float* kr = kv_row(false, slot, layer, j) + kvh * hd;
                    float d = 0;
                    for (int64_t i = 0; i < hd; ++i) d += qh[i] * kr[i];
                    p[size_t(j)] = d * scale;
                    m = std::fmax(m, p[size_t(j)]);
                }
                float sum = 0;
                for (int32_t j = 0; j <= pos; ++j) sum += (p[size_t(j)] = std::exp(p[size_t(j)] - m));
                float* o = out + (t * nh + h) * hd;
                std::fill(o, o + hd, 0.0f);
                for (int32_t j = 0; j <= pos; ++j) {
                    const float* vr = kv_row(true, slot, layer, j) + kvh * hd;
                    float w = p[size_t(j)] / sum;
                    for (int64_t i = 0; i < hd; ++i) o[i] += w * vr[i];
                }
            }
        }
    }
}

}  // namespace nibble
