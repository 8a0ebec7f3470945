// File: runtime/base/parse_errors.h
//
// Requests that do not parse get a clear error. gRPC C++ answers a unary request whose bytes do
// not parse as its protobuf message with INTERNAL and an empty message, and a stream frame that
// does not parse simply ends the stream; the commonest cause is a proto3 `string` field (the
// `_json` fields among them) that holds invalid UTF-8, which protobuf refuses to parse. Protobuf
// names the field only in a log line, so:
//
//   CaptureProtobufLogs();  // once, in main: protobuf's log lines become JSON log lines, and a
//                           // parse error is remembered for the thread that parsed
//   builder.experimental().SetInterceptorCreators(...ParseErrorInterceptors());
//                           // unary and server-streaming requests that do not parse get
//                           // INVALID_ARGUMENT saying which field is not UTF-8
//   if (!stream->Read(&frame)) { std::string why = TakeParseError(); ... }
//                           // a frame of a bidi stream that did not parse
#ifndef BATON_RUNTIME_BASE_PARSE_ERRORS_H_
#define BATON_RUNTIME_BASE_PARSE_ERRORS_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grpcpp/support/server_interceptor.h"

namespace baton {

// Installs a protobuf log handler (process-wide; call before serving): protobuf's messages are
// written with LogJson, and a "does not parse" message is kept for TakeParseError on the thread
// that logged it.
void CaptureProtobufLogs();

// The reason the last protobuf parse on this thread failed, as a sentence ("field
// baton.v1.AppendRequest.body_json is not valid UTF-8 ..."), then forgotten; "" when none was
// logged since the last call.
std::string TakeParseError();

// The sentence for a protobuf log message, or "" when it is not about a parse failure.
std::string ParseErrorFromLog(std::string_view protobuf_message);

// The longest status message a server sends; a longer one is clipped ("… (N bytes)").
inline constexpr size_t kMaxStatusMessageBytes = 1024;

// Server interceptors that turn the INTERNAL status of a unary or server-streaming request that
// did not parse into INVALID_ARGUMENT with TakeParseError's sentence (or a generic one), and
// then clip every status message of every call to kMaxStatusMessageBytes.
std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
ParseErrorInterceptors();

}  // namespace baton

#endif  // BATON_RUNTIME_BASE_PARSE_ERRORS_H_
