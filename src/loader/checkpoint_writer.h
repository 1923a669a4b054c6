// Writing quantized checkpoints exactly as the reference producers do (formats.md 2-4), so that vLLM
// loads them unchanged: tensor names, dtypes, shapes, quantization_config and hf_quant_config.json.
// Shared by `nibble quantize` (real weights) and `nibble synth` (random weights).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/model_layout.h"
#include "loader/safetensors.h"

namespace nibble {

enum out_scheme : uint8_t {
    out_scheme_dense,        // unquantized (synth only)
    out_scheme_nvfp4,        // NVFP4 weights, NVFP4 activations (W4A4)
    out_scheme_nvfp4a16,     // NVFP4 weight-only
    out_scheme_fp8_dynamic,  // FP8 per-channel weights, dynamic per-token activations
    out_scheme_fp8_block,  // FP8 128x128 block weights (CT: dynamic 1x128 activations; ModelOpt: weight-only)
    out_scheme_mxfp4a16,   // MXFP4 weight-only (compressed-tensors only)
};

enum out_format : uint8_t {
    out_format_ct,        // compressed-tensors (llm-compressor)
    out_format_modelopt,  // NVIDIA ModelOpt
};

struct out_config {
    out_scheme scheme = out_scheme_nvfp4a16;
    out_format format = out_format_ct;
    dtype dense_dtype = dtype_bf16;  // dtype of unquantized tensors and CT FP8 scales
};

// Parses --scheme / --format; refuses combinations no producer writes, naming the options.
out_config out_config_parse(const std::string& scheme, const std::string& format, bool allow_dense);
std::string out_scheme_name(out_scheme s);

// Whether this linear module is quantized (lm_head and MoE routers are not).
bool out_quantizes(const out_config& oc, const linear_desc& d);
// The tensors a linear module is written as, in write order (bias last).
std::vector<safetensors_entry> out_linear_entries(const out_config& oc, const linear_desc& d);
// Encodes W [n, k] (and bias [n] if the module has one) into the bytes of out_linear_entries, in
// order, through `sink`. `weight_amax` sets the NVFP4 global scale: the absmax over the module's
// fused group (q/k/v, gate/up share one, as current llm-compressor and ModelOpt write them).
// `input_amax` is the calibrated activation absmax (W4A4 only).
using byte_sink = std::function<void(const void* data, size_t n)>;
void out_linear_encode(const out_config& oc, const linear_desc& d, const float* w, const float* bias,
                       float weight_amax, float input_amax, const byte_sink& sink);
// The fused group a module shares its global scale with ("model.layers.0.self_attn.qkv"), or its own name.
std::string out_fusion_group(const linear_desc& d);
// Writes n floats as `t` (F32/BF16/F16) through the sink, in chunks.
void out_write_floats(dtype t, const float* x, size_t n, const byte_sink& sink);

// config.json's quantization_config for this scheme (ignore: lm_head and MoE routers).
nlohmann::json out_quantization_config(const out_config& oc);
// The legacy hf_quant_config.json ModelOpt writes next to config.json.
nlohmann::json out_hf_quant_config(const out_config& oc);

// Writes a folder's weights as model.safetensors, or as model-0000i-of-0000N.safetensors shards of at
// most max_shard_bytes plus model.safetensors.index.json. Bytes are appended in entry order.
class sharded_writer {
  public:
    sharded_writer(const std::string& dir, std::vector<safetensors_entry> entries, uint64_t max_shard_bytes,
                   const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
    ~sharded_writer();
    void write(const void* data, size_t n);
    void skip(size_t n);  // sparse hole (zeros) instead of data
    void finish();
    uint64_t total_bytes() const { return total_; }
    uint64_t written_bytes() const { return done_; }

  private:
    void open_next();
    std::string dir_;
    std::vector<std::vector<safetensors_entry>> shards_;
    std::vector<uint64_t> shard_bytes_;
    std::unique_ptr<safetensors_writer> cur_;
    size_t shard_ = 0;
    uint64_t left_in_shard_ = 0, total_ = 0, done_ = 0;
    std::map<std::string, std::string> metadata_;
};

// A progress bar on stderr when it is a terminal (silent otherwise).
class progress_bar {
  public:
    progress_bar(std::string label, uint64_t total);
    void update(uint64_t done);
    void finish();

  private:
    std::string label_;
    uint64_t total_;
    bool tty_;
    int last_ = -1;
};

}  // namespace nibble
