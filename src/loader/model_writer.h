// Writes a whole model's weights in an output scheme, module by module (streamed: one fused group of
// matrices in memory at a time), from any source of float weights: a checkpoint (`quantize`) or a
// random generator (`synth`).
#pragma once

#include <string>
#include <vector>

#include "core/config.h"
#include "loader/checkpoint_writer.h"

namespace nibble {

class model_source {
  public:
    virtual ~model_source() = default;
    // Writes plain tensor `d` (embeddings, norms) as dtype `t` through the sink.
    virtual void plain(const plain_desc& d, dtype t, const byte_sink& sink) = 0;
    // Fills w [n·k] (and bias [n] when d.bias) with the module's weights as floats.
    virtual void linear(const linear_desc& d, std::vector<float>& w, std::vector<float>& bias) = 0;
    // Calibrated absmax of the module's input activations (W4A4 only).
    virtual float input_amax(const linear_desc& d) = 0;
};

struct model_write_options {
    uint64_t max_shard_bytes = 5'000'000'000ull;  // as transformers' save_pretrained default
    bool no_data = false;  // layout only: tensors of more than one element become zero-filled sparse holes
    std::string progress_label = "writing";
};

// Writes DIR/model.safetensors (or shards + index); returns the bytes written.
uint64_t model_write(const std::string& dir, const model_config& c, const out_config& oc, model_source& src,
                     const model_write_options& opt);

}  // namespace nibble
