// nibble bench through the CLI on the bundled model, on the CPU: every figure of --json present and
// consistent (bytes per step = weight bytes + KV of the batch's contexts, figures against the copy
// bandwidth measured in the same run), the table and markdown forms, and errors naming the flag.
// The runs use one OpenMP thread: on a loaded machine a descheduled thread stalls every barrier of a
// parallel run, which makes the figures noisy; one thread keeps them steady (the checks stay the same).
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>

#include "test_util.h"

using json = nlohmann::json;

namespace {

std::string tiny_model() {
    return std::string(NIBBLE_SOURCE_DIR) + "/models/qwen3-tiny";
}

const char* k_small = " --device cpu --prompt-len 16 --gen-len 6 --reps 2";

// OMP_NUM_THREADS=1 for the nibble processes a test starts, restored afterwards.
struct one_thread {
    std::optional<std::string> saved;
    one_thread() {
        if (const char* v = std::getenv("OMP_NUM_THREADS")) saved = v;
        setenv("OMP_NUM_THREADS", "1", 1);
    }
    ~one_thread() {
        if (saved)
            setenv("OMP_NUM_THREADS", saved->c_str(), 1);
        else
            unsetenv("OMP_NUM_THREADS");
    }
};

}  // namespace

TEST(bench_cli, json_figures_are_present_and_consistent) {
    one_thread t;
    auto r = nibble::test::run_nibble("bench --model " + tiny_model() + k_small + " --batch 1,2 --json");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    json j = json::parse(r.out);
    EXPECT_EQ(j["device"], "cpu");
    EXPECT_FALSE(j["device_name"].get<std::string>().empty());
    EXPECT_EQ(j["date"].get<std::string>().size(), 10u);
    EXPECT_EQ(j["model"], tiny_model());
    EXPECT_FALSE(j["scheme"].get<std::string>().empty());
    EXPECT_TRUE(j["weight_formats"].contains("lm_head")) << j["weight_formats"];
    EXPECT_EQ(j["kv_cache_dtype"], "f32");
    EXPECT_EQ(j["prompt_len"], 16);
    EXPECT_EQ(j["gen_len"], 6);

    const double copy = j["copy_bandwidth"]["gbps"].get<double>();
    EXPECT_GT(copy, 0.0);
    EXPECT_GE(j["copy_bandwidth"]["bytes"].get<double>(), 256.0 * 1024 * 1024);
    const double weights = j["weight_bytes_per_token"].get<double>();
    const double kv_pos = j["kv_bytes_per_position"].get<double>();
    EXPECT_GT(weights, 1e6);
    // f32 KV: K and V of 4 layers x 2 KV heads x 64 dims, 4 bytes each.
    EXPECT_EQ(kv_pos, 2.0 * 4 * 2 * 64 * 4);

    const json& p = j["prefill"];
    EXPECT_EQ(p["tokens"], 16);
    EXPECT_EQ(p["seconds"].size(), 2u);
    EXPECT_GT(p["tok_per_s"].get<double>(), 0.0);
    EXPECT_GT(p["gflop_per_s"].get<double>(), 0.0);
    EXPECT_NEAR(p["tok_per_s"].get<double>() * p["median_s"].get<double>(), 16.0, 1e-6);

    ASSERT_EQ(j["decode"].size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
        const json& d = j["decode"][i];
        const double batch = double(i + 1);
        EXPECT_EQ(d["batch"].get<double>(), batch);
        EXPECT_EQ(d["graphs"], true);
        EXPECT_EQ(d["steps_timed"], 4);  // 6 steps, 2 warm-up
        const double ms = d["ms_per_step"].get<double>();
        EXPECT_GT(ms, 0.0);
        EXPECT_LE(d["ms_per_step_min"].get<double>(), ms);
        EXPECT_GE(d["ms_per_step_max"].get<double>(), ms);
        EXPECT_NEAR(d["tok_per_s"].get<double>(), batch * 1e3 / ms, 1e-6 * batch * 1e3 / ms);
        // Timed steps at positions 18..21 read 19..22 positions each: a mean context of 20.5.
        EXPECT_DOUBLE_EQ(d["mean_context"].get<double>(), 20.5);
        const double bytes = weights + batch * 20.5 * kv_pos;
        EXPECT_NEAR(d["bytes_per_step"].get<double>(), bytes, 1.0);
        EXPECT_NEAR(d["kv_bytes_per_step"].get<double>(), batch * 20.5 * kv_pos, 1.0);
        const double gbps = d["achieved_gbps"].get<double>();
        EXPECT_NEAR(gbps, bytes / (ms * 1e-3) / 1e9, 1e-6 * gbps);
        const double pct = d["roofline_pct"].get<double>();
        EXPECT_NEAR(pct, 100.0 * gbps / copy, 1e-6 * pct);
        EXPECT_GT(pct, 0.0);
        EXPECT_LT(pct, 150.0);
        EXPECT_NEAR(d["bound_tok_per_s"].get<double>(), batch * copy * 1e9 / bytes, 1e-3);
        EXPECT_FALSE(d.contains("eager"));
    }
}

TEST(bench_cli, table_compare_eager_and_markdown) {
    one_thread t;
    auto r = nibble::test::run_nibble("bench --model " + tiny_model() + k_small + " --compare-eager");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("roofline:"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("eager ms/step"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("% roofline"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("(1 thread)"), std::string::npos) << r.out;

    r = nibble::test::run_nibble("bench --model " + tiny_model() + k_small + " --eager --markdown");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(
        r.out.find(
            "| GPU | date | model | scheme | batch | tok/s | ms/step | GB/s | % of roofline | graphs |"),
        std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("| qwen3-tiny | "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(" | off |"), std::string::npos) << r.out;
}

TEST(bench_cli, errors_name_the_flag) {
    struct bad_case {
        std::string args, flag;
    };
    const bad_case cases[] = {
        {" --batch 0", "--batch"},
        {" --batch 1,-2", "--batch"},
        {" --batch x", "--batch"},
        {" --prompt-len 4000", "--prompt-len"},
        {" --prompt-len 0", "--prompt-len"},
        {" --gen-len 2", "--gen-len"},
        {" --reps 0", "--reps"},
        {" --device tpu", "--device"},
        {" --kv-cache-dtype int3", "--kv-cache-dtype"},
        {" --json --markdown", "--markdown"},
        {" --eager --compare-eager", "--compare-eager"},
        {" --frobnicate", "--frobnicate"},
    };
    for (const bad_case& c : cases) {
        auto r = nibble::test::run_nibble("bench --model " + tiny_model() + " --device cpu" + c.args);
        EXPECT_NE(r.exit_code, 0) << c.args << ": " << r.out;
        EXPECT_NE(r.out.find(c.flag), std::string::npos) << c.args << ": " << r.out;
    }
}
