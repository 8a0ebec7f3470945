#include "runtime/base/parse_errors.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"
#include "hooks/json.h"
#include "runtime/base/log.h"

namespace baton {
namespace {

thread_local std::string last_parse_error;

void OnProtobufLog(google::protobuf::LogLevel level, const char* filename, int line,
                   const std::string& message) {
  std::string parse_error = ParseErrorFromLog(message);
  if (!parse_error.empty()) last_parse_error = parse_error;
  const char* our_level = level >= google::protobuf::LOGLEVEL_ERROR     ? "error"
                          : level == google::protobuf::LOGLEVEL_WARNING ? "warn"
                                                                        : "info";
  // A request that does not parse is the client's error, not ours: a warning.
  if (!parse_error.empty()) our_level = "warn";
  LogJson(our_level, "protobuf", {{"error", message}, {"at", absl::StrCat(filename, ":", line)}});
}

class ParseErrorInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ParseErrorInterceptor(grpc::experimental::ServerRpcInfo* info) : info_(info) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using Point = grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(Point::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      // A unary or server-streaming call has exactly one request: no message means it did not
      // parse. (On client and bidi streams it also means the end of the stream.)
      failed_ = true;
      reason_ = TakeParseError();
    }
    if (methods->QueryInterceptionHookPoint(Point::PRE_SEND_STATUS) && failed_) {
      grpc::Status status = methods->GetSendStatus();
      // The synchronous API answers INTERNAL; the callback API (Sessions.Read) UNIMPLEMENTED
      // with no message.
      if (status.error_code() == grpc::StatusCode::INTERNAL ||
          (status.error_code() == grpc::StatusCode::UNIMPLEMENTED &&
           status.error_message().empty())) {
        methods->ModifySendStatus(
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         absl::StrCat("the request to ", info_->method(), " does not parse: ",
                                      reason_.empty() ? "its bytes are not a valid protobuf message"
                                                      : reason_)));
      }
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  bool failed_ = false;
  std::string reason_;
};

class ParseErrorInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    using Type = grpc::experimental::ServerRpcInfo::Type;
    if (info->type() != Type::UNARY && info->type() != Type::SERVER_STREAMING) return nullptr;
    return new ParseErrorInterceptor(info);
  }
};

// Every status a server sends goes through here last: a message over kMaxStatusMessageBytes is
// clipped. gRPC does not send a status whose message is too large for the peer's metadata limit
// (8 KiB by default, and a message travels percent-encoded), and the call then hangs until the
// client's deadline. Handlers quote input only through Quoted(); this is the last resort.
class StatusCapInterceptor final : public grpc::experimental::Interceptor {
 public:
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using Point = grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(Point::PRE_SEND_STATUS)) {
      grpc::Status status = methods->GetSendStatus();
      if (status.error_message().size() > kMaxStatusMessageBytes) {
        methods->ModifySendStatus(grpc::Status(
            status.error_code(), ClipText(status.error_message(), kMaxStatusMessageBytes),
            status.error_details()));
      }
    }
    methods->Proceed();
  }
};

class StatusCapInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo*) override {
    return new StatusCapInterceptor();
  }
};

}  // namespace

void CaptureProtobufLogs() { google::protobuf::SetLogHandler(&OnProtobufLog); }

std::string TakeParseError() { return std::exchange(last_parse_error, std::string()); }

std::string ParseErrorFromLog(std::string_view message) {
  // protobuf 3.21: "String field 'pkg.Message.field' contains invalid UTF-8 data when parsing a
  // protocol buffer. Use the 'bytes' type if you intend to send raw bytes. "
  constexpr std::string_view kUtf8 = " contains invalid UTF-8 data when parsing";
  size_t at = message.find(kUtf8);
  if (at == std::string_view::npos) return "";
  std::string_view head = message.substr(0, at);
  size_t open = head.find('\'');
  size_t close = head.rfind('\'');
  std::string field = open != std::string_view::npos && close > open
                          ? "field " + std::string(head.substr(open + 1, close - open - 1))
                          : std::string("a string field");
  return absl::StrCat(field,
                      " is not valid UTF-8 (protobuf string fields, JSON text included, must be "
                      "UTF-8)");
}

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
ParseErrorInterceptors() {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> out;
  out.push_back(std::make_unique<ParseErrorInterceptorFactory>());
  out.push_back(std::make_unique<StatusCapInterceptorFactory>());  // last: sees the final status
  return out;
}

}  // namespace baton
