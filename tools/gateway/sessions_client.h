// File: tools/gateway/sessions_client.h
//
// SessionsClient: the gateway's calls to the orchestrator's Sessions service, on gRPC's callback
// API, handed back to the gateway's event loop: a unary call is an awaitable that resumes on the
// loop; a following Read is a stream whose records and end are posted to the loop. No call holds
// a thread while it waits.
//
// Each call carries a bearer token: the browser's or backend's own when it sent one (so the
// orchestrator decides what it may do), else the gateway's (for what the gateway does on its
// own behalf, such as the one upstream Read a chat's readers share).
#ifndef BATON_TOOLS_GATEWAY_SESSIONS_CLIENT_H_
#define BATON_TOOLS_GATEWAY_SESSIONS_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "asio/any_io_executor.hpp"
#include "asio/awaitable.hpp"
#include "baton/v1/sessions.grpc.pb.h"

namespace baton::gateway {

class SessionsClient {
 public:
  SessionsClient(std::shared_ptr<grpc::Channel> channel, asio::any_io_executor executor,
                 std::string own_token);

  // `token`: the caller's bearer token; "" uses the gateway's own.
  asio::awaitable<absl::StatusOr<baton::v1::CreateSessionResponse>> CreateSession(
      baton::v1::CreateSessionRequest request, std::string token);
  asio::awaitable<absl::StatusOr<baton::v1::AppendResponse>> Append(
      baton::v1::AppendRequest request, std::string token);
  asio::awaitable<absl::StatusOr<baton::v1::Session>> Get(baton::v1::GetRequest request,
                                                          std::string token);
  // What the agent's workers announce (system prompt, tool schemas, model): a head start's step 1.
  asio::awaitable<absl::StatusOr<baton::v1::AgentInfo>> GetAgent(baton::v1::GetAgentRequest request,
                                                                 std::string token);
  asio::awaitable<absl::StatusOr<baton::v1::ListRunsResponse>> ListRuns(
      baton::v1::ListRunsRequest request, std::string token);
  asio::awaitable<absl::StatusOr<baton::v1::Run>> CancelRun(baton::v1::CancelRunRequest request,
                                                            std::string token);
  asio::awaitable<absl::StatusOr<baton::v1::Session>> Close(baton::v1::CloseRequest request,
                                                            std::string token);

  // A Read of `.out`, batched (several records per response). `on_record` gets each record,
  // `on_end` the stream's end, once; both on the executor. Cancel() ends it early (on_end then gets
  // CANCELLED). The stream keeps itself alive until on_end has run.
  class ReadStream {
   public:
    virtual ~ReadStream() = default;
    virtual void Cancel() = 0;
  };
  std::shared_ptr<ReadStream> Read(baton::v1::ReadRequest request, std::string token,
                                   std::function<void(baton::v1::OutRecord)> on_record,
                                   std::function<void(absl::Status)> on_end);

  asio::any_io_executor executor() const { return executor_; }

 private:
  std::string TokenFor(const std::string& token) const;

  std::unique_ptr<baton::v1::Sessions::Stub> stub_;
  asio::any_io_executor executor_;
  std::string own_token_;
};

// A gRPC status as an absl::Status (the codes are the same numbers).
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace baton::gateway

#endif  // BATON_TOOLS_GATEWAY_SESSIONS_CLIENT_H_
