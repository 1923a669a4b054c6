// nibble bench --kernels: the decode-linear kernels, nibble's own (cuda_backend::linear) and the
// cuBLASLt BF16 and FP8 references, on given weight shapes and batches, in one run, each against the
// device-to-device copy bandwidth measured in the same run (cuda/linear_bench.h states the method).
//
// Shapes are n x k of W [n, k] (n outputs, k inputs; y[m, n] = x[m, k] · Wᵀ). Constraints, checked before
// anything touches the GPU: n >= 1, k a positive multiple of 32 (NVFP4 blocks of 16 codes read 32 at a
// time; FP8 tensor-core rows of 16 bytes), n · k <= 2^31; batches 1..1024; reps 1..10000.
// --formats picks nibble's formats (nvfp4: W4A16 and W4A4; fp8: per-channel W8A16 and dynamic per-token
// W8A8; bf16: dense); the cuBLASLt BF16 and FP8 rows always run, as the references of the speed-ups.
// Without a CUDA build or without a GPU it fails with "needs a CUDA build and GPU".
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/bench_util.h"
#include "cli/commands.h"
#include "core/error.h"
#include "cuda/linear_bench.h"
#ifdef NIBBLE_HAVE_CUDA
#include "cuda/device.h"
#endif

namespace nibble {

namespace {

constexpr const char* k_usage =
    "nibble bench --kernels [--shapes NxK[,NxK...]] [--batch M[,M...]] [--formats nvfp4,fp8,bf16] [--reps N] "
    "[--json]";
constexpr const char* k_default_shapes = "4096x4096,6144x4096,4096x12288,24576x4096,151936x4096";
constexpr int64_t k_max_batch = 1024;
constexpr int64_t k_max_elements = int64_t(1) << 31;

struct weight_shape {
    int64_t n = 0, k = 0;
};

std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (true) {
        const size_t comma = s.find(',', pos);
        out.push_back(s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
        if (comma == std::string::npos) return out;
        pos = comma + 1;
    }
}

std::optional<int64_t> parse_positive(const std::string& s) {
    if (s.empty() || s.size() > 9 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    return std::stoll(s);
}

std::vector<weight_shape> parse_shapes(const std::string& list) {
    std::vector<weight_shape> out;
    for (const std::string& part : split_commas(list)) {
        const size_t x = part.find_first_of("xX");
        const auto n = x == std::string::npos ? std::nullopt : parse_positive(part.substr(0, x));
        const auto k = x == std::string::npos ? std::nullopt : parse_positive(part.substr(x + 1));
        if (!n || !k)
            fail("--shapes: '{}' is not NxK (n outputs x k inputs of W [n, k], e.g. 4096x12288)", part);
        if (*n < 1) fail("--shapes: '{}': n = {} must be at least 1", part, *n);
        if (*k < 32 || *k % 32 != 0)
            fail(
                "--shapes: '{}': k = {} must be a positive multiple of 32 (k is the input size of W [n, k]; "
                "the "
                "NVFP4 and FP8 kernels read k in blocks of 32 values)",
                part, *k);
        if (*n * *k > k_max_elements) fail("--shapes: '{}': n x k must be at most 2^31 elements", part);
        out.push_back({*n, *k});
    }
    return out;
}

std::vector<int64_t> parse_batches(const std::string& list) {
    std::vector<int64_t> out = parse_int_list(list, "--batch");
    for (int64_t m : out)
        if (m < 1 || m > k_max_batch) fail("--batch: m = {} must be in 1..{}", m, k_max_batch);
    return out;
}

std::vector<linear_bench_kernel> parse_kernels(const std::string& formats) {
    std::vector<linear_bench_kernel> out;
    auto add = [&](linear_bench_kernel k) {
        if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
    };
    for (const std::string& f : split_commas(formats)) {
        if (f == "nvfp4") {
            add(linear_bench_nibble_nvfp4_w4a16);
            add(linear_bench_nibble_nvfp4_w4a4);
        } else if (f == "fp8") {
            add(linear_bench_nibble_fp8_w8a16);
            add(linear_bench_nibble_fp8_w8a8);
        } else if (f == "bf16") {
            add(linear_bench_nibble_bf16);
        } else {
            fail("--formats: unknown format '{}' (nvfp4, fp8, bf16)", f);
        }
    }
    add(linear_bench_cublaslt_bf16);
    add(linear_bench_cublaslt_fp8);
    return out;
}

#ifdef NIBBLE_HAVE_CUDA

// Column headers of the summary table.
const char* short_name(linear_bench_kernel k) {
    switch (k) {
        case linear_bench_nibble_nvfp4_w4a16:
            return "nvfp4";
        case linear_bench_nibble_nvfp4_w4a4:
            return "nvfp4 w4a4";
        case linear_bench_nibble_fp8_w8a16:
            return "fp8 w8a16";
        case linear_bench_nibble_fp8_w8a8:
            return "fp8 w8a8";
        case linear_bench_nibble_bf16:
            return "bf16";
        case linear_bench_cublaslt_bf16:
            return "cuBLASLt bf16";
        default:
            return "cuBLASLt fp8";
    }
}

struct report_row {
    linear_bench_result r;
    double gbps = 0, pct_copy = 0;
    std::optional<double> vs_bf16, vs_fp8;  // nibble's rows: cuBLASLt time / this time
};

std::string shape_name(int64_t n, int64_t k) {
    return std::to_string(n) + "x" + std::to_string(k);
}

// The rows of one shape in display order (batch, then kernel order), with their derived figures.
std::vector<report_row> derive(std::vector<linear_bench_result> results,
                               std::span<const linear_bench_kernel> order, double copy_gbps) {
    auto rank = [&](linear_bench_kernel k) {
        return std::find(order.begin(), order.end(), k) - order.begin();
    };
    std::stable_sort(results.begin(), results.end(),
                     [&](const linear_bench_result& a, const linear_bench_result& b) {
                         return a.m != b.m ? a.m < b.m : rank(a.kernel) < rank(b.kernel);
                     });
    auto reference = [&](int64_t m, linear_bench_kernel k) -> std::optional<double> {
        for (const linear_bench_result& r : results)
            if (r.m == m && r.kernel == k && r.ok) return r.seconds;
        return std::nullopt;
    };
    std::vector<report_row> out;
    for (linear_bench_result& r : results) {
        report_row row;
        if (r.ok) {
            row.gbps = r.bytes / r.seconds / 1e9;
            row.pct_copy = 100.0 * row.gbps / copy_gbps;
            if (linear_bench_is_nibble(r.kernel)) {
                if (auto t = reference(r.m, linear_bench_cublaslt_bf16)) row.vs_bf16 = *t / r.seconds;
                if (auto t = reference(r.m, linear_bench_cublaslt_fp8)) row.vs_fp8 = *t / r.seconds;
            }
        }
        row.r = std::move(r);
        out.push_back(std::move(row));
    }
    return out;
}

std::string speedup_text(const std::optional<double>& s) {
    char buf[32];
    if (!s) return "-";
    std::snprintf(buf, sizeof(buf), "%.2fx", *s);
    return buf;
}

void print_header() {
    std::printf("%-14s %5s  %-19s %9s %8s %7s %8s %8s %7s\n", "n x k", "m", "kernel", "time us", "GB/s",
                "% copy", "vs bf16", "vs fp8", "copies");
}

void print_row(const report_row& row) {
    const linear_bench_result& r = row.r;
    const std::string shape = shape_name(r.n, r.k);
    if (!r.ok) {
        std::printf("%-14s %5lld  %-19s failed: %s\n", shape.c_str(), (long long)r.m,
                    linear_bench_kernel_name(r.kernel), r.error.c_str());
        return;
    }
    std::printf("%-14s %5lld  %-19s %9.2f %8.0f %6.1f%% %8s %8s %7d%s%s\n", shape.c_str(), (long long)r.m,
                linear_bench_kernel_name(r.kernel), r.seconds * 1e6, row.gbps, row.pct_copy,
                speedup_text(row.vs_bf16).c_str(), speedup_text(row.vs_fp8).c_str(), r.copies,
                r.note.empty() ? "" : "  note: ", r.note.c_str());
}

// One line per shape and batch: % of the copy bandwidth of every kernel.
void print_summary(const std::vector<report_row>& rows, std::span<const linear_bench_kernel> order,
                   const std::string& device, double copy_gbps) {
    std::printf("\n%% of the copy bandwidth (%.0f GB/s), %s:\n", copy_gbps, device.c_str());
    std::printf("%-14s %5s", "n x k", "m");
    for (linear_bench_kernel k : order) std::printf(" %13s", short_name(k));
    std::printf("\n");
    bool any_note = false;
    for (size_t i = 0; i < rows.size();) {
        const int64_t n = rows[i].r.n, k = rows[i].r.k, m = rows[i].r.m;
        std::printf("%-14s %5lld", shape_name(n, k).c_str(), (long long)m);
        size_t j = i;
        for (linear_bench_kernel kk : order) {
            const report_row* hit = nullptr;
            for (j = i; j < rows.size() && rows[j].r.n == n && rows[j].r.k == k && rows[j].r.m == m; ++j)
                if (rows[j].r.kernel == kk) hit = &rows[j];
            if (hit && hit->r.ok && !hit->r.note.empty())
                std::printf(" %11.1f%%*", hit->pct_copy);
            else if (hit && hit->r.ok)
                std::printf(" %12.1f%%", hit->pct_copy);
            else
                std::printf(" %13s", hit ? "failed" : "-");
            any_note = any_note || (hit && hit->r.ok && !hit->r.note.empty());
        }
        std::printf("\n");
        i = j;
    }
    if (any_note)
        std::printf("* not the nominal configuration (padded batch, FP32 output, ...): see the row's note\n");
}

nlohmann::json row_json(const report_row& row) {
    const linear_bench_result& r = row.r;
    nlohmann::json j = {{"n", r.n},
                        {"k", r.k},
                        {"m", r.m},
                        {"kernel", linear_bench_kernel_name(r.kernel)},
                        {"provider", linear_bench_is_nibble(r.kernel) ? "nibble" : "cublaslt"},
                        {"format", linear_bench_kernel_format(r.kernel)},
                        {"ok", r.ok},
                        {"bytes", r.bytes},
                        {"copies", r.copies}};
    if (!r.ok) {
        j["error"] = r.error;
        return j;
    }
    if (!r.note.empty()) j["note"] = r.note;
    j["us"] = r.seconds * 1e6;
    j["gbps"] = row.gbps;
    j["pct_copy"] = row.pct_copy;
    if (linear_bench_is_nibble(r.kernel)) {
        j["speedup_vs_cublaslt_bf16"] = row.vs_bf16 ? nlohmann::json(*row.vs_bf16) : nlohmann::json(nullptr);
        j["speedup_vs_cublaslt_fp8"] = row.vs_fp8 ? nlohmann::json(*row.vs_fp8) : nlohmann::json(nullptr);
    }
    return j;
}

int run_kernels(const std::vector<weight_shape>& shapes, const std::vector<int64_t>& batches,
                const std::vector<linear_bench_kernel>& kernels, int reps, bool json) {
    const cuda_device_info dev = cuda_device_query(0);
    const double copy_gbps = cuda_copy_bandwidth_gbps();
    const std::string date = utc_date();
    const std::string method =
        "CUDA-graph replays of one launch per weight copy, copies rotated past 4x L2, median of " +
        std::to_string(reps) + " replays; bytes = weight as stored + scales + x + y in each kernel's types";
    // The tensor-core decode linear's activations for weight-only layers (linear_mma.h), for A/B runs of
    // the same binary.
    const char* split = std::getenv("NIBBLE_MMA_SPLIT");
    const std::string mma_mode =
        split && split[0] == '1'
            ? "tensor-core linear (m 3-16): weight-only activations as FP16 hi + lo (NIBBLE_MMA_SPLIT=1)"
            : "tensor-core linear (m 3-16): weight-only activations as FP16";
    if (!json) {
        std::printf("%s, %d SMs, L2 %.0f MiB, %s\n", dev.name.c_str(), dev.n_sms,
                    double(dev.l2_bytes) / 1048576.0, date.c_str());
        std::printf("device-to-device copy, 1 GiB, read + write, median: %.0f GB/s (the roofline)\n",
                    copy_gbps);
        std::printf("%s\n%s\n\n", method.c_str(), mma_mode.c_str());
        print_header();
        std::fflush(stdout);
    }
    std::vector<report_row> all;
    for (const weight_shape& s : shapes) {
        std::vector<report_row> rows =
            derive(linear_bench_run(s.n, s.k, batches, kernels, reps, dev.l2_bytes), kernels, copy_gbps);
        if (!json) {
            for (const report_row& row : rows) print_row(row);
            std::fflush(stdout);
        }
        for (report_row& row : rows) all.push_back(std::move(row));
    }
    if (json) {
        nlohmann::json j = {{"device",
                             {{"name", dev.name},
                              {"sm", std::to_string(dev.sm_major) + "." + std::to_string(dev.sm_minor)},
                              {"n_sms", dev.n_sms},
                              {"l2_bytes", dev.l2_bytes},
                              {"memory_bytes", dev.memory_bytes}}},
                            {"date", date},
                            {"copy_bandwidth_gbps", copy_gbps},
                            {"reps", reps},
                            {"method", method},
                            {"mma_mode", mma_mode},
                            {"rows", nlohmann::json::array()}};
        for (const report_row& row : all) j["rows"].push_back(row_json(row));
        std::printf("%s\n", j.dump(2).c_str());
    } else {
        print_summary(all, kernels, dev.name, copy_gbps);
    }
    return 0;
}

#endif

}  // namespace

int cmd_bench_kernels(command_args args) {
    arg_parser p(args, {"--shapes", "--batch", "--formats", "--reps"},
                 {"--kernels", "--json", "--help", "-h"});
    if (p.has("--help") || p.has("-h")) {
        std::printf(
            "usage: %s\n\n"
            "nibble's decode-linear layers (cuda_backend::linear) and cuBLASLt BF16 / FP8 on weights W [n, "
            "k]\n"
            "(n outputs x k inputs; k a multiple of 32), each against the device-to-device copy bandwidth.\n"
            "  --shapes   default %s\n"
            "  --batch    batch sizes m (default 1,4,16)\n"
            "  --formats  nibble's formats (default nvfp4,fp8,bf16); cuBLASLt BF16 and FP8 always run\n"
            "  --reps     graph replays per timing, the median is reported (default 25)\n"
            "  --json     one JSON object instead of the table\n",
            k_usage, k_default_shapes);
        return 0;
    }
    p.expect_positionals(0, 0, k_usage);
    const std::vector<weight_shape> shapes = parse_shapes(p.get_or("--shapes", k_default_shapes));
    const std::vector<int64_t> batches = parse_batches(p.get_or("--batch", "1,4,16"));
    const std::vector<linear_bench_kernel> kernels = parse_kernels(p.get_or("--formats", "nvfp4,fp8,bf16"));
    const int64_t reps = p.get_int("--reps", 25);
    if (reps < 1 || reps > 10000) fail("--reps: {} must be in 1..10000", reps);
#ifdef NIBBLE_HAVE_CUDA
    if (cuda_device_count() == 0)
        fail("nibble bench --kernels needs a CUDA build and GPU: no CUDA device found");
    return run_kernels(shapes, batches, kernels, int(reps), p.has("--json"));
#else
    fail("nibble bench --kernels needs a CUDA build and GPU: this binary was built without CUDA");
#endif
}

}  // namespace nibble
