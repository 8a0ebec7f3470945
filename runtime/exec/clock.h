// File: runtime/exec/clock.h
//
// Time for the runtime's waits. RealClock follows the monotonic clock; FakeClock only moves when
// a test calls Advance(), which is how the test kit fires idle and turn timeouts without sleeping.
#ifndef BATON_RUNTIME_EXEC_CLOCK_H_
#define BATON_RUNTIME_EXEC_CLOCK_H_

#include <chrono>
#include <map>

#include "absl/time/time.h"
#include "asio/steady_timer.hpp"

namespace baton {

// Clock
//
// Thread-safety: Now() is safe from any thread. Arm()/Disarm() are called on the executor that
// owns the timer.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // Makes `timer` complete no later than `deadline` (absl::InfiniteFuture(): never). The waiter
  // re-checks Now() after a completion, so early completions are harmless.
  virtual void Arm(asio::steady_timer& timer, absl::Time deadline) = 0;
  // Forgets `timer`; called before it is destroyed.
  virtual void Disarm(asio::steady_timer& timer) = 0;
};

class RealClock final : public Clock {
 public:
  RealClock();
  absl::Time Now() const override;
  void Arm(asio::steady_timer& timer, absl::Time deadline) override;
  void Disarm(asio::steady_timer&) override {}

 private:
  // Constant after construction: Now() is `origin_` plus monotonic time elapsed since.
  const absl::Time origin_;
  const std::chrono::steady_clock::time_point steady_origin_;
};

// FakeClock
//
// Thread-safety: not thread-safe; use it from the thread that runs the executor (the test kit
// does).
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'790'000'000)) : now_(start) {}
  absl::Time Now() const override { return now_; }
  void Arm(asio::steady_timer& timer, absl::Time deadline) override;
  void Disarm(asio::steady_timer& timer) override;
  // Moves time forward and wakes every timer whose deadline has come.
  void Advance(absl::Duration d);
  // The earliest armed deadline, or InfiniteFuture.
  absl::Time NextDeadline() const;

 private:
  absl::Time now_;
  std::map<asio::steady_timer*, absl::Time> armed_;
};

}  // namespace baton

#endif  // BATON_RUNTIME_EXEC_CLOCK_H_
