#include "cli/commands.h"
#include "core/error.h"

namespace nibble {

int cmd_inspect(command_args) { fail("inspect: being written"); }

}  // namespace nibble
