// `nibble template` on a folder holding only tokenizer files: exact output, flags, errors.
#include <gtest/gtest.h>

#include "test_util.h"

namespace {

using nibble::test::run_nibble;
using nibble::test::temp_dir;
using nibble::test::write_file;

struct template_folder {
    temp_dir dir;
    template_folder() {
        write_file(dir / "tokenizer_config.json",
                   R"({"bos_token": "<s>", "eos_token": "</s>", "chat_template":
            "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if tools %}T{{ tools | length }}{% endif %}{% if add_generation_prompt %}[assistant]{% if think is defined and think is false %}<no-think>{% endif %}{% endif %}{% if messages | length > 2 %}{{ raise_exception('too many messages') }}{% endif %}"})");
        write_file(dir / "messages.json", R"([{"role": "user", "content": "héllo"}])");
        write_file(dir / "three.json",
                   R"([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                          {"role": "user", "content": "c"}])");
        write_file(dir / "tools.json", R"([{"type": "function", "function": {"name": "f"}}])");
    }
    std::string args(const std::string& messages = "messages.json") const {
        return "template --model " + dir.path + " --messages " + (dir / messages);
    }
};

TEST(cli_template, prints_the_prompt_exactly) {
    template_folder f;
    auto r = run_nibble(f.args());
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out, "<s>[user]héllo");
    r = run_nibble(f.args() + " --add-generation-prompt --kwargs '{\"think\": false}' --tools " +
                   (f.dir / "tools.json"));
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out, "<s>[user]hélloT1[assistant]<no-think>");
}

TEST(cli_template, raise_exception_is_an_error_with_the_message) {
    template_folder f;
    auto r = run_nibble(f.args("three.json"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.out.find("too many messages"), std::string::npos) << r.out;
}

TEST(cli_template, bad_inputs) {
    template_folder f;
    auto r = run_nibble(f.args() + " --kwargs '[1]'");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.out.find("--kwargs"), std::string::npos) << r.out;
    r = run_nibble("template --model " + f.dir.path);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.out.find("--messages"), std::string::npos) << r.out;
    r = run_nibble("template --model /nonexistent/dir --messages " + (f.dir / "messages.json"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.out.find("no chat template"), std::string::npos) << r.out;
}

}  // namespace
