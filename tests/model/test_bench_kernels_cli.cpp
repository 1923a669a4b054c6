// nibble bench --kernels through the CLI: argument errors name the problem on every machine; without a
// GPU (or a CUDA build) it fails with the clear no-GPU message; with a GPU a small run reports every
// kernel against the copy bandwidth (nibble's rows must all succeed).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "test_util.h"
#ifdef NIBBLE_HAVE_CUDA
#include "cuda/device.h"
#endif

using json = nlohmann::json;

namespace {

bool have_gpu() {
#ifdef NIBBLE_HAVE_CUDA
    return nibble::cuda_device_count() > 0;
#else
    return false;
#endif
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

}  // namespace

TEST(bench_kernels_cli, argument_errors_name_the_problem) {
    auto r = nibble::test::run_nibble("bench --kernels --shapes 12x7");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.out, "12x7") && contains(r.out, "multiple of 32")) << r.out;
    r = nibble::test::run_nibble("bench --kernels --shapes 4096x4096,4096");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.out, "'4096'") && contains(r.out, "NxK")) << r.out;
    r = nibble::test::run_nibble("bench --kernels --shapes 0x64");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.out, "n = 0")) << r.out;
    r = nibble::test::run_nibble("bench --kernels --formats nvfp4,int4");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.out, "'int4'")) << r.out;
    r = nibble::test::run_nibble("bench --kernels --batch 1,0");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.out, "--batch")) << r.out;
    r = nibble::test::run_nibble("bench --kernels --reps 0");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.out, "--reps")) << r.out;
}

TEST(bench_kernels_cli, without_a_gpu_fails_clearly) {
    if (have_gpu()) GTEST_SKIP() << "a CUDA device is present";
    auto r = nibble::test::run_nibble("bench --kernels --shapes 256x512 --batch 1");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.out, "needs a CUDA build and GPU")) << r.out;
}

TEST(bench_kernels_cli, small_run_reports_every_kernel_against_the_copy_bandwidth) {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    auto r =
        nibble::test::run_nibble("bench --kernels --shapes 256x512,384x1024 --batch 1,4 --reps 3 --json");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const json j = json::parse(r.out);
    EXPECT_FALSE(j["device"]["name"].get<std::string>().empty());
    EXPECT_EQ(j["date"].get<std::string>().size(), 10u);
    const double copy = j["copy_bandwidth_gbps"].get<double>();
    EXPECT_GT(copy, 0.0);
    // 2 shapes x 2 batches x (5 nibble layers + cuBLASLt BF16 + FP8).
    ASSERT_EQ(j["rows"].size(), 28u) << j.dump(2);
    for (const json& row : j["rows"]) {
        const bool nibble = row["provider"] == "nibble";
        if (!nibble && !row["ok"].get<bool>()) continue;  // a reference cuBLASLt rejects says why
        ASSERT_TRUE(row["ok"].get<bool>()) << row.dump();
        EXPECT_GT(row["us"].get<double>(), 0.0) << row.dump();
        EXPECT_NEAR(row["pct_copy"].get<double>(), 100.0 * row["gbps"].get<double>() / copy, 1e-6)
            << row.dump();
        EXPECT_GE(row["copies"].get<int>(), 2) << row.dump();
        if (nibble) {
            EXPECT_TRUE(row.contains("speedup_vs_cublaslt_bf16")) << row.dump();
        }
    }
}
