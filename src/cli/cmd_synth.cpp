// nibble synth --config CONFIG.json --scheme SCHEME [--format F] [--seed N] [--tokenizer DIR] [--no-data] OUT
// A random-weight checkpoint with exactly the tensor names and shapes of the config, in any scheme,
// streamed to disk one module at a time (for speed tests: real weights cannot be downloaded here).
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/staged_dir.h"
#include "core/error.h"
#include "loader/checkpoint.h"
#include "loader/model_writer.h"

namespace nibble {

namespace {

const char* k_usage =
    "nibble synth --config CONFIG.json --scheme bf16|nvfp4|nvfp4a16|fp8-dynamic|fp8-block|mxfp4a16\n"
    "             [--format compressed-tensors|modelopt] [--seed N] [--tokenizer DIR] [--no-data] OUT";

// Weights uniform in [-a, a] with a = sqrt(3)·0.02 (std 0.02, as transformers initializes), norms 1.
// Each tensor has its own stream (seed ^ hash(name)), so the output does not depend on write order.
class random_source : public model_source {
  public:
    explicit random_source(uint64_t seed) : seed_(seed) {}

    void plain(const plain_desc& d, dtype t, const byte_sink& sink) override {
        std::vector<float> v(size_t(numel(d.shape)));
        if (d.role == plain_role_norm)
            std::fill(v.begin(), v.end(), 1.0f);
        else
            fill(d.name, v, 0.0346f);
        out_write_floats(t, v.data(), v.size(), sink);
    }
    void linear(const linear_desc& d, std::vector<float>& w, std::vector<float>& bias) override {
        w.resize(size_t(d.n * d.k));
        fill(d.name, w, 0.0346f);
        bias.assign(d.bias ? size_t(d.n) : 0, 0.0f);
        if (d.bias) fill(d.name + ".bias", bias, 0.01f);
    }
    float input_amax(const linear_desc&) override { return 16.0f; }

  private:
    static int64_t numel(const std::vector<int64_t>& s) {
        int64_t n = 1;
        for (int64_t x : s) n *= x;
        return n;
    }
    void fill(const std::string& name, std::vector<float>& v, float a) const {
        uint64_t h = seed_ ^ 0x9E3779B97F4A7C15ull;
        for (char ch : name) h = (h ^ uint8_t(ch)) * 0x100000001B3ull;
        const int64_t n = int64_t(v.size()), chunk = 1 << 16;
#pragma omp parallel for schedule(static)
        for (int64_t c0 = 0; c0 < n; c0 += chunk) {
            uint64_t s = h ^ (uint64_t(c0) * 0xD1B54A32D192ED03ull) ^ 1;
            for (int64_t i = c0; i < std::min(n, c0 + chunk); ++i) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                v[size_t(i)] = (float(s >> 40) / float(1 << 24) * 2.0f - 1.0f) * a;
            }
        }
    }
    uint64_t seed_;
};

}  // namespace

int cmd_synth(command_args args) {
    arg_parser a(args, {"--config", "--scheme", "--format", "--seed", "--tokenizer"},
                 {"--no-data", "--help"});
    if (a.has("--help")) {
        std::printf("usage: %s\n", k_usage);
        return 0;
    }
    a.expect_positionals(1, 1, k_usage);
    auto config_path = a.get("--config");
    if (!config_path) fail("--config is required; usage: {}", k_usage);
    out_config oc =
        out_config_parse(a.get_or("--scheme", "nvfp4a16"), a.get_or("--format", "compressed-tensors"), true);

    nlohmann::json cj = nlohmann::json::parse(read_text_file(*config_path), nullptr, false);
    if (cj.is_discarded()) fail("{}: not valid JSON", *config_path);
    model_config c = model_config_parse(cj, *config_path);
    if (cj.contains("quantization_config")) fail("{}: already has a quantization_config", *config_path);
    oc.dense_dtype = c.weight_dtype == dtype_f32 || c.weight_dtype == dtype_f16 ? c.weight_dtype : dtype_bf16;

    staged_dir out(a.positionals()[0]);
    random_source src(uint64_t(a.get_int("--seed", 0)));
    model_write_options opt;
    opt.no_data = a.has("--no-data");
    opt.progress_label = "synth " + out_scheme_name(oc.scheme);
    uint64_t bytes = model_write(out.path(), c, oc, src, opt);

    nlohmann::json qc = out_quantization_config(oc);
    if (!qc.is_null()) cj["quantization_config"] = qc;
    write_text_file(out.path() + "/config.json", cj.dump(2) + "\n");
    if (oc.format == out_format_modelopt && oc.scheme != out_scheme_dense)
        write_text_file(out.path() + "/hf_quant_config.json", out_hf_quant_config(oc).dump(2) + "\n");
    if (auto tok = a.get("--tokenizer")) copy_model_side_files(*tok, out.path());
    out.commit();
    std::printf("wrote %s: %s %s, %.3f GB%s\n", a.positionals()[0].c_str(), model_arch_name(c.arch),
                out_scheme_name(oc.scheme).c_str(), bytes / 1e9,
                opt.no_data ? " (layout only, no data)" : "");
    return 0;
}

}  // namespace nibble
