// cpu_top_k_rows (cpu_backend.h): the reference for backend::top_k_rows. Per row, one scan keeps the k
// best (value, id) pairs in a heap whose top is the worst kept; as ids arrive in increasing order, only a
// strictly larger value can displace it (an equal value with a larger id ranks lower). Then the heap is
// sorted, and a second pass sums exp(l - max) in double.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "cpu/cpu_backend.h"

namespace nibble {

namespace {

constexpr float neg_inf = -std::numeric_limits<float>::infinity();

struct ranked {
    float v;
    int32_t id;
};

// Strict order: larger value first, lower id first on ties.
bool ranks_before(const ranked& a, const ranked& b) {
    return a.v > b.v || (a.v == b.v && a.id < b.id);
}

void top_k_row(const float* l, int64_t vocab, int32_t k, float* values, int32_t* ids, float* lse) {
    std::vector<ranked> heap;
    heap.reserve(size_t(k));
    float m = neg_inf;
    bool pos_inf = false;
    for (int64_t i = 0; i < vocab; ++i) {
        const float v = std::isnan(l[i]) ? neg_inf : l[i];
        m = std::max(m, v);
        pos_inf = pos_inf || v == std::numeric_limits<float>::infinity();
        const ranked r{v, int32_t(i)};
        if (heap.size() < size_t(k)) {
            heap.push_back(r);
            std::push_heap(heap.begin(), heap.end(), ranks_before);
        } else if (v > heap.front().v) {
            std::pop_heap(heap.begin(), heap.end(), ranks_before);
            heap.back() = r;
            std::push_heap(heap.begin(), heap.end(), ranks_before);
        }
    }
    std::sort(heap.begin(), heap.end(), ranks_before);
    for (int32_t j = 0; j < k; ++j) {
        const bool in = size_t(j) < heap.size();
        values[j] = in ? heap[size_t(j)].v : neg_inf;
        ids[j] = in ? heap[size_t(j)].id : -1;
    }
    if (m == neg_inf || pos_inf) {
        *lse = m;
        return;
    }
    double s = 0.0;
    for (int64_t i = 0; i < vocab; ++i)
        if (!std::isnan(l[i])) s += std::exp(l[i] - m);
    *lse = m + float(std::log(s));
}

}  // namespace

void cpu_top_k_rows(const float* logits, int64_t rows, int64_t vocab, int32_t k, float* values, int32_t* ids,
                    float* lse) {
    if (k < 1 || k > top_k_rows_max) fail("top_k_rows: k = {} outside [1, {}]", k, top_k_rows_max);
    if (vocab < 1 || rows < 0) fail("top_k_rows: {} rows of {} logits", rows, vocab);
#pragma omp parallel for schedule(static) if (rows > 1)
    for (int64_t r = 0; r < rows; ++r)
        top_k_row(logits + r * vocab, vocab, k, values + r * k, ids + r * k, lse + r);
}

void cpu_backend::top_k_rows(const float* logits, int64_t rows, int64_t vocab, int32_t k, float* values,
                             int32_t* ids, float* lse) {
    cpu_top_k_rows(logits, rows, vocab, k, values, ids, lse);
}

}  // namespace nibble
