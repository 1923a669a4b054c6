// nibble's chat templates against @huggingface/jinja: the Qwen3, Llama-3 and DeepSeek-V3
// templates from the real tokenizer_config.json files (loaded from the model folders, as
// `nibble template` does) and the two feature templates in tests/tokenizer/templates, rendered
// for every case written by template_oracle.mjs; prompts must match byte for byte, and cases
// where the template calls raise_exception must throw template_error with the same message.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "tokenizer/chat_template.h"

namespace {

std::string read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

const nlohmann::ordered_json* oracle() {
    static nlohmann::ordered_json j;
    static bool loaded = false;
    if (!loaded) {
        loaded = true;
        std::string text = read_text(NIBBLE_TEMPLATE_ORACLE_JSON);
        if (!text.empty()) j = nlohmann::ordered_json::parse(text);
    }
    return j.is_object() ? &j : nullptr;
}

// The first differing byte, with context, for a readable failure.
std::string first_difference(const std::string& want, const std::string& got) {
    size_t i = 0;
    while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
    size_t from = i > 40 ? i - 40 : 0;
    auto show = [&](const std::string& s) {
        return nlohmann::json(s.substr(from, 100))
            .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    };
    return "first difference at byte " + std::to_string(i) + "\n  want: " + show(want) +
           "\n  got:  " + show(got);
}

void check_template(const std::string& name) {
    std::string modules = std::string(NIBBLE_ORACLE_DIR) + "/node_modules/@huggingface/jinja";
    if (!std::filesystem::exists(modules))
        GTEST_SKIP() << "SKIPPED: npm oracles not installed (" << modules
                     << " missing; run tests/oracle/install.sh or ctest with network)";
    const nlohmann::ordered_json* j = oracle();
    ASSERT_NE(j, nullptr) << "oracles are installed but " << NIBBLE_TEMPLATE_ORACLE_JSON
                          << " is missing: the chat_template_oracle_gen step failed";
    const auto& info = (*j)["templates"][name];
    ASSERT_TRUE(info.is_object()) << name << " is not in the oracle file";
    nibble::chat_template tmpl;
    if (info.contains("dir")) {
        tmpl = nibble::chat_template_load(info["dir"].get<std::string>());
    } else {
        tmpl = nibble::chat_template_from_string(read_text(info["file"].get<std::string>()),
                                                 {{"bos_token", info["bos_token"].get<std::string>()},
                                                  {"eos_token", info["eos_token"].get<std::string>()}});
    }
    size_t n_cases = 0, n_raises = 0, n_bad = 0;
    for (const auto& c : (*j)["cases"]) {
        if (c["template"] != name) continue;
        ++n_cases;
        nibble::render_options opt;
        opt.add_generation_prompt = c["add_generation_prompt"].get<bool>();
        opt.tools = c["tools"];
        opt.kwargs = c["kwargs"];
        opt.now = std::time_t((*j)["now"].get<int64_t>());
        std::string label = name + "/" + c["conversation"].get<std::string>() +
                            (opt.add_generation_prompt ? " +gen" : "") +
                            (opt.tools.is_null() ? "" : " +tools") + " " + opt.kwargs.dump();
        if (c.contains("raises")) {
            ++n_raises;
            try {
                std::string got = nibble::chat_template_render(tmpl, c["messages"], opt);
                ADD_FAILURE() << label << ": expected raise_exception(" << c["raises"]
                              << "), rendered instead";
                ++n_bad;
            } catch (const nibble::jinja::template_error& e) {
                EXPECT_EQ(std::string(e.what()), c["raises"].get<std::string>()) << label;
            }
            continue;
        }
        std::string want = c["expected"].get<std::string>(), got;
        try {
            got = nibble::chat_template_render(tmpl, c["messages"], opt);
        } catch (const std::exception& e) {
            ADD_FAILURE() << label << ": threw " << e.what();
            ++n_bad;
            continue;
        }
        if (got != want) {
            ++n_bad;
            ADD_FAILURE() << label << ": " << first_difference(want, got);
        }
    }
    EXPECT_GT(n_cases, 0u) << "no cases for " << name;
    std::printf("%s: %zu cases (%zu raising), %zu mismatches\n", name.c_str(), n_cases, n_raises, n_bad);
}

}  // namespace

TEST(chat_template_oracle, qwen3) {
    check_template("qwen3");
}
TEST(chat_template_oracle, llama3) {
    check_template("llama3");
}
TEST(chat_template_oracle, deepseek_v3) {
    check_template("deepseek_v3");
}
TEST(chat_template_oracle, features_tools) {
    check_template("features_tools");
}
TEST(chat_template_oracle, features_macros) {
    check_template("features_macros");
}
