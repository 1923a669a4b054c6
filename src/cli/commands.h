// The nibble subcommands. Each takes the arguments after its name and returns the exit code;
// errors a user can cause are thrown as nibble::error and printed by main.
#pragma once

#include <span>
#include <string>

namespace nibble {

using command_args = std::span<const std::string>;

int cmd_inspect(command_args args);
int cmd_quantize(command_args args);
int cmd_synth(command_args args);
int cmd_perplexity(command_args args);
int cmd_run(command_args args);
int cmd_template(command_args args);
int cmd_tokenize(command_args args);
int cmd_detokenize(command_args args);
int cmd_serve(command_args args);
int cmd_bench(command_args args);
// nibble bench --kernels ...: the linear kernels on given shapes against cuBLAS (GPU builds).
int cmd_bench_kernels(command_args args);
// nibble bench serve ...: the serving benchmark of `vllm bench serve` against an OpenAI-compatible server.
int cmd_bench_serve(command_args args);

// The bundled model (models/qwen3-tiny) beside the binary's source tree, else the source folder it
// was built from.
std::string default_model_dir();

}  // namespace nibble
