#include "loader/model_writer.h"

#include <cmath>
#include <map>

#include "core/error.h"
#include "core/quant.h"

namespace nibble {

namespace {

uint64_t entry_bytes(const safetensors_entry& e) {
    uint64_t n = dtype_size(e.type);
    for (int64_t s : e.shape) n *= uint64_t(s);
    return n;
}

}  // namespace

uint64_t model_write(const std::string& dir, const model_config& c, const out_config& oc, model_source& src,
                     const model_write_options& opt) {
    model_layout layout = model_layout_of(c);
    // Plan every tensor: plains first (embeddings, norms), then the linear modules in model order.
    std::vector<safetensors_entry> entries;
    for (const plain_desc& d : layout.plains) entries.push_back({d.name, oc.dense_dtype, d.shape, 0, 0});
    std::vector<std::vector<safetensors_entry>> linear_entries;
    for (const linear_desc& d : layout.linears) {
        linear_entries.push_back(out_linear_entries(oc, d));
        for (const auto& e : linear_entries.back()) entries.push_back(e);
    }
    sharded_writer out(dir, entries, opt.max_shard_bytes);
    progress_bar bar(opt.progress_label, out.total_bytes());
    byte_sink sink = [&](const void* p, size_t n) {
        out.write(p, n);
        bar.update(out.written_bytes());
    };

    for (const plain_desc& d : layout.plains) {
        if (opt.no_data)
            out.skip(size_t(entry_bytes({d.name, oc.dense_dtype, d.shape, 0, 0})));
        else
            src.plain(d, oc.dense_dtype, sink);
    }

    // Fused groups (q/k/v, gate/up) share one NVFP4 global scale: load a whole group, then encode.
    struct loaded {
        std::vector<float> w, bias;
    };
    std::map<std::string, loaded> group;  // module name -> weights, for the current group
    float group_amax = 0;
    for (size_t i = 0; i < layout.linears.size(); ++i) {
        const linear_desc& d = layout.linears[i];
        if (opt.no_data) {
            for (const safetensors_entry& e : linear_entries[i]) {
                int64_t numel = 1;
                for (int64_t s : e.shape) numel *= s;
                if (numel > 1) {
                    out.skip(size_t(entry_bytes(e)));
                } else {  // NVFP4 global scales: a valid value (absmax 1)
                    float g = nvfp4_global_scale(
                        1.0f, oc.format == out_format_ct ? nvfp4_convention_ct : nvfp4_convention_modelopt);
                    sink(&g, 4);
                }
            }
            continue;
        }
        if (!group.count(d.name)) {
            group.clear();
            group_amax = 0;
            std::string g = out_fusion_group(d);
            for (size_t j = i; j < layout.linears.size() && out_fusion_group(layout.linears[j]) == g; ++j) {
                loaded& l = group[layout.linears[j].name];
                src.linear(layout.linears[j], l.w, l.bias);
                float a = 0;
#pragma omp parallel for reduction(max : a)
                for (int64_t r = 0; r < layout.linears[j].n; ++r)
                    a = std::fmax(a, abs_max(l.w.data() + r * layout.linears[j].k, layout.linears[j].k));
                group_amax = std::fmax(group_amax, a);
            }
        }
        loaded& l = group[d.name];
        float in_amax = oc.scheme == out_scheme_nvfp4 && out_quantizes(oc, d) ? src.input_amax(d) : 0.0f;
        out_linear_encode(oc, d, l.w.data(), l.bias.data(), group_amax, in_amax, sink);
        group.erase(d.name);
    }
    out.finish();
    bar.finish();
    return out.total_bytes();
}

}  // namespace nibble
