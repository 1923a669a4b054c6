// nibble inspect MODEL [--bandwidth GBPS] [--context N] [--json]
// Parameters by role, the format of each, bytes read per decode token at batch 1 and the decode speed
// bound they imply at a memory bandwidth (default: DGX Spark 273 GB/s and H200 4200 GB/s).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "core/error.h"
#include "core/model_bytes.h"
#include "loader/model_loader.h"

namespace nibble {

namespace {

const char* k_usage = "nibble inspect MODEL [--bandwidth GBPS[,GBPS...]] [--context N] [--json]";

}  // namespace

int cmd_inspect(command_args args) {
    arg_parser a(args, {"--bandwidth", "--context"}, {"--json", "--help"});
    if (a.has("--help")) {
        std::printf("usage: %s\n", k_usage);
        return 0;
    }
    a.expect_positionals(1, 1, k_usage);
    const std::string dir = a.positionals()[0];
    std::vector<double> bws = {273, 4200};
    if (auto b = a.get("--bandwidth")) {
        bws.clear();
        for (int64_t v : parse_int_list(*b, "--bandwidth")) bws.push_back(double(v));
    }
    const int64_t context = a.get_int("--context", 0);
    if (context < 0) fail("--context must be non-negative");

    loaded_model m = load_model(dir);
    model_bytes mb = model_bytes_of(m.config, m.weights);
    const uint64_t kv16 = mb.kv_bytes_per_position_bf16 * uint64_t(context);
    const uint64_t kv8 = mb.kv_bytes_per_position_fp8 * uint64_t(context);
    const uint64_t per_token = mb.weight_bytes_per_token + kv16,
                   per_token_fp8kv = mb.weight_bytes_per_token + kv8;

    if (a.has("--json")) {
        nlohmann::json j;
        j["model"] = dir;
        j["architecture"] = model_arch_name(m.config.arch);
        j["quantization"] = m.quant.describe();
        j["params"] = mb.params;
        j["active_params"] = mb.active_params;
        j["weight_bytes"] = mb.weight_bytes;
        j["checkpoint_bytes"] = m.ckpt->total_bytes();
        nlohmann::json roles = nlohmann::json::array();
        for (const role_bytes& r : mb.roles)
            roles.push_back({{"role", r.role},
                             {"params", r.params},
                             {"bytes", r.bytes},
                             {"active_params", r.active_params},
                             {"bytes_per_token", r.bytes_per_token},
                             {"formats", r.formats}});
        j["roles"] = roles;
        j["context"] = context;
        j["weight_bytes_per_token"] = mb.weight_bytes_per_token;
        j["quantized_fraction"] = double(mb.quantized_bytes_per_token) / double(mb.weight_bytes_per_token);
        j["kv_bytes_per_position"] = {{"bf16", mb.kv_bytes_per_position_bf16},
                                      {"fp8", mb.kv_bytes_per_position_fp8}};
        j["bytes_per_token"] = {{"kv_bf16", per_token}, {"kv_fp8", per_token_fp8kv}};
        nlohmann::json pred = nlohmann::json::array();
        for (double bw : bws)
            pred.push_back({{"bandwidth_gbps", bw},
                            {"tok_per_s_kv_bf16", bw * 1e9 / double(per_token)},
                            {"tok_per_s_kv_fp8", bw * 1e9 / double(per_token_fp8kv)}});
        j["predicted_decode_bound"] = pred;
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }

    std::printf("%s: %s, %s\n", dir.c_str(), model_arch_name(m.config.arch), m.quant.describe().c_str());
    std::printf("%.3f B parameters (%.3f B active per token), %.3f GB of weights, checkpoint %.3f GB\n\n",
                mb.params / 1e9, mb.active_params / 1e9, mb.weight_bytes / 1e9, m.ckpt->total_bytes() / 1e9);
    std::printf("%-11s %12s %11s %14s  %s\n", "role", "params (M)", "GB", "GB per token", "format");
    for (const role_bytes& r : mb.roles)
        std::printf("%-11s %12.1f %11.3f %14.4f  %s\n", r.role.c_str(), r.params / 1e6, r.bytes / 1e9,
                    r.bytes_per_token / 1e9, r.formats.c_str());
    std::printf("\nbytes per decode token, batch 1: %.3f GB of weights (%.1f %% quantized)\n",
                mb.weight_bytes_per_token / 1e9,
                100.0 * double(mb.quantized_bytes_per_token) / double(mb.weight_bytes_per_token));
    std::printf("KV cache per context position: %.1f KB BF16, %.1f KB FP8\n",
                mb.kv_bytes_per_position_bf16 / 1e3, mb.kv_bytes_per_position_fp8 / 1e3);
    std::printf("at context %lld: %.3f GB per token (BF16 KV), %.3f GB (FP8 KV)\n\n", (long long)context,
                per_token / 1e9, per_token_fp8kv / 1e9);
    std::printf("predicted decode bound (bandwidth / bytes per token):\n");
    for (double bw : bws)
        std::printf("  %7.0f GB/s: %8.1f tok/s (BF16 KV), %8.1f tok/s (FP8 KV)\n", bw,
                    bw * 1e9 / double(per_token), bw * 1e9 / double(per_token_fp8kv));
    return 0;
}

}  // namespace nibble
