#include "loader/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "core/error.h"

namespace nibble {

namespace {

using json = nlohmann::json;

constexpr size_t k_max_quoted = 160;  // longest name echoed in a message (hostile names can be huge)

// A JSON string literal for messages: escaped (control characters, quotes) and truncated.
std::string quote_name(std::string_view s) {
    std::string q = json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
    if (q.size() > k_max_quoted) q = q.substr(0, k_max_quoted) + "...\"";
    return q;
}

// "number -3", "array [1,2]", "string \"x\"": what was found, for messages.
std::string describe(const json& v) {
    std::string text = v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > 60) text = text.substr(0, 60) + "...";
    return fmt::format("{} {}", v.type_name(), text);
}

std::string known_dtypes() {
    std::string s;
    for (int i = 0; i < dtype_count; ++i) {
        if (i) s += ", ";
        s += dtype_name(static_cast<dtype>(i));
    }
    return s;
}

std::string offsets_str(uint64_t begin, uint64_t end) {
    return fmt::format("[{}, {}]", begin, end);
}

// Parses the header text strictly: syntax errors become nibble::error with the byte position; duplicate
// keys (which nlohmann would silently merge) and nesting deeper than the format allows are rejected.
json parse_json(std::string_view text, std::string_view file) {
    // Per open object: the keys seen so far.
    std::vector<std::set<std::string>> keys;
    std::optional<std::string> tensor;  // the current top-level key
    auto where = [&]() -> std::string {
        if (!tensor) return "header";
        if (*tensor == "__metadata__") return *tensor;
        return "tensor " + quote_name(*tensor);
    };
    auto callback = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
        switch (event) {
            case json::parse_event_t::object_start:
            case json::parse_event_t::array_start:
                // header {} -> entry {} -> shape [] is the deepest legal nesting.
                if (depth > 2)
                    fail("{}: {}: unexpected nested {} (depth {})", file, where(),
                         event == json::parse_event_t::object_start ? "object" : "array", depth);
                if (event == json::parse_event_t::object_start) keys.emplace_back();
                break;
            case json::parse_event_t::object_end:
                keys.pop_back();
                break;
            case json::parse_event_t::key: {
                const std::string& k = parsed.get_ref<const std::string&>();
                if (depth == 1) tensor = k;
                if (!keys.back().insert(k).second) {
                    if (depth == 1) fail("{}: header has two entries named {}", file, quote_name(k));
                    fail("{}: {}: duplicate field {}", file, where(), quote_name(k));
                }
                break;
            }
            default:
                break;
        }
        return true;
    };
    // nlohmann stops at a NUL byte as if the input ended there; JSON never holds a raw one.
    if (size_t nul = text.find('\0'); nul != std::string_view::npos)
        fail("{}: header is not valid JSON at byte {} of {}: NUL byte", file, nul, text.size());
    try {
        return json::parse(text.begin(), text.end(), callback);
    } catch (const json::parse_error& e) {
        std::string what = e.what();
        if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
        size_t at = std::min<size_t>(e.byte ? e.byte - 1 : 0, text.size());  // e.byte counts from 1
        fail("{}: header is not valid JSON at byte {} of {}: {}", file, at, text.size(), what);
    } catch (const json::exception& e) {
        fail("{}: header could not be parsed: {}", file, e.what());
    }
}

void parse_metadata(const json& v, std::string_view file, std::map<std::string, std::string>& out) {
    if (!v.is_object()) fail("{}: __metadata__ must be an object of strings, found {}", file, describe(v));
    for (const auto& [k, val] : v.items()) {
        if (!val.is_string())
            fail("{}: __metadata__ {} must be a string, found {}", file, quote_name(k), describe(val));
        out[k] = val.get<std::string>();
    }
}

safetensors_entry parse_entry(const std::string& name, const json& v, uint64_t data_size,
                              std::string_view file) {
    const std::string q = quote_name(name);
    if (!v.is_object()) fail("{}: tensor {}: entry must be an object, found {}", file, q, describe(v));
    for (const auto& [k, _] : v.items())
        if (k != "dtype" && k != "shape" && k != "data_offsets")
            fail("{}: tensor {}: unexpected field {} (expected dtype, shape, data_offsets)", file, q,
                 quote_name(k));
    for (const char* k : {"dtype", "shape", "data_offsets"})
        if (!v.contains(k)) fail("{}: tensor {}: missing field \"{}\"", file, q, k);

    safetensors_entry e;
    e.name = name;

    const json& dt = v["dtype"];
    if (!dt.is_string()) fail("{}: tensor {}: dtype must be a string, found {}", file, q, describe(dt));
    const std::string& dt_name = dt.get_ref<const std::string&>();
    std::optional<dtype> t = dtype_from_name(dt_name);
    if (!t) fail("{}: tensor {}: unknown dtype {} (known: {})", file, q, quote_name(dt_name), known_dtypes());
    e.type = *t;

    const json& shape = v["shape"];
    if (!shape.is_array()) fail("{}: tensor {}: shape must be an array, found {}", file, q, describe(shape));
    // numel is kept within int64 so that tensor_view::numel() cannot overflow either.
    uint64_t numel = 1;
    for (size_t i = 0; i < shape.size(); ++i) {
        const json& d = shape[i];
        if (!d.is_number_unsigned())
            fail("{}: tensor {}: shape[{}] must be a non-negative integer, found {}", file, q, i,
                 describe(d));
        uint64_t n = d.get<uint64_t>();
        if (n > uint64_t(std::numeric_limits<int64_t>::max()))
            fail("{}: tensor {}: shape[{}] = {} is out of the int64 range", file, q, i, n);
        e.shape.push_back(int64_t(n));
        if (__builtin_mul_overflow(numel, n, &numel) || numel > uint64_t(std::numeric_limits<int64_t>::max()))
            fail("{}: tensor {}: shape {} overflows: the element count does not fit in 63 bits", file, q,
                 describe(shape));
    }
    uint64_t n_bytes = 0;
    if (__builtin_mul_overflow(numel, uint64_t(dtype_size(e.type)), &n_bytes))
        fail("{}: tensor {}: {} {} overflows: the byte count does not fit in 64 bits", file, q, dt_name,
             shape_str(e.shape));

    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        fail("{}: tensor {}: data_offsets must be an array of 2 unsigned integers, found {}", file, q,
             describe(off));
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.end < e.begin)
        fail("{}: tensor {}: data_offsets {} end before they begin", file, q, offsets_str(e.begin, e.end));
    if (e.end > data_size)
        fail("{}: tensor {}: data_offsets {} exceed the data section of {} bytes", file, q,
             offsets_str(e.begin, e.end), data_size);
    if (e.end - e.begin != n_bytes)
        fail("{}: tensor {}: data_offsets {} hold {} bytes but {} {} needs {}", file, q,
             offsets_str(e.begin, e.end), e.end - e.begin, dt_name, shape_str(e.shape), n_bytes);
    return e;
}

// Sorts by data position and rejects overlaps. Gaps are accepted (the reference implementation
// requires full coverage; nothing here depends on it). Zero-byte tensors overlap nothing.
void sort_and_check_overlaps(std::vector<safetensors_entry>& tensors, std::string_view file) {
    std::sort(tensors.begin(), tensors.end(), [](const safetensors_entry& a, const safetensors_entry& b) {
        if (a.begin != b.begin) return a.begin < b.begin;
        if (a.end != b.end) return a.end < b.end;
        return a.name < b.name;
    });
    const safetensors_entry* last = nullptr;  // the non-empty tensor reaching furthest so far
    for (const safetensors_entry& e : tensors) {
        if (e.begin == e.end) continue;
        if (last && e.begin < last->end)
            fail("{}: tensor {}: data_offsets {} overlap tensor {} at {}", file, quote_name(e.name),
                 offsets_str(e.begin, e.end), quote_name(last->name), offsets_str(last->begin, last->end));
        if (!last || e.end > last->end) last = &e;
    }
}

std::string errno_text() {
    return std::strerror(errno);
}

// write(2) until done; retries on EINTR and short writes.
bool write_all(int fd, const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= size_t(w);
    }
    return true;
}

}  // namespace

safetensors_header safetensors_parse_header(std::string_view text, uint64_t data_size,
                                            std::string_view file) {
    json root = parse_json(text, file);
    if (!root.is_object()) fail("{}: header must be a JSON object, found {}", file, describe(root));
    safetensors_header h;
    for (const auto& [name, v] : root.items()) {
        if (name == "__metadata__")
            parse_metadata(v, file, h.metadata);
        else
            h.tensors.push_back(parse_entry(name, v, data_size, file));
    }
    sort_and_check_overlaps(h.tensors, file);
    return h;
}

safetensors_header safetensors_parse(const uint8_t* bytes, uint64_t size, std::string_view file) {
    if (size < 8) fail("{}: file is {} bytes, too short for the 8-byte header length", file, size);
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | bytes[i];
    if (len > safetensors_max_header)
        fail("{}: header length {} exceeds the limit of {} bytes", file, len, safetensors_max_header);
    if (len > size - 8)
        fail("{}: header length {} needs {} bytes but the file has {} (truncated?)", file, len, len + 8,
             size);
    std::string_view text(reinterpret_cast<const char*>(bytes + 8), size_t(len));
    safetensors_header h = safetensors_parse_header(text, size - 8 - len, file);
    h.data_offset = 8 + len;
    return h;
}

// --- mapped_file ---

mapped_file::mapped_file(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open {}: {}", path, errno_text());
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        std::string why = errno_text();
        ::close(fd);
        fail("cannot stat {}: {}", path, why);
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail("cannot map {}: not a regular file", path);
    }
    size_ = uint64_t(st.st_size);
    if (size_ > 0) {
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            std::string why = errno_text();
            ::close(fd);
            fail("cannot mmap {} ({} bytes): {}", path, size_, why);
        }
        data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);  // the mapping stays valid without the descriptor
}

mapped_file::~mapped_file() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

// --- safetensors_writer ---

safetensors_writer::safetensors_writer(const std::string& path, std::vector<safetensors_entry> tensors,
                                       const std::map<std::string, std::string>& metadata)
    : path_(path), tensors_(std::move(tensors)) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        auto& meta = header["__metadata__"];
        meta = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata) meta[k] = v;
    }
    for (safetensors_entry& e : tensors_) {
        if (e.name == "__metadata__") fail("{}: a tensor cannot be named __metadata__", path);
        if (header.contains(e.name)) fail("{}: tensor {} is listed twice", path, quote_name(e.name));
        uint64_t n = dtype_size(e.type);
        for (int64_t d : e.shape) {
            if (d < 0)
                fail("{}: tensor {}: negative dimension in shape {}", path, quote_name(e.name),
                     shape_str(e.shape));
            if (__builtin_mul_overflow(n, uint64_t(d), &n))
                fail("{}: tensor {}: shape {} overflows", path, quote_name(e.name), shape_str(e.shape));
        }
        e.begin = total_;
        if (__builtin_add_overflow(total_, n, &total_)) fail("{}: total data size overflows", path);
        e.end = total_;
        header[e.name] = {
            {"dtype", dtype_name(e.type)}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::exception& e) {
        fail("{}: cannot encode the header (names and metadata must be UTF-8): {}", path, e.what());
    }
    // Like the reference writer: pad with spaces so the data section starts 8-byte aligned.
    text.append((8 - text.size() % 8) % 8, ' ');

    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create {}: {}", path, errno_text());
    uint8_t prefix[8];
    for (int i = 0; i < 8; ++i) prefix[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
    if (!write_all(fd_, prefix, 8) || !write_all(fd_, text.data(), text.size())) {
        std::string why = errno_text();
        ::close(fd_);  // no destructor runs for a constructor that throws
        ::unlink(path.c_str());
        fail("cannot write {}: {}", path, why);
    }
}

safetensors_writer::~safetensors_writer() {
    if (finished_) return;
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
}

void safetensors_writer::write(const void* data, size_t n) {
    if (finished_) fail("{}: write after finish()", path_);
    if (n > total_ - written_)
        fail("{}: writing {} bytes at data offset {} runs past the end of the last tensor ({} bytes in all)",
             path_, n, written_, total_);
    if (!write_all(fd_, data, n)) fail("cannot write {}: {}", path_, errno_text());
    written_ += n;
}

void safetensors_writer::skip(size_t n) {
    if (finished_) fail("{}: skip after finish()", path_);
    if (n > total_ - written_)
        fail("{}: skipping {} bytes at data offset {} runs past the end of the last tensor ({} bytes in all)",
             path_, n, written_, total_);
    if (::lseek(fd_, off_t(n), SEEK_CUR) < 0) fail("cannot seek in {}: {}", path_, errno_text());
    written_ += n;
}

void safetensors_writer::finish() {
    if (finished_) return;
    if (written_ != total_) {
        auto it = std::find_if(tensors_.begin(), tensors_.end(),
                               [&](const safetensors_entry& e) { return e.end > written_; });
        fail("{}: finish() after {} of {} data bytes: tensor {} got {} of its {} bytes", path_, written_,
             total_, quote_name(it->name), written_ - it->begin, it->end - it->begin);
    }
    // A trailing skip() leaves the file short: extend it to its full length (as a hole).
    off_t end = ::lseek(fd_, 0, SEEK_CUR);
    if (end < 0 || ::ftruncate(fd_, end) != 0) fail("cannot set the size of {}: {}", path_, errno_text());
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot close {}: {}", path_, errno_text());
    finished_ = true;
}

}  // namespace nibble
