// A timeline of every GPU kernel, memcpy and memset a process runs, kernels replayed inside CUDA graphs
// included (one record per kernel node), for the GPU machine where Nsight Systems is not installed. A CUPTI
// injection library: the CUDA driver dlopens it at cuInit when CUDA_INJECTION64_PATH names it and calls
// InitializeInjection, which enables CUPTI's activity records; at exit they are flushed and written as CSV.
//
//   export CUDA_INJECTION64_PATH=$PWD/.device/libnibble_kernel_trace.so NIBBLE_TRACE_OUT=/tmp/trace.csv
//   .device/nibble bench --model DIR --device cuda --batch 1 --prompt-len 128 --gen-len 16 --reps 1
//
// CSV (NIBBLE_TRACE_OUT, default /tmp/nibble_trace.csv), one header line, then one line per record in
// start order: start_ns,end_ns,duration_ns,grid_x,grid_y,grid_z,block_x,block_y,block_z,stream_id,
// graph_id,name. Timestamps are CUPTI's (ns, one clock for all records); graph_id is 0 outside graph
// launches; name is the demangled kernel name, quoted (inner quotes doubled), or "[memcpy]" / "[memset]"
// (grid and block 0). tools/trace_gaps.py reads it.
//
// Kernels are recorded as CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, which leaves kernel concurrency (and
// programmatic dependent launch overlap) alone; CUPTI_ACTIVITY_KIND_KERNEL would serialize them. The
// records are cast to the structs cupti_activity.h of CUDA 13 documents for each kind
// (CUpti_ActivityKernel10, CUpti_ActivityMemcpy6, CUpti_ActivityMemset4): CUPTI fills the struct of the
// header version it ships with, so the library must run against the libcupti it was built with
// (tools/device_pack.sh packs it). CUPTI errors are printed and otherwise ignored: the traced process is
// never stopped.
#include <cupti.h>
#include <cxxabi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t k_buffer_bytes = size_t(8) << 20;  // one CUPTI activity buffer
constexpr size_t k_buffer_align = 8;                // CUPTI's required alignment of a buffer

// Prints a failed CUPTI call (what and why) and carries on.
bool cupti_ok(CUptiResult r, const char* what) {
    if (r == CUPTI_SUCCESS) return true;
    const char* s = nullptr;
    if (cuptiGetResultString(r, &s) != CUPTI_SUCCESS || !s) s = "unknown CUPTI error";
    std::fprintf(stderr, "nibble_kernel_trace: %s: %s\n", what, s);
    return false;
}

struct record {
    uint64_t start = 0, end = 0;
    int32_t grid[3] = {0, 0, 0}, block[3] = {0, 0, 0};
    uint32_t stream = 0, graph = 0;
    uint32_t name = 0;  // index into trace::names
};

// Everything the completed-buffer callback (possibly on a CUPTI thread) and the exit handler share, under
// one mutex. Names are interned: CUPTI's name pointers are shared between records and only valid while the
// module is loaded, so each distinct name is copied once.
struct trace {
    std::mutex m;
    std::vector<record> records;
    std::vector<std::string> names;
    std::unordered_map<std::string, uint32_t> name_index;
    size_t kernels = 0, memcpys = 0, memsets = 0, dropped = 0, untimed = 0;
    bool written = false;  // records completed after the CSV is written are ignored

    uint32_t intern(const char* name) {
        std::string s = name ? name : "[unnamed]";
        auto [it, inserted] = name_index.emplace(s, uint32_t(names.size()));
        if (inserted) names.push_back(std::move(s));
        return it->second;
    }
};

// Never destroyed: the exit handler and late CUPTI callbacks may run after static destructors.
trace& the_trace() {
    static trace* t = new trace;
    return *t;
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
    *buffer = static_cast<uint8_t*>(std::aligned_alloc(k_buffer_align, k_buffer_bytes));
    *size = *buffer ? k_buffer_bytes : 0;  // no buffer: CUPTI drops the records (counted at exit)
    *max_records = 0;                      // as many as fit
    if (!*buffer) std::fprintf(stderr, "nibble_kernel_trace: out of memory for an activity buffer\n");
}

void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t* buffer, size_t size, size_t valid) {
    trace& t = the_trace();
    {
        std::lock_guard<std::mutex> lock(t.m);
        CUpti_Activity* a = nullptr;
        for (;;) {
            const CUptiResult r = cuptiActivityGetNextRecord(buffer, valid, &a);
            if (r == CUPTI_ERROR_MAX_LIMIT_REACHED) break;  // the end of the buffer
            if (!cupti_ok(r, "cuptiActivityGetNextRecord")) break;
            if (t.written) continue;
            record rec;
            if (a->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || a->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
                const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(a);
                rec = {k->start,
                       k->end,
                       {k->gridX, k->gridY, k->gridZ},
                       {k->blockX, k->blockY, k->blockZ},
                       k->streamId,
                       k->graphId,
                       t.intern(k->name)};
                ++t.kernels;
            } else if (a->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
                const auto* c = reinterpret_cast<const CUpti_ActivityMemcpy6*>(a);
                rec = {c->start, c->end, {0, 0, 0}, {0, 0, 0}, c->streamId, c->graphId, t.intern("[memcpy]")};
                ++t.memcpys;
            } else if (a->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
                const auto* s = reinterpret_cast<const CUpti_ActivityMemset4*>(a);
                rec = {s->start, s->end, {0, 0, 0}, {0, 0, 0}, s->streamId, s->graphId, t.intern("[memset]")};
                ++t.memsets;
            } else {
                continue;
            }
            if (rec.start == 0 && rec.end == 0) {  // CUPTI could not time it
                ++t.untimed;
                continue;
            }
            t.records.push_back(rec);
        }
        size_t dropped = 0;
        if (cupti_ok(cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped),
                     "cuptiActivityGetNumDroppedRecords"))
            t.dropped += dropped;
    }
    std::free(buffer);
}

// The demangled name, or the name itself when it is not a mangled C++ name.
std::string demangle(const std::string& name) {
    int status = 0;
    char* d = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
    std::string out = status == 0 && d ? d : name;
    std::free(d);
    return out;
}

// A CSV field: quoted, inner quotes doubled.
std::string csv_quote(const std::string& s) {
    std::string q = "\"";
    for (char c : s) {
        if (c == '"') q += '"';
        q += c;
    }
    return q + '"';
}

// At exit: every buffer flushed (forced: records still incomplete included), the CSV written once.
void write_trace() {
    cupti_ok(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED), "cuptiActivityFlushAll");
    trace& t = the_trace();
    std::lock_guard<std::mutex> lock(t.m);
    if (t.written) return;
    t.written = true;
    const char* env = std::getenv("NIBBLE_TRACE_OUT");
    const std::string path = env && *env ? env : "/tmp/nibble_trace.csv";
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (!f) {
        std::fprintf(stderr, "nibble_kernel_trace: cannot write %s; %zu records lost\n", path.c_str(),
                     t.records.size());
        return;
    }
    std::vector<std::string> quoted(t.names.size());
    for (size_t i = 0; i < t.names.size(); ++i) quoted[i] = csv_quote(demangle(t.names[i]));
    std::stable_sort(t.records.begin(), t.records.end(),
                     [](const record& a, const record& b) { return a.start < b.start; });
    std::fprintf(
        f,
        "start_ns,end_ns,duration_ns,grid_x,grid_y,grid_z,block_x,block_y,block_z,stream_id,graph_id,"
        "name\n");
    for (const record& r : t.records)
        std::fprintf(f, "%llu,%llu,%lld,%d,%d,%d,%d,%d,%d,%u,%u,%s\n", (unsigned long long)r.start,
                     (unsigned long long)r.end, (long long)(r.end - r.start), r.grid[0], r.grid[1], r.grid[2],
                     r.block[0], r.block[1], r.block[2], r.stream, r.graph, quoted[r.name].c_str());
    const bool ok = std::fclose(f) == 0;
    std::fprintf(stderr,
                 "nibble_kernel_trace: %zu records (%zu kernels, %zu memcpy, %zu memset; %zu dropped, %zu "
                 "untimed) %s %s\n",
                 t.records.size(), t.kernels, t.memcpys, t.memsets, t.dropped, t.untimed,
                 ok ? "written to" : "FAILED to write", path.c_str());
}

}  // namespace

// Called by the CUDA driver at cuInit when CUDA_INJECTION64_PATH names this library (the only symbol it
// exports). Returns 1 (success) even when CUPTI fails: the process runs on, untraced.
extern "C" __attribute__((visibility("default"))) int InitializeInjection(void) {
    static bool initialized = false;
    if (initialized) return 1;
    initialized = true;
    if (!cupti_ok(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed),
                  "cuptiActivityRegisterCallbacks"))
        return 1;
    cupti_ok(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "enable CONCURRENT_KERNEL");
    cupti_ok(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY), "enable MEMCPY");
    cupti_ok(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET), "enable MEMSET");
    // Registered at cuInit, later than the CUDA runtime's exit handlers (static initialization): it runs
    // before them, while the contexts are alive.
    if (std::atexit(write_trace) != 0) std::fprintf(stderr, "nibble_kernel_trace: atexit failed\n");
    return 1;
}
