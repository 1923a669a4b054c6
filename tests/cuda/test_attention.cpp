// The KV cache and attention launchers (backend_ops.h) against the CPU backend, on caches both sides
// fill with the same values. SKIPPED without a GPU, except the host-only split-plan test.
//
// Bounds (stated, per op):
//   cuda_rope_and_cache's stores: bit-exact with the CPU encoders (f32 bits; BF16 RNE; E4M3 RNE saturating
//     at ±448) applied to the GPU's own rotated k and to v.
//   cuda_attention: 1e-5 absolute against cpu_backend::attention over the same stored values (unit-scale
//     q, K, V; FP32 math, online softmax in exp2 vs the CPU's two-pass exp), for every KV dtype, split
//     count and head shape; a token at position 0 returns its stored V bit for bit.
//   cuda_attention with the tensor-core prefill path on (attention_prefill.h): 1e-4 absolute, same
//     inputs: q and the probabilities enter the BF16 tensor cores as two terms each (2^-17 relative), K
//     and V exactly, sums in FP32 (estimated worst ~3e-5 at unit scale).
//   decode_bandwidth: timings only (printed; outputs checked finite).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/formats.h"
#include "cpu/cpu_backend.h"
#include "cuda/attention_prefill.h"
#include "cuda/backend_ops.h"
#include "cuda_test_util.h"

using namespace nibble;
using nibble::test::device_buffer;
using nibble::test::device_copy;

namespace {

cuda_kv_type cuda_type(kv_cache_dtype d) {
    return d == kv_cache_f32 ? cuda_kv_f32 : d == kv_cache_bf16 ? cuda_kv_bf16 : cuda_kv_fp8;
}

float rounded(kv_cache_dtype d, float x) {
    if (d == kv_cache_bf16) return bf16_to_float(bf16_from_float(x));
    if (d == kv_cache_fp8) return e4m3_to_float(e4m3_from_float_sat(x));
    return x;
}

// Appends the stored bytes of x (element type d) to out.
void encode(kv_cache_dtype d, const float* x, size_t n, std::vector<uint8_t>& out) {
    const size_t at = out.size();
    out.resize(at + n * size_t(kv_cache_dtype_bytes(d)));
    uint8_t* p = out.data() + at;
    for (size_t i = 0; i < n; ++i) {
        if (d == kv_cache_f32) {
            std::memcpy(p + 4 * i, &x[i], 4);
        } else if (d == kv_cache_bf16) {
            const uint16_t h = bf16_from_float(x[i]);
            std::memcpy(p + 2 * i, &h, 2);
        } else {
            p[i] = e4m3_from_float_sat(x[i]);
        }
    }
}

using test::randn;

struct head_shape {
    int64_t nh, nkv, hd;
};

model_config config_of(const head_shape& h, int64_t n_layers) {
    model_config c;
    c.n_layers = n_layers;
    c.n_heads = h.nh;
    c.n_kv_heads = h.nkv;
    c.head_dim = h.hd;
    c.hidden_size = h.nh * h.hd;
    c.rope_theta = 1e6f;
    c.rms_norm_eps = 1e-6f;
    return c;
}

// Block tables for n_slots slots of bps blocks each over a pool of n_blocks (>= n_slots · bps) blocks, in
// a shuffled order (so that a position's row is found only through its table), as [n_slots][bps].
std::vector<int32_t> shuffled_tables(int64_t n_slots, int64_t bps, int64_t n_blocks, uint32_t seed) {
    std::vector<int32_t> perm(size_t(n_blocks), 0);
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = int32_t(i);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
    perm.resize(size_t(n_slots * bps));
    return perm;
}

// A paged device cache and a CPU backend holding the same random K and V at every position, both with the
// same shuffled block tables (block size 16, a few spare blocks in the pool).
struct twin_cache {
    cpu_backend cpu;
    cuda_kv_cache kv;
    std::unique_ptr<device_copy<uint8_t>> k, v;
    std::unique_ptr<device_copy<int32_t>> tables;

    twin_cache(const model_config& c, int64_t n_slots, int64_t max_ctx, kv_cache_dtype d, uint32_t seed) {
        const int64_t bs = 16, bps = (max_ctx + bs - 1) / bs, n_blocks = n_slots * bps + 5;
        cpu.kv_init(c, kv_cache_shape{int32_t(n_slots), int32_t(max_ctx), int32_t(bs), int32_t(n_blocks)}, d);
        const std::vector<int32_t> tab = shuffled_tables(n_slots, bps, n_blocks, seed);
        for (int64_t s = 0; s < n_slots; ++s)
            cpu.set_block_table(int32_t(s), std::span<const int32_t>(tab.data() + s * bps, size_t(bps)));
        const int64_t kd = c.n_kv_heads * c.head_dim;
        const size_t eb = size_t(kv_cache_dtype_bytes(d)), row_bytes = size_t(kd) * eb;
        std::vector<uint8_t> kb(size_t(c.n_layers * n_blocks * bs) * row_bytes, 0), vb = kb, rk, rv;
        const size_t n = static_cast<size_t>(max_ctx);
        std::vector<int32_t> ids(n, 0), slots(n, 0), pos(n, 0);
        for (int64_t i = 0; i < max_ctx; ++i) pos[size_t(i)] = int32_t(i);
        for (int64_t s = 0; s < n_slots; ++s)
            for (int64_t l = 0; l < c.n_layers; ++l) {
                std::vector<float> kf = randn(size_t(max_ctx * kd), seed++),
                                   vf = randn(size_t(max_ctx * kd), seed++);
                for (float& x : kf) x = rounded(d, x);
                for (float& x : vf) x = rounded(d, x);
                std::fill(slots.begin(), slots.end(), int32_t(s));
                cpu.kv_store(int32_t(l), step_tokens{ids, slots, pos}, kf.data(), vf.data());
                rk.clear();
                rv.clear();
                encode(d, kf.data(), kf.size(), rk);
                encode(d, vf.data(), vf.size(), rv);
                for (int64_t p = 0; p < max_ctx; ++p) {
                    const int64_t row = (l * n_blocks + tab[size_t(s * bps + p / bs)]) * bs + p % bs;
                    std::memcpy(kb.data() + size_t(row) * row_bytes, rk.data() + size_t(p) * row_bytes,
                                row_bytes);
                    std::memcpy(vb.data() + size_t(row) * row_bytes, rv.data() + size_t(p) * row_bytes,
                                row_bytes);
                }
            }
        k = std::make_unique<device_copy<uint8_t>>(kb);
        v = std::make_unique<device_copy<uint8_t>>(vb);
        tables = std::make_unique<device_copy<int32_t>>(tab);
        kv = cuda_kv_cache{k->p,         v->p,       cuda_type(d), n_blocks, 4,      c.n_layers,
                           c.n_kv_heads, c.head_dim, tables->p,    bps,      max_ctx};
    }
};

struct attn_step {
    std::vector<int32_t> slots, pos;
};

// One step's q and the CPU's attention output for it.
struct step_case {
    std::vector<float> q, want;
};

step_case cpu_case(twin_cache& tc, const model_config& c, int64_t layer, const attn_step& st, uint32_t seed) {
    const int64_t T = int64_t(st.slots.size()), qd = c.n_heads * c.head_dim;
    std::vector<int32_t> ids(size_t(T), 0);
    step_case sc{randn(size_t(T * qd), seed), std::vector<float>(size_t(T * qd))};
    tc.cpu.attention(c, int32_t(layer), step_tokens{ids, st.slots, st.pos}, sc.q.data(), sc.want.data());
    return sc;
}

// cuda_attention with `split` on one step; returns max |gpu - cpu|, and checks that a lone token at
// position 0 gets the stored V exactly.
double gpu_error(const twin_cache& tc, const model_config& c, int64_t layer, const attn_step& st,
                 const step_case& sc, cuda_attention_split split) {
    const int64_t T = int64_t(st.slots.size());
    std::vector<float> got(sc.want.size());
    device_copy<float> q(sc.q);
    device_copy<int32_t> slots(st.slots), pos(st.pos);
    device_buffer<float> out(got.size());
    NIBBLE_CUDA_CHECK(cudaMemset(out.p, 0xFF, got.size() * sizeof(float)));  // NaN poison
    const int64_t scratch_floats = split.n_splits > 1 ? T * c.n_heads * split.n_splits * (c.head_dim + 2) : 0;
    device_buffer<float> scratch(size_t(std::max<int64_t>(scratch_floats, 1)));
    NIBBLE_CUDA_CHECK(cuda_attention(q.p, tc.kv, slots.p, pos.p, T, c.n_heads, layer, split, scratch.p,
                                     scratch_floats, out.p, nullptr));
    NIBBLE_CUDA_CHECK(cudaDeviceSynchronize());
    NIBBLE_CUDA_CHECK(cudaMemcpy(got.data(), out.p, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
    if (T == 1 && st.pos[0] == 0) {
        EXPECT_EQ(got, sc.want) << "one key: the stored V exactly";
    }
    double m = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double d = std::fabs(double(got[i]) - sc.want[i]);
        if (!(d <= m)) m = std::isnan(d) ? INFINITY : d;  // an unwritten (NaN) output fails the bound
    }
    return m;
}

}  // namespace

// The split plan depends on T and sizes only, and always fits the scratch it sizes (host code: runs
// without a GPU).
TEST(cuda_attention, plan_fits_its_scratch) {
    for (const head_shape& h : {head_shape{32, 8, 128}, head_shape{6, 2, 64}, head_shape{12, 1, 128},
                                head_shape{64, 8, 256}, head_shape{6, 3, 34}})
        for (cuda_kv_type ty : {cuda_kv_f32, cuda_kv_bf16, cuda_kv_fp8})
            for (int64_t max_ctx : {1, 100, 4096, 32768}) {
                cuda_kv_cache kv;
                kv.type = ty;
                kv.n_layers = 1;
                kv.max_ctx = max_ctx;
                kv.n_kv = h.nkv;
                kv.head_dim = h.hd;
                const int64_t scratch = cuda_attention_scratch_floats(h.nh, kv, 132);
                for (int64_t T = 1; T <= 2048; T += T < 64 ? 1 : 37) {
                    const cuda_attention_split sp = cuda_attention_plan(T, h.nh, kv, 132, scratch);
                    ASSERT_GE(sp.n_fill, 1);
                    ASSERT_LE(sp.n_fill, sp.n_splits);
                    ASSERT_LE(sp.n_splits, 64);
                    if (sp.n_splits > 1) {
                        ASSERT_LE(T * h.nh * sp.n_splits * (h.hd + 2), scratch) << T;
                    }
                }
                if (max_ctx >= 4096) {  // decode at long contexts is split
                    EXPECT_GT(cuda_attention_plan(1, h.nh, kv, 132, scratch).n_splits, 1);
                }
            }
}

TEST(cuda_attention, matches_cpu_every_split_and_shape) {
    REQUIRE_GPU();
    const test::prefill_attention_switch split_kv_only(
        false);  // this test covers the split-KV kernel on every step
    // Wide 16-byte rows at hd 64/128/96/80/256 (GQA groups 3, 4, 12 = 8 + 4, 8 with FP8's 4-head blocks,
    // 1); hd 34 and 2 take the element-pair path.
    const head_shape shapes[] = {{6, 2, 64}, {6, 2, 128}, {32, 8, 128}, {12, 1, 128}, {16, 2, 80},
                                 {8, 2, 96}, {4, 4, 256}, {6, 3, 34},   {2, 1, 2}};
    const int64_t max_ctx = 1029, layer = 1;
    uint32_t seed = 1000;
    for (const head_shape& h : shapes)
        for (kv_cache_dtype d : {kv_cache_f32, kv_cache_bf16, kv_cache_fp8}) {
            const model_config c = config_of(h, 2);
            twin_cache tc(c, 2, max_ctx, d, seed);
            seed += 8;
            std::vector<attn_step> steps;
            // Decodes around the split boundaries (64-key minimum, 512-key ranges) and at the end.
            for (int32_t p : {0, 1, 15, 16, 63, 64, 65, 127, 128, 129, 300, 511, 512, 513, 1000, 1028})
                steps.push_back({{0}, {p}});
            steps.push_back({{0, 1}, {700, 3}});  // two slots
            attn_step prefill, mixed;
            for (int32_t i = 0; i < 300; ++i) prefill.slots.push_back(1), prefill.pos.push_back(i);
            for (int32_t i = 0; i < 37; ++i) mixed.slots.push_back(1), mixed.pos.push_back(700 + i);
            mixed.slots.push_back(0), mixed.pos.push_back(1023);  // a long decode after a prefill chunk
            steps.push_back(prefill);
            steps.push_back(mixed);
            double worst = 0;
            for (const attn_step& st : steps) {
                const int64_t T = int64_t(st.slots.size());
                const int64_t auto_scratch = cuda_attention_scratch_floats(c.n_heads, tc.kv, 132);
                std::vector<cuda_attention_split> splits = {{1, 1}, {2, 1}, {2, 2},  {3, 3},
                                                            {7, 1}, {7, 7}, {64, 64}};
                splits.push_back(cuda_attention_plan(T, c.n_heads, tc.kv, 132, auto_scratch));
                const step_case sc = cpu_case(tc, c, layer, st, seed++);
                for (const cuda_attention_split& sp : splits) {
                    const double e = gpu_error(tc, c, layer, st, sc, sp);
                    worst = std::max(worst, e);
                    EXPECT_LE(e, 1e-5) << kv_cache_dtype_name(d) << " nh " << h.nh << " nkv " << h.nkv
                                       << " hd " << h.hd << ": " << T << " tokens, first at " << st.pos[0]
                                       << ", splits " << sp.n_splits << " fill " << sp.n_fill;
                }
            }
            std::printf("attention %-4s nh %2lld nkv %lld hd %3lld: worst |gpu - cpu| %.2g\n",
                        kv_cache_dtype_name(d), (long long)h.nh, (long long)h.nkv, (long long)h.hd, worst);
        }
}

// The tensor-core prefill path on: steps whose tiles are one sequence's tokens (taken), tiles that mix
// sequences and decode tokens (left to the split-KV kernel, which must skip exactly the taken ones; it runs
// one range per token then, whatever split is asked), positions out of order within a sequence (each row
// masks by its own), the cache's last position, and shapes / caches the path does not take (all on the
// split-KV kernel, with the splits asked).
TEST(cuda_attention, prefill_tensor_cores_match_cpu) {
    REQUIRE_GPU();
    const test::prefill_attention_switch on(true);
    // Groups 1 (tiles of 64 tokens), 3 (21 tokens, 63 rows), 4 (16), 12 (5), 8 (8), 2 at hd 32 (the bundled
    // models' heads); hd 96 is not taken.
    const head_shape shapes[] = {{4, 4, 64},   {6, 2, 64},   {6, 2, 128}, {32, 8, 128},
                                 {12, 1, 128}, {16, 2, 128}, {4, 2, 32},  {8, 2, 96}};
    const int64_t max_ctx = 1029, layer = 1;
    uint32_t seed = 5000;
    std::vector<attn_step> steps(5);
    for (int32_t i = 0; i < 300; ++i) steps[0].slots.push_back(1), steps[0].pos.push_back(i);
    for (int32_t i = 0; i < 200; ++i) steps[1].slots.push_back(0), steps[1].pos.push_back(500 + i);
    for (int32_t i = 0; i < 100; ++i) steps[2].slots.push_back(1), steps[2].pos.push_back(i);
    for (int32_t i = 0; i < 70; ++i) steps[2].slots.push_back(0), steps[2].pos.push_back(800 + i);
    for (auto [sl, p] : {std::pair{1, 1028}, {0, 5}, {1, 64}})
        steps[2].slots.push_back(sl), steps[2].pos.push_back(p);
    for (int32_t i = 0; i < 100; ++i) steps[3].slots.push_back(0), steps[3].pos.push_back(1000 - i);
    for (int32_t i = 0; i < 64; ++i) steps[3].slots.push_back(1), steps[3].pos.push_back(i);
    for (int32_t i = 0; i < 64; ++i) steps[4].slots.push_back(0), steps[4].pos.push_back(965 + i);
    for (const head_shape& h : shapes)
        for (kv_cache_dtype d : {kv_cache_bf16, kv_cache_fp8, kv_cache_f32}) {
            const model_config c = config_of(h, 2);
            twin_cache tc(c, 2, max_ctx, d, seed);
            seed += 8;
            const int tt = cuda_attention_prefill_tile(300, c.n_heads, tc.kv);
            const bool want_taken = d != kv_cache_f32 && (h.hd == 32 || h.hd == 64 || h.hd == 128);
            EXPECT_EQ(tt > 0, want_taken) << kv_cache_dtype_name(d) << " hd " << h.hd;
            if (tt > 0) {
                EXPECT_EQ(tt, 64 / (h.nh / h.nkv));
            }
            double worst = 0;
            int taken = 0;
            for (const attn_step& st : steps) {
                const int64_t T = int64_t(st.slots.size());
                for (int64_t t0 = 0; tt > 0 && t0 < T; t0 += tt) {
                    bool same = true;
                    for (int64_t t = t0; t < std::min(T, t0 + tt); ++t)
                        same = same && st.slots[size_t(t)] == st.slots[size_t(t0)];
                    taken += same;
                }
                const int64_t auto_scratch = cuda_attention_scratch_floats(c.n_heads, tc.kv, 132);
                const std::vector<cuda_attention_split> splits = {
                    {1, 1}, {7, 7}, cuda_attention_plan(T, c.n_heads, tc.kv, 132, auto_scratch)};
                const step_case sc = cpu_case(tc, c, layer, st, seed++);
                for (const cuda_attention_split& sp : splits) {
                    const double e = gpu_error(tc, c, layer, st, sc, sp);
                    worst = std::max(worst, e);
                    EXPECT_LE(e, tt > 0 ? 1e-4 : 1e-5)
                        << kv_cache_dtype_name(d) << " nh " << h.nh << " nkv " << h.nkv << " hd " << h.hd
                        << ": " << T << " tokens, first at " << st.pos[0] << ", splits " << sp.n_splits;
                }
            }
            if (tt > 0) {
                EXPECT_GT(taken, 0);
            }
            std::printf(
                "attention prefill-tc %-4s nh %2lld nkv %lld hd %3lld: tile %2d, %3d tiles taken, worst |gpu "
                "- cpu| %.2g\n",
                kv_cache_dtype_name(d), (long long)h.nh, (long long)h.nkv, (long long)h.hd, tt, taken, worst);
        }
}

TEST(cuda_attention, cache_append_encodes_like_cpu) {
    REQUIRE_GPU();
    const head_shape h{4, 2, 64};
    const int64_t n_slots = 2, n_layers = 3, max_ctx = 9, layer = 2, kd = h.nkv * h.hd, qd = h.nh * h.hd;
    const std::vector<int32_t> slots = {1, 1, 0}, pos = {3, 4, 8};
    const int64_t T = int64_t(slots.size());
    const model_config c = config_of(h, n_layers);
    const std::vector<float> inv = rope_inv_freq(c);
    std::vector<float> q = randn(size_t(T * qd), 7), k = randn(size_t(T * kd), 8, 3.0f),
                       v = randn(size_t(T * kd), 9);
    // Values each format rounds in its own way: BF16 ties, FP8 saturation and subnormals, signed zero.
    const float special[] = {1.00390625f, 1.01171875f, 1000.0f, -500.0f, 460.0f,
                             0.3f,        1e-3f,       -0.0f,   3e-5f,   240.0f};
    for (size_t i = 0; i < std::size(special); ++i) v[i] = special[i];
    for (kv_cache_dtype d : {kv_cache_f32, kv_cache_bf16, kv_cache_fp8}) {
        // Block size 4, shuffled tables over a pool with spare blocks.
        const int64_t bs = 4, bps = (max_ctx + bs - 1) / bs, n_blocks = n_slots * bps + 3;
        const std::vector<int32_t> tab = shuffled_tables(n_slots, bps, n_blocks, 77);
        device_copy<int32_t> tab_d(tab);
        const size_t elems = size_t(n_layers * n_blocks * bs * kd),
                     bytes = elems * size_t(kv_cache_dtype_bytes(d));
        device_buffer<uint8_t> kc(bytes), vc(bytes);
        NIBBLE_CUDA_CHECK(cudaMemset(kc.p, 0, bytes));
        NIBBLE_CUDA_CHECK(cudaMemset(vc.p, 0, bytes));
        const cuda_kv_cache kv{kc.p,  vc.p, cuda_type(d), n_blocks, 2,      n_layers,
                               h.nkv, h.hd, tab_d.p,      bps,      max_ctx};
        device_copy<float> qd_(q), kd_(k), vd_(v), inv_d(inv);
        device_copy<int32_t> slots_d(slots), pos_d(pos);
        NIBBLE_CUDA_CHECK(cuda_rope_and_cache(qd_.p, kd_.p, vd_.p, nullptr, nullptr, slots_d.p, pos_d.p,
                                              inv_d.p, T, h.nh, 1e-6f, kv, layer, nullptr));
        NIBBLE_CUDA_CHECK(cudaDeviceSynchronize());
        std::vector<float> k_rot(k.size());
        NIBBLE_CUDA_CHECK(
            cudaMemcpy(k_rot.data(), kd_.p, k_rot.size() * sizeof(float), cudaMemcpyDeviceToHost));
        std::vector<uint8_t> kh(bytes), vh(bytes), want_k(bytes, 0), want_v(bytes, 0);
        NIBBLE_CUDA_CHECK(cudaMemcpy(kh.data(), kc.p, bytes, cudaMemcpyDeviceToHost));
        NIBBLE_CUDA_CHECK(cudaMemcpy(vh.data(), vc.p, bytes, cudaMemcpyDeviceToHost));
        const size_t eb = size_t(kv_cache_dtype_bytes(d));
        for (int64_t t = 0; t < T; ++t) {
            std::vector<uint8_t> rk, rv;
            encode(d, k_rot.data() + t * kd, size_t(kd), rk);
            encode(d, v.data() + t * kd, size_t(kd), rv);
            const int64_t p = pos[size_t(t)], blk = tab[size_t(slots[size_t(t)] * bps + p / bs)];
            const size_t off = size_t(((layer * n_blocks + blk) * bs + p % bs) * kd) * eb;
            std::copy(rk.begin(), rk.end(), want_k.begin() + ptrdiff_t(off));
            std::copy(rv.begin(), rv.end(), want_v.begin() + ptrdiff_t(off));
        }
        EXPECT_EQ(kh, want_k) << kv_cache_dtype_name(d) << ": K cache bytes (everything else stays zero)";
        EXPECT_EQ(vh, want_v) << kv_cache_dtype_name(d) << ": V cache bytes (everything else stays zero)";
    }
}

// Decode attention as the model runs it, timed: 32 q heads / 8 KV heads, hd 128, T = 1 at context 4096
// (and T = 16 slots at 4096; prefill chunks of 256 at 0 and at 3840, a 2048-token prompt; those on the
// split-KV kernel alone and with the tensor-core path), over 8 layers in turn so that L2 (50 MB) does not
// hold the 16.8 MB (BF16) of K+V a layer reads. Prints the median per call, the K+V bytes read over that
// time (the lead compares the GB/s with the copy bandwidth of the same GPU) and the q·k + p·v FLOP rate
// over the causal keys.
TEST(cuda_attention, decode_bandwidth) {
    REQUIRE_GPU();
    const head_shape h{32, 8, 128};
    const int64_t n_slots = 16, n_layers = 8, max_ctx = 4096, kd = h.nkv * h.hd, qd = h.nh * h.hd;
    int n_sm = 0;
    NIBBLE_CUDA_CHECK(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, 0));
    cudaStream_t st;
    NIBBLE_CUDA_CHECK(cudaStreamCreate(&st));
    cudaEvent_t e0, e1;
    NIBBLE_CUDA_CHECK(cudaEventCreate(&e0));
    NIBBLE_CUDA_CHECK(cudaEventCreate(&e1));
    for (kv_cache_dtype d : {kv_cache_bf16, kv_cache_fp8, kv_cache_f32}) {
        const int64_t bs = 16, bps = max_ctx / bs, n_blocks = n_slots * bps;
        const std::vector<int32_t> tab = shuffled_tables(n_slots, bps, n_blocks, 5);
        device_copy<int32_t> tab_d(tab);
        const size_t eb = size_t(kv_cache_dtype_bytes(d)),
                     bytes = size_t(n_slots * n_layers * max_ctx * kd) * eb;
        device_buffer<uint8_t> kc(bytes), vc(bytes);
        {  // random values (never time zeros), 16 MB of them repeated
            std::vector<float> f = randn(size_t(16 << 20) / eb, 11);
            std::vector<uint8_t> enc;
            encode(d, f.data(), f.size(), enc);
            for (size_t off = 0; off < bytes; off += enc.size()) {
                const size_t n = std::min(enc.size(), bytes - off);
                NIBBLE_CUDA_CHECK(cudaMemcpy(kc.p + off, enc.data(), n, cudaMemcpyHostToDevice));
                NIBBLE_CUDA_CHECK(cudaMemcpy(vc.p + off, enc.data(), n, cudaMemcpyHostToDevice));
            }
        }
        const cuda_kv_cache kv{kc.p,  vc.p, cuda_type(d), n_blocks, 4,      n_layers,
                               h.nkv, h.hd, tab_d.p,      bps,      max_ctx};
        const int64_t scratch_floats = cuda_attention_scratch_floats(h.nh, kv, n_sm);
        device_buffer<float> scratch(size_t(std::max<int64_t>(scratch_floats, 1)));
        struct bench_step {
            const char* name;
            std::vector<int32_t> slots, pos;
        };
        std::vector<bench_step> steps(5);
        steps[0] = {"decode T=1 ctx 4096", {0}, {4095}};
        steps[1].name = "decode T=16 ctx 4096";
        for (int32_t s = 0; s < 16; ++s) steps[1].slots.push_back(s), steps[1].pos.push_back(4095);
        steps[2].name = "prefill 256 at 0";
        steps[3].name = "prefill 256 at 3840";
        steps[4].name = "prefill 2048 at 0";
        for (int32_t i = 0; i < 2048; ++i) steps[4].slots.push_back(1), steps[4].pos.push_back(i);
        for (int32_t i = 0; i < 256; ++i) {
            steps[2].slots.push_back(0), steps[2].pos.push_back(i);
            steps[3].slots.push_back(0), steps[3].pos.push_back(3840 + i);
        }
        for (const bench_step& b : steps) {
            const int64_t T = int64_t(b.slots.size());
            device_copy<float> q(randn(size_t(T * qd), 12));
            device_copy<int32_t> slots_d(b.slots), pos_d(b.pos);
            device_buffer<float> out(size_t(T * qd));
            double kv_bytes = 0;
            for (int32_t p : b.pos) kv_bytes += double(p + 1) * double(kd) * double(eb) * 2.0;
            const cuda_attention_split plan = cuda_attention_plan(T, h.nh, kv, n_sm, scratch_floats);
            std::vector<cuda_attention_split> splits = {plan};
            if (T == 1)
                for (int n : {1, 8, 16, 32, 64}) splits.push_back({n, n});
            double flops = 0;  // q·k and p·v over the causal keys
            for (int32_t p : b.pos) flops += 4.0 * double(p + 1) * double(h.nh) * double(h.hd);
            // Prefill steps: the split-KV kernel alone, then with the tensor-core path.
            for (int tc_on = 0; tc_on < (T >= 64 ? 2 : 1); ++tc_on)
                for (const cuda_attention_split& sp : splits) {
                    const test::prefill_attention_switch sw(tc_on == 1);
                    if (sp.n_splits > 1 && T * h.nh * sp.n_splits * (h.hd + 2) > scratch_floats) continue;
                    std::vector<float> ms;
                    for (int rep = 0; rep < 12; ++rep) {
                        NIBBLE_CUDA_CHECK(cudaEventRecord(e0, st));
                        for (int64_t l = 0; l < n_layers; ++l)
                            NIBBLE_CUDA_CHECK(cuda_attention(q.p, kv, slots_d.p, pos_d.p, T, h.nh, l, sp,
                                                             scratch.p, scratch_floats, out.p, st));
                        NIBBLE_CUDA_CHECK(cudaEventRecord(e1, st));
                        NIBBLE_CUDA_CHECK(cudaEventSynchronize(e1));
                        float t = 0;
                        NIBBLE_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
                        if (rep >= 2) ms.push_back(t / float(n_layers));
                    }
                    std::sort(ms.begin(), ms.end());
                    const double us = double(ms[ms.size() / 2]) * 1e3;
                    std::printf(
                        "attention %-4s %-22s splits %2d fill %2d%s%s: %9.2f us, K+V %7.2f MB, %7.1f GB/s, "
                        "%6.1f "
                        "TFLOP/s\n",
                        kv_cache_dtype_name(d), b.name, sp.n_splits, sp.n_fill,
                        &sp == &splits[0] ? " (plan)" : "",
                        tc_on && cuda_attention_prefill_tile(T, h.nh, kv) > 0 ? " tensor cores" : "", us,
                        kv_bytes / 1e6, kv_bytes / (us * 1e3), flops / (us * 1e6));
                }
            std::vector<float> o(size_t(T * qd));
            NIBBLE_CUDA_CHECK(cudaMemcpy(o.data(), out.p, o.size() * sizeof(float), cudaMemcpyDeviceToHost));
            for (float x : o) ASSERT_TRUE(std::isfinite(x)) << b.name;
        }
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaStreamDestroy(st);
}
