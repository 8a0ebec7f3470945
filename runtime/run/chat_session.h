// File: runtime/run/chat_session.h
//
// ChatSession: the run's core, handed to user code that drives turns itself. Two ways to write
// such an agent, both on the same core as the managed agent (same inbox, waits, suspension,
// transcript, step loop and records):
//
// A custom loop calls the primitives:
//
//   asio::awaitable<void> MyLoop(baton::ChatSession& s) {
//     baton::Handover h = co_await s.ConsumeHandover();       // turn 0 of a head start
//     if (h.received) {
//       if (!h.is_final) co_await s.StreamResponse();         // the handed-over tools, step 2
//       s.CompleteTurn();
//     }
//     while (std::optional<baton::IncomingMessage> m = co_await s.NextMessage()) {
//       s.transcript().Add(m->message);
//       co_await s.StreamResponse();
//       s.CompleteTurn();
//     }
//   }
//
// A session loop iterates turns; the turn exposes the handover:
//
//   while (std::optional<baton::Turn> turn = co_await s.NextTurn()) {
//     if (turn->handover && turn->handover->is_final) { s.CompleteTurn(); continue; }
//     co_await s.StreamResponse();
//     s.CompleteTurn();
//   }
//
// User loops run on the run's executor: they must not block. Blocking work goes through
// Offload(), which runs it on the hook pool.
//
// Thread-safety: use a ChatSession only from the loop it was given to.
#ifndef BATON_RUNTIME_RUN_CHAT_SESSION_H_
#define BATON_RUNTIME_RUN_CHAT_SESSION_H_

#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "asio/awaitable.hpp"
#include "hooks/agent.h"
#include "runtime/step/step_loop.h"
#include "runtime/transcript/accumulator.h"

namespace baton {

class ChatRun;

// A message record taken from `.in`.
struct IncomingMessage {
  std::string trigger;  // "submit-message", "regenerate-message", ...
  Json message;         // the UI message, or null
  Json metadata;        // client data, or null
  int64_t seq = 0;      // its `.in` seq (0 for a boot payload's message)
};

struct Handover {
  bool received = false;  // false: not a head start, skipped or cancelled
  // The warm side sent handover-skip, or its deadline passed: the run answers the user's message
  // itself, which NextMessage() returns next.
  bool skipped = false;
  bool is_final = false;  // pure text: nothing left to run
  std::string message_id;
};

// One turn of a session loop.
struct Turn {
  int number = 0;
  std::optional<IncomingMessage> message;  // absent on a head start's turn 0
  std::optional<Handover> handover;        // turn 0 of a head start
};

class ChatSession {
 public:
  explicit ChatSession(ChatRun& run) : run_(run) {}

  const ChatInfo& info() const;
  const std::string& boot_trigger() const;
  const Json& boot_payload() const;
  // True when this run resumed a suspended one: the loop starts again from the top with the
  // transcript restored.
  bool resumed() const;
  int turn() const;  // the next turn's number

  // The next message: the boot payload's first, then `.in`. Waits warm for the agent's idle
  // timeout, then suspends the run exactly as a managed agent does. Returns nullopt when the
  // loop must return: close, max turns, suspended, timed out or cancelled.
  asio::awaitable<std::optional<IncomingMessage>> NextMessage();

  // On a handover-prepare boot: waits for the warm side's signal (the chat's host appends a
  // handover-skip at the handover deadline) and splices its partial into the transcript under
  // the warm message id. Consumed once. After a skip, NextMessage() returns the head start's
  // user message, so the loop answers it as any other.
  asio::awaitable<Handover> ConsumeHandover();

  // The session loop: turn 0 of a head start waits for the handover; every other turn takes
  // the next message and adds it to the transcript.
  asio::awaitable<std::optional<Turn>> NextTurn();

  Accumulator& transcript();

  // Runs the agent's model and tools on the transcript (continuing a trailing assistant message,
  // the head start's or an approval's), streams the chunks to `.out`, and stores the response.
  // A stop record received meanwhile stops it.
  asio::awaitable<StepLoopResult> StreamResponse();

  // Writes a chunk to `.out`.
  void Write(Json chunk);

  // Writes turn-complete (and the trim of the previous one), saves a snapshot, and advances the
  // turn number. Returns the turn-complete's `.out` seq.
  int64_t CompleteTurn();

  // Runs blocking user code on the hook pool; cancelled with the run.
  asio::awaitable<absl::StatusOr<Json>> Offload(absl::AnyInvocable<absl::StatusOr<Json>()> fn);

 private:
  friend class ChatRun;
  ChatRun& run_;
  bool boot_message_taken_ = false;
  bool handover_consumed_ = false;
  int64_t skipped_seq_ = 0;  // the handover-skip's seq until its message is handed out
};

}  // namespace baton

#endif  // BATON_RUNTIME_RUN_CHAT_SESSION_H_
