// nibble quantize IN OUT --scheme nvfp4|nvfp4a16|fp8-dynamic|fp8-block|mxfp4a16
//                 [--format compressed-tensors|modelopt] [--calib TEXTFILE [--calib-tokens N]]
// Reads a BF16/F16/F32 Hugging Face checkpoint and writes one that vLLM loads unchanged.
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/args.h"
#include "cli/staged_dir.h"
#include "core/error.h"
#include "core/formats.h"
#include "cpu/cpu_backend.h"
#include "engine/runner.h"
#include "loader/model_loader.h"
#include "loader/model_writer.h"

namespace nibble {

namespace {

const char* k_usage =
    "nibble quantize IN OUT --scheme nvfp4|nvfp4a16|fp8-dynamic|fp8-block|mxfp4a16\n"
    "                [--format compressed-tensors|modelopt] [--calib TEXTFILE [--calib-tokens N]] "
    "[--max-shard-size GB]";

void read_floats(const tensor_view& t, std::vector<float>& out) {
    out.resize(size_t(t.numel()));
    const int64_t n = t.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) out[size_t(i)] = load_float(t.type, t.data, size_t(i));
}

// The source checkpoint's tensors, converted on the fly.
class checkpoint_source : public model_source {
  public:
    explicit checkpoint_source(const checkpoint& ck) : ck_(ck) {}

    void plain(const plain_desc& d, dtype t, const byte_sink& sink) override {
        const tensor_view& v = ck_.get(d.name);
        if (v.type == t) {
            sink(v.data, v.n_bytes);  // unchanged bytes
            return;
        }
        std::vector<float> f;
        read_floats(v, f);
        out_write_floats(t, f.data(), f.size(), sink);
    }
    void linear(const linear_desc& d, std::vector<float>& w, std::vector<float>& bias) override {
        read_floats(ck_.get(d.name + ".weight"), w);
        bias.clear();
        if (d.bias) read_floats(ck_.get(d.name + ".bias"), bias);
    }
    float input_amax(const linear_desc& d) override {
        auto it = input_amax_.find(d.name);
        if (it != input_amax_.end() && it->second > 0) return it->second;
        // An expert no calibration token was routed to: the largest input seen by the same projection of
        // the layer's other experts, which covers the tokens routed to it later.
        float best = 0;
        if (d.expert >= 0) {
            std::string prefix = d.name.substr(0, d.name.find(".experts.") + 1);
            std::string proj = d.name.substr(d.name.rfind('.'));
            for (const auto& [name, a] : input_amax_)
                if (name.starts_with(prefix) && name.ends_with(proj)) best = std::max(best, a);
        }
        if (best > 0) return best;
        fail("module {}: no calibration statistics (the calibration text never reached it)", d.name);
    }
    std::map<std::string, float> input_amax_;  // module -> absmax of its inputs over the calibration text

  private:
    const checkpoint& ck_;
};

// Runs the calibration text through the source model on the CPU and records each linear layer's input
// absmax (llm-compressor's static_minmax observer for W4A4 input global scales).
std::map<std::string, float> calibrate(const std::string& dir, const std::string& text_file,
                                       int64_t max_tokens) {
    runner_options opt;
    opt.max_ctx = 512;
    opt.max_step = 512;
    model_runner r(dir, opt);
    std::map<std::string, float> amax;
    auto* cpu = dynamic_cast<cpu_backend*>(&r.device());
    if (!cpu) fail("calibration runs on the CPU backend");
    cpu->set_input_observer([&](const linear_weight& w, float a) {
        float& m = amax[w.name];
        m = std::max(m, a);
    });
    std::vector<int32_t> ids = r.tok().encode(read_text_file(text_file));
    if (int64_t(ids.size()) > max_tokens) ids.resize(size_t(max_tokens));
    if (ids.empty()) fail("--calib {}: no tokens", text_file);
    progress_bar bar("calibrate", ids.size());
    for (size_t i = 0; i < ids.size(); i += size_t(opt.max_ctx)) {  // chunks of 512 from an empty context
        size_t n = std::min(ids.size() - i, size_t(opt.max_ctx));
        r.prefill(0, std::span<const int32_t>(ids.data() + i, n), 0);
        bar.update(i + n);
    }
    bar.finish();
    return amax;
}

}  // namespace

int cmd_quantize(command_args args) {
    arg_parser a(args, {"--scheme", "--format", "--calib", "--calib-tokens", "--max-shard-size"}, {"--help"});
    if (a.has("--help")) {
        std::printf("usage: %s\n", k_usage);
        return 0;
    }
    a.expect_positionals(2, 2, k_usage);
    const std::string in = a.positionals()[0], out_path = a.positionals()[1];
    auto scheme = a.get("--scheme");
    if (!scheme) fail("--scheme is required; usage: {}", k_usage);
    out_config oc = out_config_parse(*scheme, a.get_or("--format", "compressed-tensors"), false);
    if (oc.scheme == out_scheme_nvfp4 && !a.get("--calib"))
        fail(
            "--scheme nvfp4 (W4A4) needs activation statistics for its input global scales: pass --calib "
            "TEXTFILE, or use --scheme nvfp4a16 (weight-only)");

    std::string cfg_path = in + "/config.json";
    nlohmann::json cj = nlohmann::json::parse(read_text_file(cfg_path), nullptr, false);
    if (cj.is_discarded()) fail("{}: not valid JSON", cfg_path);
    model_config c = model_config_parse(cj, cfg_path);
    quant_config existing = quant_config_load(in, cj);
    if (existing.method != quant_method_none)
        fail("{} is already quantized ({}); nibble quantize reads BF16/F16/F32 checkpoints", in,
             existing.describe());
    checkpoint ck(in);
    // Validates every tensor's presence, dtype and shape before anything is written.
    model_weights w = model_weights_map(ck, c, existing);
    oc.dense_dtype = w.embed.type;
    // K must fit the block of the scheme: out_linear_entries refuses, naming the module.
    for (const linear_desc& d : model_layout_of(c).linears) out_linear_entries(oc, d);

    std::set<std::string> known;
    model_layout layout = model_layout_of(c);
    for (const plain_desc& d : layout.plains) known.insert(d.name);
    for (const linear_desc& d : layout.linears) {
        known.insert(d.name + ".weight");
        known.insert(d.name + ".bias");
    }
    if (c.tie_word_embeddings) known.insert("lm_head.weight");
    std::vector<std::string> skipped;
    for (const auto& [name, t] : ck.tensors())
        if (!known.count(name)) skipped.push_back(name);

    staged_dir out(out_path);
    checkpoint_source src(ck);
    if (auto calib = a.get("--calib")) {
        if (oc.scheme != out_scheme_nvfp4)
            fail("--calib is only used by --scheme nvfp4 (W4A4 input scales); {} needs none",
                 out_scheme_name(oc.scheme));
        src.input_amax_ = calibrate(in, *calib, a.get_int("--calib-tokens", 16384));
    }
    model_write_options opt;
    opt.progress_label = "quantize " + out_scheme_name(oc.scheme);
    opt.max_shard_bytes = uint64_t(a.get_double("--max-shard-size", 5.0) * 1e9);
    uint64_t bytes = model_write(out.path(), c, oc, src, opt);

    cj["quantization_config"] = out_quantization_config(oc);
    write_text_file(out.path() + "/config.json", cj.dump(2) + "\n");
    if (oc.format == out_format_modelopt)
        write_text_file(out.path() + "/hf_quant_config.json", out_hf_quant_config(oc).dump(2) + "\n");
    copy_model_side_files(in, out.path());
    out.commit();
    std::printf("wrote %s: %s %s (%s), %.3f GB from %.3f GB\n", out_path.c_str(), model_arch_name(c.arch),
                out_scheme_name(oc.scheme).c_str(),
                oc.format == out_format_ct ? "compressed-tensors" : "modelopt", bytes / 1e9,
                ck.total_bytes() / 1e9);
    if (!skipped.empty())
        std::printf("note: %zu tensor(s) that are not model weights were not copied (first: %s)\n",
                    skipped.size(), skipped[0].c_str());
    return 0;
}

}  // namespace nibble
