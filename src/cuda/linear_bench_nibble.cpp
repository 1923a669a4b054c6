// linear_bench_parts.h, the C++20 half: nibble's layers measured through cuda_backend's public API only
// (linear() on backend.stream()), so whatever kernel linear() dispatches to is what gets timed, and
// linear_bench_run, which runs every requested kernel of one shape (linear_bench.h).
//
// Per weight format, one fresh cuda_backend holds that format's uploads and frees them when it goes; the
// host copies the layers view outlive it (the backend keys uploads by host pointer, so a freed and
// reused host buffer must never meet it again).
#include <algorithm>
#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "core/error.h"
#include "core/weights.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"
#include "cuda/linear_bench_parts.h"

namespace nibble {

namespace {

constexpr float k_nvfp4_global = 2688.0f;  // CT divisor: e2m1 (<= 6) x e4m3 (<= 448) / 2688 -> |w| <= 1
constexpr float k_e4m3_unit = 1.0f / 448.0f;

struct nibble_variant {
    linear_bench_kernel kernel;
    weight_format format;
    act_format act;
};

constexpr nibble_variant k_variants[] = {
    {linear_bench_nibble_nvfp4_w4a16, weight_format_nvfp4, act_format_none},
    {linear_bench_nibble_nvfp4_w4a4, weight_format_nvfp4, act_format_nvfp4},
    {linear_bench_nibble_fp8_w8a16, weight_format_fp8, act_format_none},
    {linear_bench_nibble_fp8_w8a8, weight_format_fp8, act_format_fp8_token},
    {linear_bench_nibble_bf16, weight_format_dense, act_format_none},
};

// One host copy of a weight: packed / dense data and, for NVFP4, the block scales.
struct host_weight {
    std::vector<uint8_t> data, scales;
};

// Bytes of one stored copy (weight and scales), for the number of copies.
double stored_bytes(weight_format f, int64_t n, int64_t k) {
    const double nk = double(n) * double(k);
    if (f == weight_format_nvfp4) return nk / 2 + nk / nvfp4_block;
    if (f == weight_format_fp8) return nk + double(n) * sizeof(float);
    return nk * 2;
}

host_weight make_host_weight(weight_format f, int64_t n, int64_t k, uint32_t seed) {
    host_weight h;
    const size_t nk = size_t(n) * size_t(k);
    if (f == weight_format_nvfp4) {
        h.data = linear_bench_random_host(nk / 2, seed, linear_bench_fill_bytes);
        h.scales = linear_bench_random_host(nk / nvfp4_block, seed + 1, linear_bench_fill_e4m3_scale);
    } else if (f == weight_format_fp8) {
        h.data = linear_bench_random_host(nk, seed, linear_bench_fill_e4m3);
    } else {
        h.data = linear_bench_random_host(nk * 2, seed, linear_bench_fill_bf16);
    }
    return h;
}

// A layer over a host copy, with valid scales: NVFP4 in the CT convention (W4A4: input global 2688,
// for |x| < 1); FP8 per-channel scales in [0.5, 1.5) / 448; BF16 as is.
linear_weight make_layer(const nibble_variant& v, const host_weight& h, int64_t n, int64_t k, int copy) {
    linear_weight w;
    w.name = std::string("bench.") + linear_bench_kernel_name(v.kernel) + "." + std::to_string(copy);
    w.format = v.format;
    w.act = v.act;
    w.n = n;
    w.k = k;
    if (v.format == weight_format_nvfp4) {
        w.weight = {w.name + ".weight_packed", dtype_u8, {n, k / 2}, h.data.data(), h.data.size()};
        w.block_scale = {
            w.name + ".weight_scale", dtype_f8_e4m3, {n, k / nvfp4_block}, h.scales.data(), h.scales.size()};
        w.convention = nvfp4_convention_ct;
        w.global_scale = k_nvfp4_global;
        if (v.act == act_format_nvfp4) w.input_global_scale = k_nvfp4_global;
    } else if (v.format == weight_format_fp8) {
        w.weight = {w.name + ".weight", dtype_f8_e4m3, {n, k}, h.data.data(), h.data.size()};
        w.fp8_gran = fp8_granularity_channel;
        w.fp8_scales.resize(size_t(n));
        for (int64_t i = 0; i < n; ++i)
            w.fp8_scales[size_t(i)] =
                k_e4m3_unit * (0.5f + float((uint32_t(i) * 2654435761u) >> 8) * 0x1p-24f);
    } else {
        w.weight = {w.name + ".weight", dtype_bf16, {n, k}, h.data.data(), h.data.size()};
    }
    return w;
}

std::string message_of(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    }
}

// Every requested variant of one weight format on one backend; one row per variant and batch.
void run_format(weight_format f, const std::vector<nibble_variant>& vars, int64_t n, int64_t k,
                const std::vector<int64_t>& batches, int reps, size_t l2_bytes,
                std::vector<linear_bench_result>& out) {
    const int64_t m_max = *std::max_element(batches.begin(), batches.end());
    const int copies = linear_bench_copies(stored_bytes(f, n, k), l2_bytes);
    std::vector<host_weight> hosts;
    std::vector<std::vector<linear_weight>> layers(vars.size());
    std::unique_ptr<cuda_backend> be;
    float *x = nullptr, *y = nullptr;
    std::exception_ptr setup_error;
    try {
        hosts.reserve(size_t(copies));
        for (int c = 0; c < copies; ++c) hosts.push_back(make_host_weight(f, n, k, 1000 + 2 * uint32_t(c)));
        for (size_t v = 0; v < vars.size(); ++v) {
            layers[v].reserve(size_t(copies));
            for (int c = 0; c < copies; ++c)
                layers[v].push_back(make_layer(vars[v], hosts[size_t(c)], n, k, c));
        }
        be = std::make_unique<cuda_backend>(0);
        x = be->alloc(size_t(m_max * k));
        y = be->alloc(size_t(m_max * n));
        linear_bench_fill_device(x, size_t(m_max * k) * sizeof(float), 7, linear_bench_fill_f32,
                                 be->stream());
        NIBBLE_CUDA_CHECK(cudaStreamSynchronize(be->stream()));
    } catch (...) {
        setup_error = std::current_exception();
    }
    for (size_t v = 0; v < vars.size(); ++v) {
        for (int64_t m : batches) {
            linear_bench_result r;
            r.n = n, r.k = k, r.m = m, r.kernel = vars[v].kernel, r.copies = copies;
            const std::vector<linear_weight>& ws = layers[v];
            const double weight_bytes = ws.empty() ? stored_bytes(f, n, k) : double(ws[0].bytes());
            r.bytes = weight_bytes + double(m * k + m * n) * sizeof(float);
            if (setup_error) {
                r.error = message_of(setup_error);
                out.push_back(std::move(r));
                continue;
            }
            try {
                // Outside the graph first: uploads, scratch growth and any synchronization happen here.
                for (const linear_weight& w : ws) be->linear(x, m, w, y);
                NIBBLE_CUDA_CHECK(cudaStreamSynchronize(be->stream()));
                r.seconds = linear_bench_time_rotated(copies, reps, be->stream(),
                                                      [&](int c) { be->linear(x, m, ws[size_t(c)], y); });
                r.ok = true;
            } catch (const std::exception& e) {
                r.error = e.what();
            }
            out.push_back(std::move(r));
        }
    }
}

}  // namespace

std::vector<linear_bench_result> linear_bench_run(int64_t n, int64_t k, const std::vector<int64_t>& batches,
                                                  const std::vector<linear_bench_kernel>& kernels, int reps,
                                                  size_t l2_bytes) {
    if (n < 1 || k < 32 || k % 32 != 0)
        fail("linear bench: W [{}, {}] needs n >= 1 and k a positive multiple of 32", n, k);
    if (batches.empty()) fail("linear bench: no batch sizes");
    for (int64_t m : batches)
        if (m < 1) fail("linear bench: batch {} is not >= 1", m);
    if (reps < 1) fail("linear bench: reps {} is not >= 1", reps);
    NIBBLE_CUDA_CHECK(cudaSetDevice(0));
    auto wanted = [&](linear_bench_kernel kk) {
        return std::find(kernels.begin(), kernels.end(), kk) != kernels.end();
    };
    std::vector<std::vector<linear_bench_result>> by_kernel(linear_bench_kernel_count);
    for (weight_format f : {weight_format_nvfp4, weight_format_fp8, weight_format_dense}) {
        std::vector<nibble_variant> vars;
        for (const nibble_variant& v : k_variants)
            if (v.format == f && wanted(v.kernel)) vars.push_back(v);
        if (vars.empty()) continue;
        std::vector<linear_bench_result> rows;
        run_format(f, vars, n, k, batches, reps, l2_bytes, rows);
        for (linear_bench_result& r : rows) by_kernel[r.kernel].push_back(std::move(r));
    }
    for (bool fp8 : {false, true}) {
        const linear_bench_kernel kk = fp8 ? linear_bench_cublaslt_fp8 : linear_bench_cublaslt_bf16;
        if (wanted(kk)) linear_bench_cublaslt(fp8, n, k, batches, reps, l2_bytes, by_kernel[kk]);
    }
    std::vector<linear_bench_result> out;
    for (size_t i = 0; i < kernels.size(); ++i) {
        if (std::find(kernels.begin(), kernels.begin() + i, kernels[i]) != kernels.begin() + i) continue;
        for (linear_bench_result& r : by_kernel[kernels[i]]) out.push_back(std::move(r));
    }
    return out;
}

}  // namespace nibble
