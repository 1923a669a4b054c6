#include "loader/checkpoint_writer.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/formats.h"
#include "core/quant.h"

namespace nibble {

namespace {

using json = nlohmann::json;

bool is_nvfp4(out_scheme s) {
    return s == out_scheme_nvfp4 || s == out_scheme_nvfp4a16;
}
bool is_fp8(out_scheme s) {
    return s == out_scheme_fp8_dynamic || s == out_scheme_fp8_block;
}

int64_t cdiv(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

json ct_args(int bits, const char* strategy, json group, json dynamic, const char* observer,
             json scale_dtype) {
    return json{{"actorder", nullptr},
                {"block_structure", nullptr},
                {"dynamic", dynamic},
                {"group_size", group},
                {"num_bits", bits},
                {"observer", observer},
                {"observer_kwargs", json::object()},
                {"scale_dtype", scale_dtype},
                {"strategy", strategy},
                {"symmetric", true},
                {"type", "float"},
                {"zp_dtype", nullptr}};
}

const char* torch_dtype_name(dtype t) {
    switch (t) {
        case dtype_bf16:
            return "torch.bfloat16";
        case dtype_f16:
            return "torch.float16";
        default:
            return "torch.float32";
    }
}

const char* modelopt_algo(const out_config& oc) {
    switch (oc.scheme) {
        case out_scheme_nvfp4:
            return "NVFP4";
        case out_scheme_nvfp4a16:
            return "W4A16_NVFP4";
        case out_scheme_fp8_dynamic:
            return "FP8_PER_CHANNEL_PER_TOKEN";
        case out_scheme_fp8_block:
            return "FP8_PB_WO";
        default:
            fail("no ModelOpt algorithm for scheme {}", out_scheme_name(oc.scheme));
    }
}

}  // namespace

std::string out_scheme_name(out_scheme s) {
    switch (s) {
        case out_scheme_dense:
            return "bf16";
        case out_scheme_nvfp4:
            return "nvfp4";
        case out_scheme_nvfp4a16:
            return "nvfp4a16";
        case out_scheme_fp8_dynamic:
            return "fp8-dynamic";
        case out_scheme_fp8_block:
            return "fp8-block";
        case out_scheme_mxfp4a16:
            return "mxfp4a16";
    }
    return "?";
}

out_config out_config_parse(const std::string& scheme, const std::string& format, bool allow_dense) {
    out_config oc;
    if (scheme == "nvfp4")
        oc.scheme = out_scheme_nvfp4;
    else if (scheme == "nvfp4a16")
        oc.scheme = out_scheme_nvfp4a16;
    else if (scheme == "fp8-dynamic")
        oc.scheme = out_scheme_fp8_dynamic;
    else if (scheme == "fp8-block")
        oc.scheme = out_scheme_fp8_block;
    else if (scheme == "mxfp4a16")
        oc.scheme = out_scheme_mxfp4a16;
    else if (allow_dense && (scheme == "bf16" || scheme == "none"))
        oc.scheme = out_scheme_dense;
    else
        fail("--scheme {}: unknown scheme (nvfp4, nvfp4a16, fp8-dynamic, fp8-block, mxfp4a16{})", scheme,
             allow_dense ? ", bf16" : "");
    if (format == "compressed-tensors" || format == "ct")
        oc.format = out_format_ct;
    else if (format == "modelopt")
        oc.format = out_format_modelopt;
    else
        fail("--format {}: unknown format (compressed-tensors, modelopt)", format);
    if (oc.format == out_format_modelopt && oc.scheme == out_scheme_mxfp4a16)
        fail(
            "--scheme mxfp4a16 --format modelopt: ModelOpt has no weight-only MXFP4 export; use "
            "compressed-tensors");
    return oc;
}

bool out_quantizes(const out_config& oc, const linear_desc& d) {
    return oc.scheme != out_scheme_dense && !linear_role_kept_dense(d.role);
}

std::string out_fusion_group(const linear_desc& d) {
    auto parent = [&](const char* suffix) { return d.name.substr(0, d.name.rfind('.') + 1) + suffix; };
    switch (d.role) {
        case linear_role_attn_q:
        case linear_role_attn_k:
        case linear_role_attn_v:
            return parent("qkv");
        case linear_role_mlp_gate:
        case linear_role_mlp_up:
        case linear_role_expert_gate:
        case linear_role_expert_up:
            return parent("gate_up");
        default:
            return d.name;
    }
}

std::vector<safetensors_entry> out_linear_entries(const out_config& oc, const linear_desc& d) {
    const std::string& p = d.name;
    const bool ct = oc.format == out_format_ct;
    std::vector<safetensors_entry> e;
    auto add = [&](std::string suffix, dtype t, std::vector<int64_t> shape) {
        e.push_back({p + "." + suffix, t, std::move(shape), 0, 0});
    };
    if (!out_quantizes(oc, d)) {
        add("weight", oc.dense_dtype, {d.n, d.k});
    } else if (is_nvfp4(oc.scheme)) {
        if (d.k % nvfp4_block)
            fail("module \"{}\": K = {} is not a multiple of the NVFP4 block (16)", p, d.k);
        add(ct ? "weight_packed" : "weight", dtype_u8, {d.n, d.k / 2});
        add("weight_scale", dtype_f8_e4m3, {d.n, d.k / nvfp4_block});
        if (ct)
            add("weight_global_scale", dtype_f32, {1});
        else
            add("weight_scale_2", dtype_f32, {});
        if (oc.scheme == out_scheme_nvfp4) {
            if (ct)
                add("input_global_scale", dtype_f32, {1});
            else
                add("input_scale", dtype_f32, {});
        }
    } else if (oc.scheme == out_scheme_mxfp4a16) {
        if (d.k % mxfp4_block)
            fail("module \"{}\": K = {} is not a multiple of the MXFP4 block (32)", p, d.k);
        add("weight_packed", dtype_u8, {d.n, d.k / 2});
        add("weight_scale", dtype_u8, {d.n, d.k / mxfp4_block});
    } else {  // FP8
        add("weight", dtype_f8_e4m3, {d.n, d.k});
        dtype sd = ct ? oc.dense_dtype : dtype_f32;  // CT keeps FP8 scales in the model dtype
        if (oc.scheme == out_scheme_fp8_dynamic)
            add("weight_scale", sd, {d.n, 1});
        else
            add("weight_scale", sd, {cdiv(d.n, fp8_block), cdiv(d.k, fp8_block)});
    }
    if (d.bias) add("bias", oc.dense_dtype, {d.n});
    return e;
}

void out_write_floats(dtype t, const float* x, size_t n, const byte_sink& sink) {
    if (t == dtype_f32) {
        sink(x, n * 4);
        return;
    }
    std::vector<uint16_t> buf(std::min<size_t>(n, 1 << 20));
    for (size_t i = 0; i < n; i += buf.size()) {
        size_t m = std::min(buf.size(), n - i);
        for (size_t j = 0; j < m; ++j)
            buf[j] = t == dtype_bf16 ? bf16_from_float(x[i + j]) : f16_from_float(x[i + j]);
        sink(buf.data(), m * 2);
    }
}

void out_linear_encode(const out_config& oc, const linear_desc& d, const float* w, const float* bias,
                       float weight_amax, float input_amax, const byte_sink& sink) {
    const bool ct = oc.format == out_format_ct;
    const int64_t n = d.n, k = d.k;
    if (!out_quantizes(oc, d)) {
        out_write_floats(oc.dense_dtype, w, size_t(n * k), sink);
    } else if (is_nvfp4(oc.scheme)) {
        nvfp4_convention c = ct ? nvfp4_convention_ct : nvfp4_convention_modelopt;
        float g = nvfp4_global_scale(weight_amax, c);
        std::vector<uint8_t> packed(size_t(n * k / 2)), scales(size_t(n * k / nvfp4_block));
        nvfp4_quantize(w, n, k, g, c, packed.data(), scales.data());
        sink(packed.data(), packed.size());
        sink(scales.data(), scales.size());
        sink(&g, 4);
        if (oc.scheme == out_scheme_nvfp4) {
            float ig = nvfp4_global_scale(input_amax, c);
            sink(&ig, 4);
        }
    } else if (oc.scheme == out_scheme_mxfp4a16) {
        std::vector<uint8_t> packed(size_t(n * k / 2)), scales(size_t(n * k / mxfp4_block));
        mxfp4_quantize(w, n, k, packed.data(), scales.data());
        sink(packed.data(), packed.size());
        sink(scales.data(), scales.size());
    } else {
        fp8_granularity g =
            oc.scheme == out_scheme_fp8_dynamic ? fp8_granularity_channel : fp8_granularity_block;
        dtype sd = ct ? oc.dense_dtype : dtype_f32;
        std::vector<uint8_t> q(size_t(n * k));
        std::vector<float> scales(size_t(fp8_scale_count(g, n, k)));
        fp8_quantize(w, n, k, g, sd, q.data(), scales.data());
        sink(q.data(), q.size());
        out_write_floats(sd, scales.data(), scales.size(), sink);
    }
    if (d.bias) out_write_floats(oc.dense_dtype, bias, size_t(n), sink);
}

json out_quantization_config(const out_config& oc) {
    if (oc.scheme == out_scheme_dense) return nullptr;
    if (oc.format == out_format_modelopt) {
        json groups = json::object();
        json args = {{"dynamic", false}, {"num_bits", is_fp8(oc.scheme) ? 8 : 4}, {"type", "float"}};
        if (is_nvfp4(oc.scheme)) args["group_size"] = 16;
        json g = {{"targets", {"Linear"}}, {"weights", args}};
        if (oc.scheme == out_scheme_nvfp4) g["input_activations"] = args;
        groups["group_0"] = g;
        return json{{"quant_method", "modelopt"},
                    {"quant_algo", modelopt_algo(oc)},
                    {"ignore", {"lm_head", "model.layers.*.mlp.gate"}},
                    {"producer", {{"name", "nibble"}, {"version", "0.1.0"}}},
                    {"config_groups", groups},
                    {"kv_cache_scheme", nullptr}};
    }
    json weights, inputs = nullptr;
    std::string format;
    switch (oc.scheme) {
        case out_scheme_nvfp4:
        case out_scheme_nvfp4a16:
            format = "nvfp4-pack-quantized";
            weights = ct_args(4, "tensor_group", 16, false, "memoryless_minmax", "torch.float8_e4m3fn");
            if (oc.scheme == out_scheme_nvfp4)
                inputs = ct_args(4, "tensor_group", 16, "local", "static_minmax", "torch.float8_e4m3fn");
            break;
        case out_scheme_mxfp4a16:
            format = "mxfp4-pack-quantized";
            weights = ct_args(4, "group", 32, false, "memoryless_minmax", "torch.uint8");
            break;
        case out_scheme_fp8_dynamic:
            format = "float-quantized";
            weights = ct_args(8, "channel", nullptr, false, "minmax", torch_dtype_name(oc.dense_dtype));
            inputs = ct_args(8, "token", nullptr, true, "minmax", torch_dtype_name(oc.dense_dtype));
            inputs["observer"] = nullptr;
            break;
        case out_scheme_fp8_block:
            format = "float-quantized";
            weights = ct_args(8, "block", nullptr, false, "minmax", torch_dtype_name(oc.dense_dtype));
            weights["block_structure"] = {128, 128};
            inputs = ct_args(8, "group", 128, true, "minmax", torch_dtype_name(oc.dense_dtype));
            inputs["observer"] = nullptr;
            break;
        case out_scheme_dense:
            break;
    }
    json group = {{"format", format},
                  {"input_activations", inputs},
                  {"output_activations", nullptr},
                  {"targets", {"Linear"}},
                  {"weights", weights}};
    return json{{"config_groups", {{"group_0", group}}},
                {"format", format},
                {"global_compression_ratio", nullptr},
                {"ignore", {"lm_head", "re:.*mlp.gate$"}},
                {"kv_cache_scheme", nullptr},
                {"quant_method", "compressed-tensors"},
                {"quantization_status", "compressed"},
                {"sparsity_config", json::object()},
                {"transform_config", json::object()},
                {"version", "0.12.2"}};
}

json out_hf_quant_config(const out_config& oc) {
    json q = {{"quant_algo", modelopt_algo(oc)},
              {"kv_cache_quant_algo", nullptr},
              {"exclude_modules", {"lm_head", "model.layers.*.mlp.gate"}}};
    if (is_nvfp4(oc.scheme)) q["group_size"] = 16;
    if (oc.scheme == out_scheme_fp8_block) q["group_size"] = 128;
    return json{{"producer", {{"name", "nibble"}, {"version", "0.1.0"}}}, {"quantization", q}};
}

// ---- sharded_writer ----

sharded_writer::sharded_writer(const std::string& dir, std::vector<safetensors_entry> entries,
                               uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata)
    : dir_(dir), metadata_(metadata) {
    for (safetensors_entry& e : entries) {
        uint64_t n = uint64_t(dtype_size(e.type));
        for (int64_t s : e.shape) n *= uint64_t(s);
        if (shards_.empty() || (shard_bytes_.back() > 0 && shard_bytes_.back() + n > max_shard_bytes)) {
            shards_.emplace_back();
            shard_bytes_.push_back(0);
        }
        shards_.back().push_back(std::move(e));
        shard_bytes_.back() += n;
        total_ += n;
    }
    if (shards_.empty()) fail("{}: nothing to write", dir);
    shard_ = 0;
    open_next();
}

sharded_writer::~sharded_writer() = default;

void sharded_writer::open_next() {
    std::string name = shards_.size() == 1
                           ? "model.safetensors"
                           : fmt::format("model-{:05d}-of-{:05d}.safetensors", shard_ + 1, shards_.size());
    cur_ = std::make_unique<safetensors_writer>(dir_ + "/" + name, shards_[shard_], metadata_);
    left_in_shard_ = shard_bytes_[shard_];
}

void sharded_writer::write(const void* data, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
        while (left_in_shard_ == 0) {
            cur_->finish();
            if (++shard_ >= shards_.size()) fail("{}: more bytes written than planned", dir_);
            open_next();
        }
        size_t m = size_t(std::min<uint64_t>(n, left_in_shard_));
        cur_->write(p, m);
        p += m;
        n -= m;
        left_in_shard_ -= m;
        done_ += m;
    }
}

void sharded_writer::skip(size_t n) {
    while (n > 0) {
        while (left_in_shard_ == 0) {
            cur_->finish();
            if (++shard_ >= shards_.size()) fail("{}: more bytes written than planned", dir_);
            open_next();
        }
        size_t m = size_t(std::min<uint64_t>(n, left_in_shard_));
        cur_->skip(m);
        n -= m;
        left_in_shard_ -= m;
        done_ += m;
    }
}

void sharded_writer::finish() {
    cur_->finish();
    if (shard_ + 1 != shards_.size() || left_in_shard_ != 0)
        fail("{}: fewer bytes written than planned", dir_);
    if (shards_.size() == 1) return;
    json map = json::object();
    for (size_t s = 0; s < shards_.size(); ++s)
        for (const safetensors_entry& e : shards_[s])
            map[e.name] = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards_.size());
    json index = {{"metadata", {{"total_size", total_}}}, {"weight_map", map}};
    std::string path = dir_ + "/model.safetensors.index.json";
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) fail("{}: cannot write", path);
    std::string text = index.dump(2) + "\n";
    bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    ok = std::fclose(f) == 0 && ok;
    if (!ok) fail("{}: write failed", path);
}

// ---- progress_bar ----

progress_bar::progress_bar(std::string label, uint64_t total)
    : label_(std::move(label)), total_(total), tty_(isatty(STDERR_FILENO)) {}

void progress_bar::update(uint64_t done) {
    if (!tty_ || total_ == 0) return;
    int pct = int(done * 100 / total_);
    if (pct == last_) return;
    last_ = pct;
    int w = 40, fill = pct * w / 100;
    std::fprintf(stderr, "\r%s [%s%s] %3d%% %.2f/%.2f GB", label_.c_str(),
                 std::string(size_t(fill), '#').c_str(), std::string(size_t(w - fill), ' ').c_str(), pct,
                 done / 1e9, total_ / 1e9);
    std::fflush(stderr);
}

void progress_bar::finish() {
    if (tty_ && last_ >= 0) std::fprintf(stderr, "\n");
}

}  // namespace nibble
