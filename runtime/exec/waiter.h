// File: runtime/exec/waiter.h
//
// Waiter: where a coroutine parks until someone calls Notify(), a deadline passes, or a stop is
// requested. A parked coroutine holds a timer and its frame, no thread.
#ifndef BATON_RUNTIME_EXEC_WAITER_H_
#define BATON_RUNTIME_EXEC_WAITER_H_

#include <stop_token>

#include "absl/time/time.h"
#include "asio/any_io_executor.hpp"
#include "asio/awaitable.hpp"
#include "asio/steady_timer.hpp"
#include "runtime/exec/clock.h"

namespace baton {

// Thread-safety: owned by one executor (single-threaded); Notify(), Wait() and stop requests
// must all happen on it.
class Waiter {
 public:
  enum class Result { kNotified, kTimeout, kStopped };

  Waiter(asio::any_io_executor executor, Clock& clock);
  ~Waiter();
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  // Waits for Notify(), `deadline` or `stop`. A Notify() that came while nobody waited is kept
  // and ends the next Wait() at once. One Wait() at a time.
  asio::awaitable<Result> Wait(absl::Time deadline, std::stop_token stop = {});
  void Notify();

 private:
  Clock& clock_;
  asio::steady_timer timer_;
  bool notified_ = false;
  bool stopped_ = false;
};

}  // namespace baton

#endif  // BATON_RUNTIME_EXEC_WAITER_H_
