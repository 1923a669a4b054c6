// Errors: one exception type for everything a user can cause (bad checkpoint, bad config, bad
// arguments). Messages name the file / tensor / field and what was expected versus found.
#pragma once

#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace nibble {

struct error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

template <class... A>
[[noreturn]] inline void fail(fmt::format_string<A...> fmt, A&&... args) {
    throw error(fmt::format(fmt, std::forward<A>(args)...));
}

}  // namespace nibble
