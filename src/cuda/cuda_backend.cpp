// cuda_backend (cuda_backend.h): memory, weight upload and each op of the Backend interface, issued on
// the backend's stream through the launchers of backend_ops.h and linear_nvfp4.h.
//
// MoE (first slice): the router logits are copied to the host and routed there with the CPU's exact code
// (softmax in float, top-k with ties to the lower index, optional renormalisation); then each expert runs
// over its tokens with linear() and its weighted output is added back, experts in index order (the CPU's
// order of additions). The copy synchronizes the stream, so moe() is not graph-capturable yet.
#include "cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/quant.h"
#include "cpu/cpu_backend.h"
#include "cuda/backend_ops.h"
#include "cuda/cuda_check.h"
#include "cuda/linear_nvfp4.h"

namespace nibble {

namespace {

cuda_dense_type dense_type(const tensor_view& v) {
    switch (v.type) {
        case dtype_f32:
            return cuda_dense_f32;
        case dtype_bf16:
            return cuda_dense_bf16;
        case dtype_f16:
            return cuda_dense_f16;
        default:
            fail("{}: dtype {} is not a dense float type the CUDA backend reads", v.name, int(v.type));
    }
}

}  // namespace

// --- cuda_backend

cuda_backend::cuda_backend(int device) : device_(device) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) fail("no CUDA device on this machine");
    if (device < 0 || device >= n) fail("CUDA device {} does not exist ({} present)", device, n);
    NIBBLE_CUDA_CHECK(cudaSetDevice(device));
    NIBBLE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    if (cublasCreate(&cublas_) != CUBLAS_STATUS_SUCCESS) fail("cublasCreate failed");
    if (cublasSetStream(cublas_, stream_) != CUBLAS_STATUS_SUCCESS) fail("cublasSetStream failed");
    // Plain FP32 GEMMs (no TF32): the results must track the CPU reference.
    cublasSetMathMode(cublas_, CUBLAS_PEDANTIC_MATH);
}

cuda_backend::~cuda_backend() {
    if (stream_) cudaStreamSynchronize(stream_);
    if (cublas_) cublasDestroy(cublas_);
    for (void* p : owned_) cudaFree(p);
    for (auto& g : scratch_) cudaFree(g.p);
    for (auto& g : ints_) cudaFree(g.p);
    if (stream_) cudaStreamDestroy(stream_);
}

float* cuda_backend::alloc(size_t n) {
    void* p = nullptr;
    NIBBLE_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(float)));
    owned_.push_back(p);
    return static_cast<float*>(p);
}

void cuda_backend::to_host(const float* src, size_t n, float* dst) {
    NIBBLE_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    NIBBLE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void cuda_backend::upload(const float* host, size_t n, float* dst) {
    NIBBLE_CUDA_CHECK(cudaMemcpyAsync(dst, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
    NIBBLE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

const void* cuda_backend::raw(const tensor_view& v) {
    auto it = raw_.find(v.data);
    if (it != raw_.end()) return it->second;
    void* p = nullptr;
    NIBBLE_CUDA_CHECK(cudaMalloc(&p, v.n_bytes + 16));  // slack for vector loads at the end
    owned_.push_back(p);
    // Synchronous, before any kernel reads it: the NVFP4 linear's programmatic dependent launch requires
    // that weights are not written by the operation just before it on the stream.
    NIBBLE_CUDA_CHECK(cudaMemcpyAsync(p, v.data, v.n_bytes, cudaMemcpyHostToDevice, stream_));
    NIBBLE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    uploaded_bytes_ += v.n_bytes;
    raw_.emplace(v.data, p);
    return p;
}

const float* cuda_backend::f32(const tensor_view& v) {
    auto it = f32_.find(v.data);
    if (it != f32_.end()) return it->second;
    const cuda_dense_type t = dense_type(v);
    const int64_t n = v.numel();
    void* tmp = nullptr;
    float* p = alloc(size_t(n));
    NIBBLE_CUDA_CHECK(cudaMalloc(&tmp, v.n_bytes + 16));
    NIBBLE_CUDA_CHECK(cudaMemcpyAsync(tmp, v.data, v.n_bytes, cudaMemcpyHostToDevice, stream_));
    NIBBLE_CUDA_CHECK(cuda_convert_f32(tmp, t, n, p, stream_));
    NIBBLE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    NIBBLE_CUDA_CHECK(cudaFree(tmp));
    uploaded_bytes_ += uint64_t(n) * sizeof(float);
    f32_.emplace(v.data, p);
    return p;
}

const float* cuda_backend::f32_vector(const std::vector<float>& v) {
    auto it = f32_.find(v.data());
    if (it != f32_.end()) return it->second;
    float* p = alloc(v.size());
    upload(v.data(), v.size(), p);
    uploaded_bytes_ += v.size() * sizeof(float);
    f32_.emplace(v.data(), p);
    return p;
}

float* cuda_backend::scratch(int which, size_t n) {
    growable& g = scratch_[which];
    const size_t bytes = std::max<size_t>(n, 1) * sizeof(float) + 16;
    if (g.bytes < bytes) {
        NIBBLE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old buffer may still be in use
        NIBBLE_CUDA_CHECK(cudaFree(g.p));
        g.p = nullptr;
        NIBBLE_CUDA_CHECK(cudaMalloc(&g.p, bytes));
        g.bytes = bytes;
    }
    return static_cast<float*>(g.p);
}

const int32_t* cuda_backend::ints(int which, std::span<const int32_t> v) {
    growable& g = ints_[which];
    const size_t bytes = std::max<size_t>(v.size(), 1) * sizeof(int32_t);
    if (g.bytes < bytes) {
        NIBBLE_CUDA_CHECK(cudaStreamSynchronize(stream_));
        NIBBLE_CUDA_CHECK(cudaFree(g.p));
        g.p = nullptr;
        NIBBLE_CUDA_CHECK(cudaMalloc(&g.p, bytes));
        g.bytes = bytes;
    }
    // From pageable memory the copy is staged before the call returns, so `v` may go away after; the
    // stream orders it after every earlier reader of this slot.
    if (!v.empty())
        NIBBLE_CUDA_CHECK(
            cudaMemcpyAsync(g.p, v.data(), v.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
    return static_cast<const int32_t*>(g.p);
}

void cuda_backend::kv_init(const model_config& c, int32_t n_slots, int32_t max_ctx, kv_cache_dtype dt) {
    if (dt != kv_cache_auto && dt != kv_cache_f32)
        fail("the CUDA backend stores the KV cache in f32 only (asked for {})", kv_cache_dtype_name(dt));
    kv_dtype_ = kv_cache_f32;
    NIBBLE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    n_slots_ = n_slots;
    max_ctx_ = max_ctx;
    n_layers_ = int32_t(c.n_layers);
    kv_dim_ = c.n_kv_heads * c.head_dim;
    const size_t n = size_t(n_slots) * size_t(n_layers_) * size_t(max_ctx) * size_t(kv_dim_);
    k_cache_ = alloc(n);
    v_cache_ = alloc(n);
    NIBBLE_CUDA_CHECK(cudaMemsetAsync(k_cache_, 0, n * sizeof(float), stream_));
    NIBBLE_CUDA_CHECK(cudaMemsetAsync(v_cache_, 0, n * sizeof(float), stream_));
    std::vector<float> f = rope_inv_freq(c);
    inv_freq_ = alloc(f.size());
    upload(f.data(), f.size(), inv_freq_);
}

void cuda_backend::check_tokens(const step_tokens& s) const {
    for (size_t t = 0; t < s.ids.size(); ++t) {
        if (s.slots[t] < 0 || s.slots[t] >= n_slots_)
            fail("sequence slot {} outside [0, {})", s.slots[t], n_slots_);
        if (s.positions[t] < 0 || s.positions[t] >= max_ctx_)
            fail("position {} outside the context of {} tokens", s.positions[t], max_ctx_);
    }
}

void cuda_backend::embed(const tensor_view& table, const step_tokens& s, float* out) {
    const int64_t vocab = table.shape[0], h = table.shape[1];
    for (int32_t id : s.ids)
        if (id < 0 || id >= vocab) fail("token id {} is outside the vocabulary [0, {})", id, vocab);
    const cuda_dense_type t = dense_type(table);
    NIBBLE_CUDA_CHECK(cuda_embed(raw(table), t, h, ints(0, s.ids), int64_t(s.ids.size()), out, stream_));
}

void cuda_backend::add(float* x, const float* y, int64_t n) {
    NIBBLE_CUDA_CHECK(cuda_add(x, y, n, stream_));
}

void cuda_backend::silu_mul(const float* gate, const float* up, int64_t n, float* out) {
    NIBBLE_CUDA_CHECK(cuda_silu_mul(gate, up, n, out, stream_));
}

void cuda_backend::gather_rows(const float* src, int64_t cols, std::span<const int32_t> rows, float* dst) {
    NIBBLE_CUDA_CHECK(cuda_gather_rows(src, cols, ints(1, rows), int64_t(rows.size()), dst, stream_));
}

void cuda_backend::rms_norm(const float* x, const tensor_view& w, int64_t rows, int64_t cols, float eps,
                            float* out) {
    NIBBLE_CUDA_CHECK(cuda_rms_norm(x, f32(w), rows, cols, eps, out, stream_));
}

void cuda_backend::rope_and_cache(const model_config& c, int32_t layer, const layer_weights& l,
                                  const step_tokens& s, float* q, float* k, const float* v) {
    if (!k_cache_) fail("rope_and_cache before kv_init");
    check_tokens(s);
    const int64_t T = int64_t(s.ids.size());
    const bool qk_norm = !l.q_norm.empty();
    const int32_t* pos = ints(2, s.positions);
    const int32_t* slots = ints(3, s.slots);
    NIBBLE_CUDA_CHECK(cuda_qk_norm_rope(q, k, qk_norm ? f32(l.q_norm) : nullptr,
                                        qk_norm ? f32(l.k_norm) : nullptr, pos, inv_freq_, T, c.n_heads,
                                        c.n_kv_heads, c.head_dim, c.rms_norm_eps, stream_));
    NIBBLE_CUDA_CHECK(cuda_kv_append(k, v, slots, pos, T, kv_dim_, layer, n_layers_, max_ctx_, k_cache_,
                                     v_cache_, stream_));
}

void cuda_backend::attention(const model_config& c, int32_t layer, const step_tokens& s, const float* q,
                             float* out) {
    if (!k_cache_) fail("attention before kv_init");
    check_tokens(s);
    const int64_t T = int64_t(s.ids.size());
    const int32_t* pos = ints(2, s.positions);
    const int32_t* slots = ints(3, s.slots);
    NIBBLE_CUDA_CHECK(cuda_attention(q, k_cache_, v_cache_, slots, pos, T, c.n_heads, c.n_kv_heads,
                                     c.head_dim, layer, n_layers_, max_ctx_, out, stream_));
}

void cuda_backend::linear(const float* x, int64_t rows, const linear_weight& w, float* out) {
    const int64_t n = w.n, k = w.k;
    if (rows <= 0 || n == 0) return;
    const float* xa = x;
    if (w.act != act_format_none) {
        float* xq = scratch(0, size_t(rows * k));
        switch (w.act) {
            case act_format_nvfp4:
                NIBBLE_CUDA_CHECK(cuda_nvfp4_fake_quantize(x, rows, k, w.input_global_scale, xq, stream_));
                break;
            case act_format_fp8_token:
            case act_format_fp8_group:
                NIBBLE_CUDA_CHECK(cuda_fp8_fake_quantize(
                    x, rows, k, w.act == act_format_fp8_token ? k : fp8_block, xq, stream_));
                break;
            case act_format_fp8_static:
                NIBBLE_CUDA_CHECK(cuda_fp8_static_fake_quantize(x, rows * k, w.fp8_input_scale, xq, stream_));
                break;
            default:
                fail("{}: activation format {} not supported on CUDA", w.name, act_format_name(w.act));
        }
        xa = xq;
    }
    const float* bias = w.bias.empty() ? nullptr : f32(w.bias);
    if (w.format == weight_format_nvfp4 && rows <= 16) {
        const auto* packed = static_cast<const uint8_t*>(raw(w.weight));
        const auto* scales = static_cast<const uint8_t*>(raw(w.block_scale));
        NIBBLE_CUDA_CHECK(cuda_nvfp4_linear(xa, rows, packed, scales, n, k,
                                            nvfp4_global_multiplier(w.global_scale, w.convention), bias, out,
                                            stream_));
        return;
    }
    const float* wf = nullptr;
    switch (w.format) {
        case weight_format_dense:
            wf = f32(w.weight);
            break;
        case weight_format_nvfp4: {
            float* s = scratch(1, size_t(n * k));
            NIBBLE_CUDA_CHECK(cuda_nvfp4_decode_f32(
                static_cast<const uint8_t*>(raw(w.weight)), static_cast<const uint8_t*>(raw(w.block_scale)),
                n, k, w.global_scale, w.convention == nvfp4_convention_ct, s, stream_));
            wf = s;
            break;
        }
        case weight_format_mxfp4: {
            float* s = scratch(1, size_t(n * k));
            NIBBLE_CUDA_CHECK(cuda_mxfp4_decode_f32(static_cast<const uint8_t*>(raw(w.weight)),
                                                    static_cast<const uint8_t*>(raw(w.block_scale)), n, k, s,
                                                    stream_));
            wf = s;
            break;
        }
        case weight_format_fp8: {
            float* s = scratch(1, size_t(n * k));
            NIBBLE_CUDA_CHECK(cuda_fp8_decode_f32(static_cast<const uint8_t*>(raw(w.weight)),
                                                  f32_vector(w.fp8_scales), int(w.fp8_gran), n, k, s,
                                                  stream_));
            wf = s;
            break;
        }
    }
    // Row-major out[rows, n] = x[rows, k] · W[n, k]ᵀ is, column-major, out (n × rows) = Wᵀ-view · x.
    const float one = 1.0f, zero = 0.0f;
    if (cublasSgemm(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(rows), int(k), &one, wf, int(k), xa,
                    int(k), &zero, out, int(n)) != CUBLAS_STATUS_SUCCESS)
        fail("{}: cublasSgemm failed ({} x {} x {})", w.name, rows, n, k);
    if (bias) NIBBLE_CUDA_CHECK(cuda_add_bias(out, bias, rows, n, stream_));
}

void cuda_backend::moe(const model_config& c, const layer_weights& l, const float* x,
                       const float* router_logits, int64_t rows, float* out) {
    const int64_t E = c.n_experts, K = c.n_experts_per_token, H = c.hidden_size, I = c.moe_intermediate_size;
    if (rows <= 0) return;
    std::vector<float> logits(size_t(rows * E));
    to_host(router_logits, logits.size(), logits.data());
    std::vector<std::vector<int32_t>> tok(static_cast<size_t>(E));
    std::vector<std::vector<float>> wt(static_cast<size_t>(E));
    std::vector<float> p(static_cast<size_t>(E));
    std::vector<int64_t> idx(static_cast<size_t>(E));
    for (int64_t t = 0; t < rows; ++t) {
        const float* lg = logits.data() + t * E;
        float m = -INFINITY, sum = 0;
        for (int64_t e = 0; e < E; ++e) m = std::fmax(m, lg[e]);
        for (int64_t e = 0; e < E; ++e) sum += (p[size_t(e)] = std::exp(lg[e] - m));
        for (float& v : p) v /= sum;
        for (int64_t e = 0; e < E; ++e) idx[size_t(e)] = e;
        std::partial_sort(idx.begin(), idx.begin() + K, idx.end(), [&](int64_t a, int64_t b) {
            return p[size_t(a)] > p[size_t(b)] || (p[size_t(a)] == p[size_t(b)] && a < b);
        });
        float norm = 0;
        for (int64_t i = 0; i < K; ++i) norm += p[size_t(idx[size_t(i)])];
        for (int64_t i = 0; i < K; ++i) {
            const size_t e = size_t(idx[size_t(i)]);
            const float w = p[e];
            tok[e].push_back(int32_t(t));
            wt[e].push_back(c.norm_topk_prob ? w / norm : w);
        }
    }
    NIBBLE_CUDA_CHECK(cudaMemsetAsync(out, 0, size_t(rows * H) * sizeof(float), stream_));
    float* xe = scratch(2, size_t(rows * H));
    float* g = scratch(3, size_t(rows * I));
    float* u = scratch(4, size_t(rows * I));
    float* y = scratch(5, size_t(rows * H));
    for (int64_t e = 0; e < E; ++e) {
        const auto& te = tok[size_t(e)];
        if (te.empty()) continue;
        const int64_t m = int64_t(te.size());
        const int32_t* rows_d = ints(1, te);
        NIBBLE_CUDA_CHECK(cuda_gather_rows(x, H, rows_d, m, xe, stream_));
        linear(xe, m, l.expert_gate[size_t(e)], g);
        linear(xe, m, l.expert_up[size_t(e)], u);
        NIBBLE_CUDA_CHECK(cuda_silu_mul(g, u, m * I, g, stream_));
        linear(g, m, l.expert_down[size_t(e)], y);
        // The weights ride in the int staging slot 0 as raw bits (same size as int32).
        const auto& we = wt[size_t(e)];
        const int32_t* w_d =
            ints(0, std::span<const int32_t>(reinterpret_cast<const int32_t*>(we.data()), we.size()));
        NIBBLE_CUDA_CHECK(
            cuda_scatter_add_scaled(y, rows_d, reinterpret_cast<const float*>(w_d), m, H, out, stream_));
    }
}

}  // namespace nibble
