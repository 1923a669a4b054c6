// The stop checker: stop strings across pieces, overlaps, UTF-8, stop tokens, eos, max_tokens,
// min_tokens, finish reasons.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/stop_checker.h"

using namespace nibble;

namespace {

struct run_out {
    std::string text;  // everything emitted, including flush() when unfinished
    std::vector<std::string> emitted;
    stop_result last;
};

// Pushes pieces as tokens 100, 101, ... (no stop ids among them).
run_out run(stop_checker& c, const std::vector<std::string>& pieces) {
    run_out o;
    for (size_t i = 0; i < pieces.size(); i++) {
        o.last = c.push(int32_t(100 + i), pieces[i]);
        o.emitted.push_back(o.last.text);
        o.text += o.last.text;
        if (o.last.finished()) return o;
    }
    o.text += c.flush();
    return o;
}

sampling_params with_stop(std::vector<std::string> stop) {
    sampling_params p;
    p.stop = std::move(stop);
    return p;
}

bool valid_utf8(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; k++)
            if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
        i += n;
    }
    return true;
}

}  // namespace

TEST(StopChecker, NoStopStringsPassesTextThrough) {
    stop_checker c(sampling_params{});
    auto o = run(c, {"Hello", " world"});
    EXPECT_EQ(o.emitted, (std::vector<std::string>{"Hello", " world"}));
    EXPECT_FALSE(o.last.finished());
    EXPECT_EQ(c.n_generated(), 2);
}

TEST(StopChecker, StopStringSplitAcrossPieces) {
    stop_checker c(with_stop({"STOP"}));
    auto o = run(c, {"Hello ST", "O", "P and more"});
    EXPECT_EQ(o.emitted, (std::vector<std::string>{"Hello ", "", ""}));
    EXPECT_EQ(o.text, "Hello ");
    EXPECT_EQ(o.last.finish, finish_reason_stop);
    EXPECT_EQ(o.last.stop_string, "STOP");
    EXPECT_FALSE(o.last.stop_token);
    EXPECT_STREQ(finish_reason_name(o.last.finish), "stop");
    EXPECT_THROW(c.push(1, "x"), error);
}

TEST(StopChecker, HeldTextReleasedWhenItCannotMatch) {
    stop_checker c(with_stop({"STOP"}));
    auto o = run(c, {"ab S", "Tx", " ST"});
    EXPECT_EQ(o.emitted, (std::vector<std::string>{"ab ", "STx", " "}));
    EXPECT_EQ(o.text, "ab STx ST");  // the trailing "ST" comes back with flush()
}

TEST(StopChecker, StopStringAtTheVeryStart) {
    stop_checker c(with_stop({"<end>"}));
    auto o = run(c, {"<end>tail"});
    EXPECT_EQ(o.text, "");
    EXPECT_EQ(o.last.stop_string, "<end>");
    stop_checker d(with_stop({"<end>"}));
    o = run(d, {"<", "e", "nd", ">"});
    EXPECT_EQ(o.emitted, (std::vector<std::string>{"", "", "", ""}));
    EXPECT_EQ(o.last.finish, finish_reason_stop);
}

TEST(StopChecker, SelfOverlappingStopString) {
    // "aab" inside "aaab": the held suffix must restart at the second 'a'.
    stop_checker c(with_stop({"aab"}));
    auto o = run(c, {"a", "a", "a", "b"});
    EXPECT_EQ(o.text, "a");
    EXPECT_EQ(o.last.stop_string, "aab");
}

TEST(StopChecker, OverlappingCandidatesEarliestWins) {
    stop_checker c(with_stop({"bcd", "abc"}));
    auto o = run(c, {"xab", "cd"});
    EXPECT_EQ(o.text, "x");
    EXPECT_EQ(o.last.stop_string, "abc");
    // Same start: the first listed.
    stop_checker d(with_stop({"ab", "abc"}));
    o = run(d, {"zab", "c"});
    EXPECT_EQ(o.text, "z");
    EXPECT_EQ(o.last.stop_string, "ab");
    // A longer candidate is held while a shorter one completes inside it.
    stop_checker e(with_stop({"hello world", "lo"}));
    o = run(e, {"hel", "lo there"});
    EXPECT_EQ(o.text, "hel");
    EXPECT_EQ(o.last.stop_string, "lo");
}

TEST(StopChecker, MultiByteUtf8NearStopString) {
    // "é" is 2 bytes, "→" 3 bytes; pieces are whole characters, as stream_decoder gives them.
    stop_checker c(with_stop({"é!"}));
    auto o = run(c, {"caf", "é", "!"});
    EXPECT_EQ(o.text, "caf");
    EXPECT_EQ(o.last.stop_string, "é!");

    stop_checker d(with_stop({"→end"}));
    o = run(d, {"a→", "x→e", "nx", "→en"});
    EXPECT_EQ(o.emitted, (std::vector<std::string>{"a", "→x", "→enx", ""}));
    EXPECT_EQ(o.text, "a→x→enx→en");
    for (const auto& s : o.emitted) EXPECT_TRUE(valid_utf8(s)) << s;

    // A stop string that starts with a shared lead byte: "日本" vs text "日曜".
    stop_checker e(with_stop({"日本"}));
    o = run(e, {"今日", "曜日", "本当"});
    EXPECT_EQ(o.emitted, (std::vector<std::string>{"今", "日曜", ""}));
    EXPECT_EQ(o.text, "今日曜");
    for (const auto& s : o.emitted) EXPECT_TRUE(valid_utf8(s)) << s;
}

TEST(StopChecker, EosAndStopTokens) {
    sampling_params p = with_stop({"zz"});
    p.eos_token_id = 2;
    p.extra_eos_token_ids = {7};
    p.stop_token_ids = {9};
    {
        stop_checker c(p);
        EXPECT_EQ(c.push(100, "text z").text, "text ");
        auto r = c.push(2, "<eos>");  // the eos text is dropped, the held "z" released
        EXPECT_EQ(r.text, "z");
        EXPECT_EQ(r.finish, finish_reason_stop);
        EXPECT_FALSE(r.stop_token);  // vLLM: stop_reason null for the tokenizer's eos
        EXPECT_FALSE(r.stop_string);
    }
    {
        stop_checker c(p);
        auto r = c.push(7, "<|im_end|>");
        EXPECT_EQ(r.finish, finish_reason_stop);
        EXPECT_EQ(r.stop_token, 7);
        EXPECT_EQ(r.text, "");
    }
    {
        stop_checker c(p);
        auto r = c.push(9, ".");
        EXPECT_EQ(r.stop_token, 9);
        EXPECT_EQ(r.text, "");
    }
    // ignore_eos: eos ids are ordinary tokens; stop_token_ids still stop.
    p.ignore_eos = true;
    {
        stop_checker c(p);
        EXPECT_FALSE(c.push(2, "").finished());
        EXPECT_FALSE(c.push(7, "").finished());
        EXPECT_EQ(c.push(9, "").stop_token, 9);
    }
}

TEST(StopChecker, MaxTokensIsLength) {
    sampling_params p = with_stop({"STOP"});
    p.max_tokens = 3;
    p.eos_token_id = 2;
    stop_checker c(p);
    EXPECT_EQ(c.max_tokens(), 3);
    EXPECT_EQ(c.push(10, "a").text, "a");
    EXPECT_EQ(c.push(11, " ST").text, " ");
    auto r = c.push(12, "x");  // the held "ST" is released with the last token's text
    EXPECT_EQ(r.text, "STx");
    EXPECT_EQ(r.finish, finish_reason_length);
    EXPECT_STREQ(finish_reason_name(r.finish), "length");
    EXPECT_EQ(c.flush(), "");
    // Length is checked before eos (vLLM's check_stop), so an eos as the last token is "length".
    stop_checker d(p);
    d.push(10, "");
    d.push(10, "");
    EXPECT_EQ(d.push(2, "").finish, finish_reason_length);
}

TEST(StopChecker, StopStringOnTheLastTokenBeatsLength) {
    sampling_params p = with_stop({"STOP"});
    p.max_tokens = 2;
    stop_checker c(p);
    c.push(10, "ok ST");
    auto r = c.push(11, "OP");
    EXPECT_EQ(r.finish, finish_reason_stop);
    EXPECT_EQ(r.stop_string, "STOP");
    EXPECT_EQ(r.text, "");
}

TEST(StopChecker, ContextLimit) {
    sampling_params p;
    p.max_tokens = 100;
    stop_checker c(p, 2);  // max_model_len - prompt length
    EXPECT_EQ(c.max_tokens(), 2);
    c.push(1, "a");
    EXPECT_EQ(c.push(1, "b").finish, finish_reason_length);
    EXPECT_THROW(stop_checker(p, 0), error);
}

TEST(StopChecker, MinTokensDefersStops) {
    // As vLLM: eos, stop ids and stop strings count only once more than min_tokens were generated.
    sampling_params p = with_stop({"END"});
    p.min_tokens = 2;
    p.eos_token_id = 2;
    stop_checker c(p);
    auto r = c.push(2, "");
    EXPECT_FALSE(r.finished());
    r = c.push(10, "xEND");  // token 2: stop strings not yet checked
    EXPECT_FALSE(r.finished());
    EXPECT_EQ(r.text, "xEND");
    r = c.push(11, "E");  // token 3: checked, "E" held
    EXPECT_EQ(r.text, "");
    r = c.push(11, "ND");
    EXPECT_EQ(r.finish, finish_reason_stop);
    EXPECT_EQ(r.text, "");
}

TEST(StopChecker, StraddlingMinTokensBoundary) {
    // The held prefix from the min_tokens phase completes a stop string afterwards.
    sampling_params p = with_stop({"END"});
    p.min_tokens = 1;
    stop_checker c(p);
    EXPECT_EQ(c.push(10, "aE").text, "a");
    auto r = c.push(11, "ND");
    EXPECT_EQ(r.finish, finish_reason_stop);
    EXPECT_EQ(r.text, "");
}

TEST(StopChecker, FlushOnAbort) {
    stop_checker c(with_stop({"</answer>"}));
    EXPECT_EQ(c.push(1, "42</ans").text, "42");
    EXPECT_EQ(c.flush(), "</ans");
    EXPECT_EQ(c.finished(), finish_reason_none);
}

TEST(StopChecker, EmptyStopStringRejected) {
    EXPECT_THROW(stop_checker(with_stop({""})), error);
}
