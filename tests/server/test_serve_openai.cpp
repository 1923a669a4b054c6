// The official `openai` npm client against nibble serve: chat and completions, streaming and not.
// SKIPPED without node or the npm oracles (fixture "oracle").
#include <gtest/gtest.h>

#include <filesystem>

#include "server/serve_util.h"
#include "test_util.h"

using namespace nibble;

TEST(serve_openai, official_client_streaming_and_not) {
    const std::string modules = std::string(NIBBLE_ORACLE_DIR) + "/node_modules";
    if (!std::filesystem::exists(modules + "/openai/package.json") ||
        std::system("node --version > /dev/null 2>&1") != 0)
        GTEST_SKIP() << "SKIPPED: no node or no openai npm package in " << modules;
    test::serve_process srv("--served-model-name tiny --api-key k123");
    ASSERT_TRUE(srv.ok()) << srv.log();
    const std::string cmd = "timeout 120 node " + std::string(NIBBLE_OPENAI_SCRIPT) + " " + modules +
                            " http://127.0.0.1:" + std::to_string(srv.port()) + "/v1 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_TRUE(p);
    std::string out;
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    int rc = pclose(p);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("ok"), std::string::npos) << out;
}
