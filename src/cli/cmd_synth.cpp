#include "cli/commands.h"
#include "core/error.h"

namespace nibble {

int cmd_synth(command_args) { fail("synth: being written"); }

}  // namespace nibble
