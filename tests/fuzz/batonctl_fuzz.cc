// Fuzzes batonctl's two parsers of outside input: its command line (with the files it reads,
// e.g. a handover's partial message) and the `.out` records a server sends it to print. The
// input is split at NUL bytes: the first piece is the content of any file batonctl reads, the
// next pieces are argv, up to a piece "--records--"; the pieces after it are records' chunk
// JSON. Nothing may crash, and:
//   - a command line that does not parse says why;
//   - readable output without colour holds no terminal control (ESC or a C1 control), whatever
//     a record holds.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tools/batonctl/args.h"
#include "tools/batonctl/render.h"

namespace {

bool HasTerminalControl(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == 0x1b) return true;
    if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      return true;
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> pieces;
  while (!input.empty()) {
    size_t end = input.find('\0');
    pieces.emplace_back(input.substr(0, end));
    input = end == std::string_view::npos ? std::string_view() : input.substr(end + 1);
  }
  if (pieces.empty()) return 0;
  const std::string file = pieces[0];
  std::vector<std::string> args;
  size_t i = 1;
  for (; i < pieces.size() && pieces[i] != "--records--"; ++i) args.push_back(pieces[i]);

  baton::ctl::Environment env;
  env.baton_addr = "127.0.0.1:1";
  env.read_file = [&file](const std::string&) -> absl::StatusOr<std::string> { return file; };
  env.new_message_id = [] { return std::string("u-1"); };
  absl::StatusOr<baton::ctl::Command> command = baton::ctl::ParseCommand(args, env);
  if (!command.ok() && command.status().message().empty()) __builtin_trap();
  (void)baton::ctl::HandoverBody(file, "M", true);

  for (bool json : {false, true}) {
    baton::ctl::Renderer renderer({.json = json, .color = false});
    std::string out;
    int64_t seq = 0;
    for (size_t k = i + 1; k < pieces.size(); ++k) {
      baton::v1::OutRecord record;
      record.set_seq(++seq);
      if (pieces[k].rfind("control:", 0) == 0) {
        record.mutable_control()->set_subtype(pieces[k].substr(8));
        record.mutable_control()->add_headers()->set_name("session-closed-reason");
        record.mutable_control()->mutable_headers(0)->set_value(pieces[k]);
      } else {
        record.set_chunk_json(pieces[k]);
      }
      out += renderer.Render(record);
    }
    out += renderer.Finish();
    if (!json && HasTerminalControl(out)) __builtin_trap();
  }
  return 0;
}
