#include "cli/commands.h"
#include "core/error.h"

namespace nibble {

int cmd_quantize(command_args) { fail("quantize: being written"); }

}  // namespace nibble
