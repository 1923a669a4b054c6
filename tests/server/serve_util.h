// Starts `nibble serve` on a free 127.0.0.1 port for a test and kills it at the end.
#pragma once

#include <sys/types.h>

#include <csignal>
#include <string>

namespace nibble::test {

class serve_process {
  public:
    // Runs `nibble serve MODEL --port P EXTRA...` (EXTRA split on spaces) and waits up to 60 s
    // for /health; `ok()` tells whether it came up.
    explicit serve_process(const std::string& extra_args = "");
    ~serve_process();  // SIGTERM, then SIGKILL after 10 s
    bool ok() const { return ok_; }
    int port() const { return port_; }
    std::string log() const;  // the server's stderr so far
    // Sends `sig` (SIGTERM by default) and waits up to 10 s; returns the exit status (-1 when it had
    // to be killed or died of a signal).
    int terminate(int sig = SIGTERM);

  private:
    pid_t pid_ = -1;
    int port_ = 0;
    bool ok_ = false;
    std::string log_path_;
};

std::string bundled_model();

}  // namespace nibble::test
