#include "runtime/exec/clock.h"

#include <vector>

#include "absl/time/clock.h"

namespace baton {

RealClock::RealClock() : origin_(absl::Now()), steady_origin_(std::chrono::steady_clock::now()) {}

absl::Time RealClock::Now() const {
  return origin_ + absl::FromChrono(std::chrono::steady_clock::now() - steady_origin_);
}

void RealClock::Arm(asio::steady_timer& timer, absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) {
    timer.expires_at(std::chrono::steady_clock::time_point::max());
    return;
  }
  absl::Duration from_origin = deadline - origin_;
  timer.expires_at(steady_origin_ + absl::ToChronoNanoseconds(from_origin));
}

void FakeClock::Arm(asio::steady_timer& timer, absl::Time deadline) {
  timer.expires_at(std::chrono::steady_clock::time_point::max());
  if (deadline == absl::InfiniteFuture()) {
    armed_.erase(&timer);
  } else {
    armed_[&timer] = deadline;
  }
}

void FakeClock::Disarm(asio::steady_timer& timer) { armed_.erase(&timer); }

void FakeClock::Advance(absl::Duration d) {
  now_ += d;
  std::vector<asio::steady_timer*> due;
  for (const auto& [timer, deadline] : armed_) {
    if (deadline <= now_) due.push_back(timer);
  }
  for (asio::steady_timer* timer : due) {
    armed_.erase(timer);
    timer->cancel();
  }
}

absl::Time FakeClock::NextDeadline() const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [timer, deadline] : armed_) next = std::min(next, deadline);
  return next;
}

}  // namespace baton
