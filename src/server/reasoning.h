// Reasoning parsers: split a chat choice's generated text into `reasoning` and `content`, as vLLM's
// `--reasoning-parser` does (shared/spec/serving.md 1.3, 1.4 and the feature table).
//
// Contract of reasoning_parser (one object per chat choice, fed in order):
// - feed(piece) takes the next detokenized text released to the client (after the stop checker's
//   hold-back) and returns the newly decided reasoning and content text; finish() returns what is
//   still held back once generation ends. Concatenating every result gives the split of the whole
//   output, whatever the pieces were (a tag may be cut across any number of pieces).
// - "qwen3" (vLLM's Qwen3ReasoningParser): an optional leading "<think>" is dropped; text before the
//   first "</think>" is reasoning, text after it is content (later tags are content, untouched).
//   With thinking on (Qwen3's default) output that never contains "</think>" is all reasoning (vLLM
//   treats it as truncated thinking), so content stays empty. With
//   chat_template_kwargs.enable_thinking=false everything is content and no tag is stripped (vLLM's
//   streaming path; its non-streaming path would still split a "</think>" the model emits anyway).
// - The tag text never appears in either field. Text that might be the start of a tag is held back
//   until it is decided (at most 7 bytes), so a piece can yield nothing.
// - Not done: vLLM's "<tool_call><function=" as an implicit end of reasoning (tools are 400 here).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nibble {

struct reasoning_delta {
    std::string reasoning, content;
    bool empty() const { return reasoning.empty() && content.empty(); }
};

class reasoning_parser {
  public:
    // thinking: false when the request set chat_template_kwargs.enable_thinking=false.
    explicit reasoning_parser(bool thinking = true);
    reasoning_delta feed(std::string_view piece);
    reasoning_delta finish();

  private:
    enum class phase { start, reasoning, content };
    phase phase_;
    std::string held_;  // undecided text: a possible "<think>" at the start or "</think>" at the end
};

// The --reasoning-parser names this build knows ("qwen3").
const std::vector<std::string>& reasoning_parser_names();
// Whether `name` is one of them.
bool reasoning_parser_known(const std::string& name);
// A parser for a known name; throws nibble::error otherwise.
std::unique_ptr<reasoning_parser> reasoning_parser_make(const std::string& name, bool thinking);

}  // namespace nibble
