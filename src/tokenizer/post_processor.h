// The `post_processor` section of tokenizer.json reduced to what a single sequence needs: the ids
// placed before and after it when special tokens are added. TemplateProcessing ("single"),
// RobertaProcessing/BertProcessing (cls ... sep), ByteLevel (no ids) and Sequence are understood.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

namespace nibble {

struct post_processor {
    std::vector<int32_t> prefix;  // ids before the sequence
    std::vector<int32_t> suffix;  // ids after the sequence
};

// Parses `j` (may be null); fails naming the field on unknown types or malformed templates.
post_processor post_processor_parse(const nlohmann::json& j);

}  // namespace nibble
