#include "server/serve_util.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <httplib.h>

namespace nibble::test {

namespace {

// A port the kernel just handed out on 127.0.0.1 (free unless someone takes it meanwhile).
int free_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t n = sizeof a;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n) != 0) {
        close(fd);
        return 0;
    }
    close(fd);
    return ntohs(a.sin_port);
}

}  // namespace

std::string bundled_model() {
    return std::string(NIBBLE_SOURCE_DIR) + "/models/qwen3-tiny";
}

serve_process::serve_process(const std::string& extra_args) {
    port_ = free_port();
    log_path_ = "/tmp/nibble_serve_" + std::to_string(getpid()) + "_" + std::to_string(port_) + ".log";
    std::vector<std::string> args = {NIBBLE_BINARY, "serve",  bundled_model(),      "--host",
                                     "127.0.0.1",   "--port", std::to_string(port_)};
    std::istringstream extra(extra_args);
    for (std::string w; extra >> w;) args.push_back(w);
    pid_ = fork();
    if (pid_ == 0) {
        FILE* f = std::fopen(log_path_.c_str(), "w");
        if (f) {
            dup2(fileno(f), STDERR_FILENO);
            dup2(fileno(f), STDOUT_FILENO);
        }
        setenv("OMP_NUM_THREADS", "1", 0);
        std::vector<char*> argv;
        for (std::string& s : args) argv.push_back(s.data());
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
        if (auto r = c.Get("/health"); r && r->status == 200) {
            ok_ = true;
            return;
        }
        int st;
        if (waitpid(pid_, &st, WNOHANG) == pid_) {
            pid_ = -1;
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

int serve_process::terminate(int sig) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int st = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        if (waitpid(pid_, &st, WNOHANG) == pid_) {
            pid_ = -1;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &st, 0);
    pid_ = -1;
    return -1;
}

serve_process::~serve_process() {
    terminate();
    std::remove(log_path_.c_str());
}

std::string serve_process::log() const {
    std::ifstream f(log_path_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

}  // namespace nibble::test
