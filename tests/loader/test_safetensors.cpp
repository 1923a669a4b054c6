// safetensors: writer -> parser round trips, the writer's contract, and hostile headers (each error
// must name the file, the tensor or field, and what was expected versus found).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <random>

#include "loader/checkpoint.h"
#include "loader_test_util.h"
#include "test_util.h"

using namespace nibble;
using namespace nibble::test;

namespace {

std::string parse_header_error(const std::string& header, uint64_t data_size = 1024) {
    return st_parse_error(st_image(header, std::string(data_size, '\0')));
}

safetensors_header parse_image(const std::string& image) {
    return safetensors_parse(reinterpret_cast<const uint8_t*>(image.data()), image.size(), "test");
}

std::vector<safetensors_entry> mixed_tensors() {
    return {
        st_entry("w.f32", dtype_f32, {2, 3}),
        st_entry("scalar.bf16", dtype_bf16, {}),
        st_entry("one.i64", dtype_i64, {1}),
        st_entry("empty.u8", dtype_u8, {0}),
        st_entry("scales.e4m3", dtype_f8_e4m3, {4, 0}),
        st_entry("mask.bool", dtype_bool, {3}),
        st_entry("half.f16", dtype_f16, {5, 1, 2}),
        st_entry("big.f64", dtype_f64, {3}),
    };
}

}  // namespace

TEST(safetensors, round_trip_dtypes_shapes_metadata) {
    temp_dir tmp;
    const std::string path = tmp / "model.safetensors";
    std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "quoted \" and \xc3\xa9"}};
    std::vector<safetensors_entry> planned = write_pattern_file(path, mixed_tensors(), meta);

    // Offsets are sequential in the given order.
    uint64_t at = 0;
    for (const safetensors_entry& e : planned) {
        EXPECT_EQ(e.begin, at) << e.name;
        at = e.end;
    }
    EXPECT_EQ(planned[0].end, 24u);
    EXPECT_EQ(planned[1].end - planned[1].begin, 2u);  // 0-dim: one element

    mapped_file f(path);
    safetensors_header h = safetensors_parse(f.data(), f.size(), path);
    EXPECT_EQ(h.data_offset % 8, 0u);  // header padded like the reference writer
    EXPECT_EQ(f.size(), h.data_offset + at);
    EXPECT_EQ(h.metadata, meta);
    ASSERT_EQ(h.tensors.size(), planned.size());
    for (size_t i = 0; i < planned.size(); ++i) {
        // Sorted by begin; zero-byte tensors at the same offset come in name order.
        const safetensors_entry& e = h.tensors[i];
        auto it = std::find_if(planned.begin(), planned.end(), [&](auto& p) { return p.name == e.name; });
        ASSERT_NE(it, planned.end()) << e.name;
        EXPECT_EQ(e.type, it->type) << e.name;
        EXPECT_EQ(e.shape, it->shape) << e.name;
        EXPECT_EQ(e.begin, it->begin) << e.name;
        EXPECT_EQ(e.end, it->end) << e.name;
        if (i) {
            EXPECT_LE(h.tensors[i - 1].begin, e.begin);
        }
    }

    // The header lists __metadata__ first, then the tensors in the given order, padded with spaces.
    std::string header(reinterpret_cast<const char*>(f.data()) + 8, h.data_offset - 8);
    EXPECT_EQ(header.rfind("{\"__metadata__\":{", 0), 0u) << header;
    size_t last = 0;
    for (const safetensors_entry& e : planned) {
        size_t p = header.find("\"" + e.name + "\":{");
        ASSERT_NE(p, std::string::npos) << e.name;
        EXPECT_GT(p, last) << e.name;
        last = p;
    }
    EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}'));

    checkpoint ck(tmp.path);
    ASSERT_EQ(ck.tensors().size(), planned.size());
    EXPECT_EQ(ck.total_bytes(), at);
    EXPECT_EQ(ck.files(), std::vector<std::string>{path});
    for (size_t t = 0; t < planned.size(); ++t) {
        const tensor_view& v = ck.get(planned[t].name);
        EXPECT_EQ(v.name, planned[t].name);
        EXPECT_EQ(v.type, planned[t].type);
        EXPECT_EQ(v.shape, planned[t].shape);
        EXPECT_EQ(v.n_bytes, size_t(v.numel()) * dtype_size(v.type));
        EXPECT_EQ(v.data, f.size() ? ck.get(planned[0].name).data + planned[t].begin : nullptr);
        for (size_t i = 0; i < v.n_bytes; ++i) ASSERT_EQ(v.data[i], pattern_byte(t, i)) << v.name << " " << i;
    }
    EXPECT_EQ(ck.find("absent"), nullptr);
}

TEST(safetensors, no_metadata_no_tensors) {
    temp_dir tmp;
    write_pattern_file(tmp / "a.safetensors", {});
    std::string bytes = read_file(tmp / "a.safetensors");
    EXPECT_EQ(bytes, st_image("{}      "));
    auto h = safetensors_parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "a");
    EXPECT_TRUE(h.tensors.empty());
    EXPECT_TRUE(h.metadata.empty());
    EXPECT_EQ(h.data_offset, 16u);
}

TEST(safetensors, writer_chunks_span_tensor_boundaries_and_skip_leaves_zeros) {
    temp_dir tmp;
    const std::string path = tmp / "x.safetensors";
    safetensors_writer w(path, {st_entry("a", dtype_u8, {3}), st_entry("b", dtype_u16, {2}),
                                st_entry("hole", dtype_f32, {1024}), st_entry("c", dtype_u8, {2})});
    const uint8_t first[] = {1, 2, 3, 4, 5};
    w.write(first, 5);  // all of a, half of b
    const uint8_t second[] = {6, 7};
    w.write(second, 2);  // rest of b
    w.skip(4096);        // hole
    w.skip(2);           // a trailing hole: finish() extends the file
    w.finish();
    mapped_file f(path);
    auto h = safetensors_parse(f.data(), f.size(), path);
    ASSERT_EQ(f.size(), h.data_offset + 7 + 4096 + 2);
    const uint8_t* d = f.data() + h.data_offset;
    for (int i = 0; i < 7; ++i) EXPECT_EQ(d[i], i + 1);
    for (int i = 7; i < 7 + 4096 + 2; ++i) ASSERT_EQ(d[i], 0) << i;
}

TEST(safetensors, writer_rejects_overrun_and_short_finish_and_removes_partial_file) {
    temp_dir tmp;
    const std::string path = tmp / "x.safetensors";
    {
        safetensors_writer w(path, {st_entry("a", dtype_u8, {3}), st_entry("b.weight", dtype_bf16, {4})});
        EXPECT_TRUE(file_exists(path));
        uint8_t buf[16] = {};
        w.write(buf, 5);
        try {
            w.finish();
            ADD_FAILURE() << "finish() accepted a short file";
        } catch (const nibble::error& e) {
            EXPECT_CONTAINS(e.what(), "\"b.weight\"", "got 2 of its 8 bytes", "5 of 11");
        }
        try {
            w.write(buf, 7);
            ADD_FAILURE() << "write past the end accepted";
        } catch (const nibble::error& e) {
            EXPECT_CONTAINS(e.what(), "runs past the end", "11 bytes");
        }
        EXPECT_THROW(w.skip(7), nibble::error);
    }
    EXPECT_FALSE(file_exists(path));  // unfinished: removed

    EXPECT_THROW(safetensors_writer(path, {st_entry("a", dtype_u8, {1}), st_entry("a", dtype_u8, {1})}),
                 nibble::error);
    EXPECT_THROW(safetensors_writer(path, {st_entry("__metadata__", dtype_u8, {1})}), nibble::error);
    EXPECT_THROW(safetensors_writer(path, {st_entry("neg", dtype_u8, {-1})}), nibble::error);
    EXPECT_THROW(safetensors_writer(tmp / "no/such/dir/x.safetensors", {}), nibble::error);
}

TEST(safetensors, mapped_file_empty_missing_and_folder) {
    temp_dir tmp;
    write_file(tmp / "empty", "");
    mapped_file f(tmp / "empty");
    EXPECT_EQ(f.size(), 0u);
    EXPECT_EQ(f.data(), nullptr);
    EXPECT_CONTAINS(st_parse_error(""), "model.safetensors", "0 bytes");
    try {
        mapped_file m(tmp / "missing");
        ADD_FAILURE();
    } catch (const nibble::error& e) {
        EXPECT_CONTAINS(e.what(), "missing", "No such file");
    }
    EXPECT_THROW(mapped_file m(tmp.path), nibble::error);
}

TEST(safetensors, accepts_gaps_trailing_bytes_and_zero_size_tensors_anywhere) {
    std::string image = st_image(R"({"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]},
        "a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},
        "z":{"dtype":"F32","shape":[0,7],"data_offsets":[2,2]},
        "y":{"dtype":"F32","shape":[3,0],"data_offsets":[20,20]}} )",
                                 std::string(20, 'x'));
    auto h = parse_image(image);
    ASSERT_EQ(h.tensors.size(), 4u);
    EXPECT_EQ(h.tensors[0].name, "a");
    EXPECT_EQ(h.tensors[1].name, "z");
    EXPECT_EQ(h.tensors[2].name, "b");
    EXPECT_EQ(h.tensors[3].name, "y");
}

TEST(safetensors, error_names_tensor_and_sizes_exactly) {
    std::string header =
        R"({"model.layers.0.mlp.up_proj.weight":{"dtype":"BF16","shape":[16,16],"data_offsets":[0,100]}})";
    EXPECT_EQ(
        st_parse_error(st_image(header, std::string(100, '\0'))),
        "model.safetensors: tensor \"model.layers.0.mlp.up_proj.weight\": data_offsets [0, 100] hold 100 "
        "bytes but BF16 [16, 16] needs 512");
}

// --- hostile files ---

TEST(safetensors_hostile, truncated_inside_length_prefix) {
    EXPECT_CONTAINS(st_parse_error(std::string("\x10\0\0\0\0", 5)), "model.safetensors", "5 bytes",
                    "8-byte header length");
}

TEST(safetensors_hostile, truncated_inside_header) {
    std::string image =
        st_image(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(8, 'x'));
    std::string cut = image.substr(0, 20);
    EXPECT_CONTAINS(st_parse_error(cut), "model.safetensors", "header length 54", "needs 62 bytes",
                    "file has 20");
}

TEST(safetensors_hostile, truncated_inside_data) {
    std::string image =
        st_image(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(8, 'x'));
    EXPECT_CONTAINS(st_parse_error(image.substr(0, image.size() - 3)), "model.safetensors", "tensor \"t\"",
                    "data_offsets [0, 8]", "data section of 5 bytes");
}

TEST(safetensors_hostile, header_length_larger_than_file) {
    std::string image = st_image("{}");
    image[0] = char(0xff);
    image[1] = char(0x01);  // 511
    EXPECT_CONTAINS(st_parse_error(image), "header length 511", "file has 10");
    image[7] = char(0xff);  // 2^64-ish: must not wrap around in the size check
    EXPECT_CONTAINS(st_parse_error(image), "exceeds the limit");
}

TEST(safetensors_hostile, header_larger_than_limit) {
    std::string image(16, ' ');
    uint64_t n = safetensors_max_header + 1;
    for (int i = 0; i < 8; ++i) image[i] = char(uint8_t(n >> (8 * i)));
    EXPECT_CONTAINS(st_parse_error(image), "model.safetensors", "header length 104857601",
                    "limit of 104857600");
}

TEST(safetensors_hostile, invalid_json) {
    EXPECT_CONTAINS(parse_header_error(R"({"t": {"dtype": )"), "model.safetensors",
                    "not valid JSON at byte 16 of 16", "unexpected end of input");
    EXPECT_CONTAINS(parse_header_error(R"({"t": 1,})"), "not valid JSON", "byte");
    EXPECT_CONTAINS(parse_header_error("{\"\xff\": 1}"), "not valid JSON");  // not UTF-8
    EXPECT_CONTAINS(parse_header_error(std::string("{}\0\0", 4)), "not valid JSON at byte 2 of 4", "NUL");
    EXPECT_CONTAINS(parse_header_error(""), "not valid JSON");
}

TEST(safetensors_hostile, json_not_an_object) {
    EXPECT_CONTAINS(parse_header_error("[1, 2]"), "model.safetensors", "must be a JSON object",
                    "found array");
    EXPECT_CONTAINS(parse_header_error("\"x\""), "must be a JSON object", "found string");
    EXPECT_CONTAINS(parse_header_error(R"({"t": [1]})"), "tensor \"t\"", "entry must be an object",
                    "found array");
}

TEST(safetensors_hostile, fields_missing_extra_duplicate_nested) {
    EXPECT_CONTAINS(parse_header_error(R"({"t":{"dtype":"U8","shape":[1]}})"), "tensor \"t\"",
                    "missing field \"data_offsets\"");
    EXPECT_CONTAINS(parse_header_error(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":0}})"),
                    "tensor \"t\"", "unexpected field \"x\"");
    EXPECT_CONTAINS(
        parse_header_error(R"({"t":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})"),
        "tensor \"t\"", "duplicate field \"dtype\"");
    EXPECT_CONTAINS(parse_header_error(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},
                                           "t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})"),
                    "two entries named \"t\"");
    EXPECT_CONTAINS(parse_header_error(R"({"t":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}})"),
                    "tensor \"t\"", "nested array");
    EXPECT_CONTAINS(parse_header_error(R"({"__metadata__":{"a":"1","a":"2"}})"),
                    "model.safetensors: __metadata__: duplicate field \"a\"");
    EXPECT_CONTAINS(parse_header_error("[[[[1]]]]"), "model.safetensors: header: unexpected nested array");
    std::string deep(100000, '[');
    EXPECT_CONTAINS(parse_header_error("{\"t\":" + deep), "tensor \"t\"", "nested array");
}

TEST(safetensors_hostile, unknown_dtype) {
    EXPECT_CONTAINS(parse_header_error(R"({"w":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})"),
                    "model.safetensors", "tensor \"w\"", "unknown dtype \"F4\"", "known: F32");
    EXPECT_CONTAINS(parse_header_error(R"({"w":{"dtype":"bf16","shape":[2],"data_offsets":[0,4]}})"),
                    "unknown dtype \"bf16\"");
    EXPECT_CONTAINS(parse_header_error(R"({"w":{"dtype":7,"shape":[2],"data_offsets":[0,4]}})"),
                    "tensor \"w\"", "dtype must be a string", "found number 7");
}

TEST(safetensors_hostile, bad_shape) {
    EXPECT_CONTAINS(parse_header_error(R"({"w":{"dtype":"U8","shape":[-1,2],"data_offsets":[0,0]}})"),
                    "tensor \"w\"", "shape[0] must be a non-negative integer", "found number -1");
    EXPECT_CONTAINS(parse_header_error(R"({"w":{"dtype":"U8","shape":[2,2.5],"data_offsets":[0,5]}})"),
                    "tensor \"w\"", "shape[1] must be a non-negative integer", "found number 2.5");
    EXPECT_CONTAINS(parse_header_error(R"({"w":{"dtype":"U8","shape":[2,2.0],"data_offsets":[0,4]}})"),
                    "shape[1]", "found number 2.0");
    EXPECT_CONTAINS(parse_header_error(R"({"w":{"dtype":"U8","shape":["2"],"data_offsets":[0,2]}})"),
                    "shape[0]", "found string \"2\"");
    EXPECT_CONTAINS(parse_header_error(R"({"w":{"dtype":"U8","shape":2,"data_offsets":[0,2]}})"),
                    "tensor \"w\"", "shape must be an array", "found number 2");
    EXPECT_CONTAINS(
        parse_header_error(R"({"w":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,0]}})"),
        "tensor \"w\"", "shape[0] = 9223372036854775808", "int64");
    EXPECT_CONTAINS(
        parse_header_error(R"({"w":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,0]}})"),
        "shape[0] must be a non-negative integer");
}

TEST(safetensors_hostile, shape_product_overflow) {
    EXPECT_CONTAINS(
        parse_header_error(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})"),
        "tensor \"w\"", "overflows");
    EXPECT_CONTAINS(
        parse_header_error(R"({"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})"),
        "tensor \"w\"", "F64 [2305843009213693952]", "byte count does not fit");
}

TEST(safetensors_hostile, offsets_out_of_bounds) {
    EXPECT_CONTAINS(parse_header_error(R"({"w":{"dtype":"U8","shape":[8],"data_offsets":[1020,1028]}})"),
                    "model.safetensors", "tensor \"w\"", "data_offsets [1020, 1028]",
                    "data section of 1024 bytes");
    EXPECT_CONTAINS(
        parse_header_error(
            R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}})"),
        "tensor \"w\"", "exceed the data section");
    EXPECT_CONTAINS(parse_header_error(R"({"w":{"dtype":"U8","shape":[8],"data_offsets":[0,-8]}})"),
                    "tensor \"w\"", "data_offsets must be an array of 2 unsigned integers",
                    "found array [0,-8]");
    EXPECT_CONTAINS(parse_header_error(R"({"w":{"dtype":"U8","shape":[8],"data_offsets":[0,4,8]}})"),
                    "tensor \"w\"", "array of 2 unsigned integers");
}

TEST(safetensors_hostile, end_before_begin) {
    EXPECT_CONTAINS(parse_header_error(R"({"w":{"dtype":"U8","shape":[8],"data_offsets":[16,8]}})"),
                    "tensor \"w\"", "data_offsets [16, 8] end before they begin");
}

TEST(safetensors_hostile, overlapping_tensors) {
    EXPECT_CONTAINS(parse_header_error(R"({"a":{"dtype":"U8","shape":[100],"data_offsets":[0,100]},
                                           "b":{"dtype":"U8","shape":[10],"data_offsets":[50,60]},
                                           "c":{"dtype":"U8","shape":[40],"data_offsets":[60,100]}})"),
                    "model.safetensors",
                    "tensor \"b\": data_offsets [50, 60] overlap tensor \"a\" at [0, 100]");
    // Same begin, the longer one second.
    EXPECT_CONTAINS(parse_header_error(R"({"a":{"dtype":"U8","shape":[10],"data_offsets":[0,10]},
                                           "b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})"),
                    "tensor \"a\"", "overlap tensor \"b\"");
    // Overlap with an earlier tensor that is not the previous one.
    EXPECT_CONTAINS(parse_header_error(R"({"a":{"dtype":"U8","shape":[100],"data_offsets":[0,100]},
                                           "b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},
                                           "c":{"dtype":"U8","shape":[1],"data_offsets":[99,100]}})"),
                    "tensor \"b\"", "overlap tensor \"a\"");
}

TEST(safetensors_hostile, byte_length_mismatch) {
    EXPECT_CONTAINS(parse_header_error(R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,8]}})"),
                    "tensor \"s\"", "hold 8 bytes but F32 [] needs 4");
    EXPECT_CONTAINS(parse_header_error(R"({"e":{"dtype":"F32","shape":[3,0],"data_offsets":[0,4]}})"),
                    "tensor \"e\"", "hold 4 bytes but F32 [3, 0] needs 0");
}

TEST(safetensors_hostile, metadata_not_strings) {
    EXPECT_CONTAINS(parse_header_error(R"({"__metadata__":{"format":"pt","n":3}})"), "model.safetensors",
                    "__metadata__ \"n\" must be a string", "found number 3");
    EXPECT_CONTAINS(parse_header_error(R"({"__metadata__":["pt"]})"), "__metadata__ must be an object",
                    "found array");
    EXPECT_CONTAINS(parse_header_error(R"({"__metadata__":null})"), "__metadata__ must be an object",
                    "found null");
    EXPECT_CONTAINS(parse_header_error(R"({"__metadata__":{"a":{"b":"c"}}})"), "__metadata__ \"a\"",
                    "found object");
}

TEST(safetensors_hostile, long_and_control_names_are_escaped_and_truncated) {
    std::string name = "bad\nname" + std::string(5000, 'n');
    std::string msg = parse_header_error("{\"bad\\nname" + std::string(5000, 'n') +
                                         R"(":{"dtype":"F4","shape":[],"data_offsets":[0,0]}})");
    EXPECT_CONTAINS(msg, "\"bad\\nname", "...");
    EXPECT_EQ(msg.find('\n'), std::string::npos);
    EXPECT_LT(msg.size(), 600u);
}

// Every prefix and many random corruptions of a valid file either parse or fail with nibble::error
// (ASan/UBSan builds and the libFuzzer target check the same more thoroughly).
TEST(safetensors_hostile, truncations_and_corruptions_never_crash) {
    temp_dir tmp;
    write_pattern_file(tmp / "m.safetensors", mixed_tensors(), {{"format", "pt"}});
    const std::string good = read_file(tmp / "m.safetensors");
    auto try_parse = [](const std::string& image) {
        try {
            auto h = safetensors_parse(reinterpret_cast<const uint8_t*>(image.data()), image.size(), "m");
            for (const auto& e : h.tensors) {
                ASSERT_LE(e.begin, e.end);
                ASSERT_LE(h.data_offset + e.end, image.size());
            }
        } catch (const nibble::error&) {
        }
    };
    for (size_t n = 0; n <= good.size(); ++n) try_parse(good.substr(0, n));
    std::mt19937 rng(1234);
    const std::string alphabet = "{}[]\":,-0123456789e.F8UBI_ ";
    for (int i = 0; i < 3000; ++i) {
        std::string bad = good;
        for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k) {
            size_t at = rng() % bad.size();
            bad[at] = (rng() % 2) ? char(rng()) : alphabet[rng() % alphabet.size()];
        }
        try_parse(bad);
    }
}
