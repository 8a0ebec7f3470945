// File: tools/fake-llm/main.cc
//
// fake-llm: serves a script (docs/fake-llm.md) until SIGINT or SIGTERM.
//
//   fake-llm [--script FILE] [--host H] [--port N] [--tls-cert FILE --tls-key FILE]
//
// Prints `listening http://H:PORT` (https:// with TLS) on stdout once it accepts connections, so a
// test harness can read the port of an ephemeral listener (--port 0, the default). Without --script
// it starts with no responses; POST /__fake/script sets one.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tools/fake-llm/fake_llm.h"

namespace {

constexpr char kUsage[] =
    "usage: fake-llm [--script FILE] [--host H] [--port N] [--tls-cert FILE --tls-key FILE]\n"
    "  --script FILE    the script to serve (JSON; see docs/fake-llm.md); default: none\n"
    "  --host H         the address to listen on; default 127.0.0.1\n"
    "  --port N         the port; default 0 (an ephemeral one, printed on start)\n"
    "  --tls-cert FILE  serve HTTPS with this certificate (chain), PEM; needs --tls-key\n"
    "  --tls-key FILE   the certificate's private key, PEM\n";

int Usage(const char* error) {
  if (error != nullptr) std::fprintf(stderr, "fake-llm: %s\n", error);
  std::fputs(kUsage, stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string script_path;
  std::string host = "127.0.0.1";
  long port = 0;
  baton::fakellm::TlsOptions tls;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string value;
    auto take = [&](std::string_view flag) {
      if (arg == flag) {
        if (i + 1 >= argc) return false;
        value = argv[++i];
        return true;
      }
      if (arg.size() > flag.size() && arg.substr(0, flag.size()) == flag &&
          arg[flag.size()] == '=') {
        value = std::string(arg.substr(flag.size() + 1));
        return true;
      }
      return false;
    };
    if (arg == "--help" || arg == "-h") {
      Usage(nullptr);
      return 0;
    } else if (take("--script")) {
      script_path = value;
    } else if (take("--host")) {
      host = value;
    } else if (take("--tls-cert")) {
      tls.cert_file = value;
    } else if (take("--tls-key")) {
      tls.key_file = value;
    } else if (take("--port")) {
      char* end = nullptr;
      port = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || port < 0 || port > 65535) {
        return Usage("--port takes a number from 0 to 65535");
      }
    } else {
      std::string error = "unknown or incomplete argument " + std::string(arg);
      return Usage(error.c_str());
    }
  }

  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return Usage("--tls-cert and --tls-key go together");
  }

  baton::Json script = {{"responses", baton::Json::array()}};
  if (!script_path.empty()) {
    absl::StatusOr<baton::Json> loaded = baton::fakellm::FakeLlm::LoadScript(script_path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "fake-llm: %s\n", std::string(loaded.status().message()).c_str());
      return 2;
    }
    script = *std::move(loaded);
  }

  // The stop signals are blocked in every thread (the server's thread inherits this mask) and
  // taken here by sigwait.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto server = baton::fakellm::FakeLlm::Start(std::move(script), host, static_cast<uint16_t>(port),
                                               std::move(tls));
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  std::printf("listening %s\n", (*server)->base_url().c_str());
  std::fflush(stdout);

  int signal = 0;
  sigwait(&stop, &signal);
  server->reset();
  return 0;
}
