// cuda_backend::top_k_rows (sampling.cu) against cpu_top_k_rows (the reference) on fresh random rows:
// vocab 1, 7, 4096, 4097, 151936; k 1 (the sort-free greedy path), 20, 21, 256; 1 to 16 rows; rows with exact
// ties (values rounded to a few levels), -inf, NaN, -0 / +0, all -inf, +inf. SKIPPED without a GPU.
//
// Bounds: ids and values identical (bit for bit: values are read back from the logits); lse within
// 1e-5 · |lse| + 1e-6 (float chunk sums of expf, combined in double, vs float exp summed in double), and
// exactly -inf / +inf where the reference says so.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "cuda_test_util.h"

using namespace nibble;

namespace {

constexpr float neg_inf = -std::numeric_limits<float>::infinity();

std::vector<float> random_rows(std::mt19937& g, int64_t rows, int64_t vocab) {
    std::vector<float> l(size_t(rows * vocab));
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int64_t r = 0; r < rows; ++r) {
        const int kind = int(g() % 6);
        std::normal_distribution<float> nd(0.0f, 1.0f + float(g() % 4));
        for (int64_t i = 0; i < vocab; ++i) {
            float x = nd(g);
            if (kind == 1) x = std::round(x);                              // heavy ties
            if (kind == 2 && u(g) < 0.2f) x = neg_inf;                     // -inf entries
            if (kind == 3 && u(g) < 0.1f) x = std::nanf("");               // NaN entries
            if (kind == 3 && u(g) < 0.1f) x = u(g) < 0.5f ? 0.0f : -0.0f;  // signed zeros tie
            if (kind == 4) x = u(g) < 0.5f ? neg_inf : std::nanf("");      // nothing finite
            l[size_t(r * vocab + i)] = x;
        }
        if (kind == 5 && vocab > 2) l[size_t(r * vocab + vocab / 2)] = INFINITY;
    }
    return l;
}

bool same_bits(float a, float b) {
    uint32_t x, y;
    std::memcpy(&x, &a, 4);
    std::memcpy(&y, &b, 4);
    return x == y;
}

}  // namespace

TEST(CudaSampling, TopKRowsMatchesTheCpu) {
    REQUIRE_GPU();
    cuda_backend b;
    std::mt19937 g(99);
    for (int64_t vocab : {int64_t(1), int64_t(7), int64_t(4096), int64_t(4097), int64_t(151936)}) {
        for (int32_t k : {1, 20, 21, 256}) {
            const int64_t rows = 1 + int64_t(g() % 16);
            SCOPED_TRACE(testing::Message() << "vocab " << vocab << " k " << k << " rows " << rows);
            std::vector<float> l = random_rows(g, rows, vocab);
            float* d = b.alloc(l.size());
            b.upload(l.data(), l.size(), d);
            const size_t n = size_t(rows) * size_t(k);
            std::vector<float> cv(n), gv(n), cl(static_cast<size_t>(rows)), gl(static_cast<size_t>(rows));
            std::vector<int32_t> ci(n), gi(n);
            cpu_top_k_rows(l.data(), rows, vocab, k, cv.data(), ci.data(), cl.data());
            b.top_k_rows(d, rows, vocab, k, gv.data(), gi.data(), gl.data());
            for (size_t j = 0; j < n; ++j) {
                ASSERT_EQ(gi[j], ci[j]) << "entry " << j;
                ASSERT_TRUE(same_bits(gv[j], cv[j])) << "entry " << j << ": " << gv[j] << " vs " << cv[j];
            }
            for (int64_t r = 0; r < rows; ++r) {
                const float c = cl[size_t(r)], x = gl[size_t(r)];
                if (std::isinf(c))
                    EXPECT_EQ(x, c) << "row " << r;
                else
                    EXPECT_NEAR(x, c, 1e-5 * std::fabs(c) + 1e-6) << "row " << r;
            }
        }
    }
}

TEST(CudaSampling, TopKRowsRejectsBadSizes) {
    REQUIRE_GPU();
    cuda_backend b;
    float* d = b.alloc(8);
    std::vector<float> v(300), lse(1);
    std::vector<int32_t> ids(300);
    EXPECT_THROW(b.top_k_rows(d, 1, 8, 0, v.data(), ids.data(), lse.data()), std::exception);
    EXPECT_THROW(b.top_k_rows(d, 1, 8, 257, v.data(), ids.data(), lse.data()), std::exception);
    EXPECT_THROW(b.top_k_rows(d, 1, 0, 1, v.data(), ids.data(), lse.data()), std::exception);
}
