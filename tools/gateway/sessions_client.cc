#include "tools/gateway/sessions_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "asio/async_result.hpp"
#include "asio/post.hpp"
#include "asio/use_awaitable.hpp"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"

namespace baton::gateway {

namespace v1 = ::baton::v1;

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

namespace {

// One unary call in flight: what gRPC needs alive until its callback.
template <typename Request, typename Response>
struct UnaryCall {
  grpc::ClientContext context;
  Request request;
  Response response;
};

// Starts `start(call, done)` (a callback-API unary call) and resumes the awaiting coroutine on
// `executor` with the response or the call's error.
template <typename Request, typename Response, typename Start>
asio::awaitable<absl::StatusOr<Response>> Unary(asio::any_io_executor executor,
                                                const std::string& token, Request request,
                                                Start start) {
  auto call = std::make_shared<UnaryCall<Request, Response>>();
  call->request = std::move(request);
  if (!token.empty()) call->context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto initiate = [call, executor, start](auto handler) mutable {
    using Handler = decltype(handler);
    auto shared = std::make_shared<Handler>(std::move(handler));
    start(&call->context, &call->request, &call->response,
          [call, executor, shared](grpc::Status status) {
            asio::post(executor, [call, shared, status]() mutable {
              absl::StatusOr<Response> result =
                  status.ok() ? absl::StatusOr<Response>(std::move(call->response))
                              : absl::StatusOr<Response>(FromGrpc(status));
              (*shared)(std::move(result));
            });
          });
  };
  // Named, not written inside the co_await (docs/decisions.md, the GCC 12 coroutine rule).
  auto op = asio::async_initiate<decltype(asio::use_awaitable), void(absl::StatusOr<Response>)>(
      std::move(initiate), asio::use_awaitable);
  co_return co_await std::move(op);
}

class Reader final : public SessionsClient::ReadStream,
                     public grpc::ClientReadReactor<v1::ReadResponse> {
 public:
  Reader(asio::any_io_executor executor, std::function<void(v1::OutRecord)> on_record,
         std::function<void(absl::Status)> on_end)
      : executor_(std::move(executor)),
        on_record_(std::move(on_record)),
        on_end_(std::move(on_end)) {}

  void Begin(v1::Sessions::Stub* stub, v1::ReadRequest request, const std::string& token,
             std::shared_ptr<Reader> self) {
    self_ = std::move(self);
    request_ = std::move(request);
    request_.set_batch(true);  // OnReadDone takes `records`
    if (!token.empty()) context_.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    stub->async()->Read(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void Cancel() override { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream is ending; OnDone says how
    std::weak_ptr<Reader> weak = self_;
    // An orchestrator from before `batch` answers with `record`.
    if (response_.has_record()) *response_.add_records() = std::move(*response_.mutable_record());
    asio::post(executor_, [weak, records = std::move(*response_.mutable_records())]() mutable {
      for (v1::OutRecord& record : records) {
        std::shared_ptr<Reader> self = weak.lock();
        if (!self || !self->on_record_) return;
        self->on_record_(std::move(record));
      }
    });
    response_.Clear();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    // After every record posted by OnReadDone (posts run in order), the end, and then the
    // reactor may go.
    asio::post(executor_, [self = std::move(self_), status]() mutable {
      if (self->on_end_) std::exchange(self->on_end_, nullptr)(FromGrpc(status));
      self->on_record_ = nullptr;
    });
  }

 private:
  asio::any_io_executor executor_;
  std::function<void(v1::OutRecord)> on_record_;
  std::function<void(absl::Status)> on_end_;
  grpc::ClientContext context_;
  v1::ReadRequest request_;
  v1::ReadResponse response_;
  std::shared_ptr<Reader> self_;  // alive until OnDone
};

}  // namespace

SessionsClient::SessionsClient(std::shared_ptr<grpc::Channel> channel,
                               asio::any_io_executor executor, std::string own_token)
    : stub_(v1::Sessions::NewStub(std::move(channel))),
      executor_(std::move(executor)),
      own_token_(std::move(own_token)) {}

std::string SessionsClient::TokenFor(const std::string& token) const {
  return token.empty() ? own_token_ : token;
}

asio::awaitable<absl::StatusOr<v1::CreateSessionResponse>> SessionsClient::CreateSession(
    v1::CreateSessionRequest request, std::string token) {
  auto* stub = stub_.get();
  auto start = [stub](grpc::ClientContext* c, const v1::CreateSessionRequest* q,
                      v1::CreateSessionResponse* r, std::function<void(grpc::Status)> done) {
    stub->async()->CreateSession(c, q, r, std::move(done));
  };
  co_return co_await Unary<v1::CreateSessionRequest, v1::CreateSessionResponse>(
      executor_, TokenFor(token), std::move(request), std::move(start));
}

asio::awaitable<absl::StatusOr<v1::AppendResponse>> SessionsClient::Append(
    v1::AppendRequest request, std::string token) {
  auto* stub = stub_.get();
  auto start = [stub](grpc::ClientContext* c, const v1::AppendRequest* q, v1::AppendResponse* r,
                      std::function<void(grpc::Status)> done) {
    stub->async()->Append(c, q, r, std::move(done));
  };
  co_return co_await Unary<v1::AppendRequest, v1::AppendResponse>(
      executor_, TokenFor(token), std::move(request), std::move(start));
}

asio::awaitable<absl::StatusOr<v1::Session>> SessionsClient::Get(v1::GetRequest request,
                                                                 std::string token) {
  auto* stub = stub_.get();
  auto start = [stub](grpc::ClientContext* c, const v1::GetRequest* q, v1::Session* r,
                      std::function<void(grpc::Status)> done) {
    stub->async()->Get(c, q, r, std::move(done));
  };
  co_return co_await Unary<v1::GetRequest, v1::Session>(executor_, TokenFor(token),
                                                        std::move(request), std::move(start));
}

asio::awaitable<absl::StatusOr<v1::AgentInfo>> SessionsClient::GetAgent(v1::GetAgentRequest request,
                                                                        std::string token) {
  auto* stub = stub_.get();
  auto start = [stub](grpc::ClientContext* c, const v1::GetAgentRequest* q, v1::AgentInfo* r,
                      std::function<void(grpc::Status)> done) {
    stub->async()->GetAgent(c, q, r, std::move(done));
  };
  co_return co_await Unary<v1::GetAgentRequest, v1::AgentInfo>(
      executor_, TokenFor(token), std::move(request), std::move(start));
}

asio::awaitable<absl::StatusOr<v1::ListRunsResponse>> SessionsClient::ListRuns(
    v1::ListRunsRequest request, std::string token) {
  auto* stub = stub_.get();
  auto start = [stub](grpc::ClientContext* c, const v1::ListRunsRequest* q, v1::ListRunsResponse* r,
                      std::function<void(grpc::Status)> done) {
    stub->async()->ListRuns(c, q, r, std::move(done));
  };
  co_return co_await Unary<v1::ListRunsRequest, v1::ListRunsResponse>(
      executor_, TokenFor(token), std::move(request), std::move(start));
}

asio::awaitable<absl::StatusOr<v1::Run>> SessionsClient::CancelRun(v1::CancelRunRequest request,
                                                                   std::string token) {
  auto* stub = stub_.get();
  auto start = [stub](grpc::ClientContext* c, const v1::CancelRunRequest* q, v1::Run* r,
                      std::function<void(grpc::Status)> done) {
    stub->async()->CancelRun(c, q, r, std::move(done));
  };
  co_return co_await Unary<v1::CancelRunRequest, v1::Run>(executor_, TokenFor(token),
                                                          std::move(request), std::move(start));
}

asio::awaitable<absl::StatusOr<v1::Session>> SessionsClient::Close(v1::CloseRequest request,
                                                                   std::string token) {
  auto* stub = stub_.get();
  auto start = [stub](grpc::ClientContext* c, const v1::CloseRequest* q, v1::Session* r,
                      std::function<void(grpc::Status)> done) {
    stub->async()->Close(c, q, r, std::move(done));
  };
  co_return co_await Unary<v1::CloseRequest, v1::Session>(executor_, TokenFor(token),
                                                          std::move(request), std::move(start));
}

std::shared_ptr<SessionsClient::ReadStream> SessionsClient::Read(
    v1::ReadRequest request, std::string token, std::function<void(v1::OutRecord)> on_record,
    std::function<void(absl::Status)> on_end) {
  auto reader = std::make_shared<Reader>(executor_, std::move(on_record), std::move(on_end));
  reader->Begin(stub_.get(), std::move(request), TokenFor(token), reader);
  return reader;
}

}  // namespace baton::gateway
