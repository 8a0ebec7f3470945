#include "runtime/exec/waiter.h"

#include <optional>

#include "asio/redirect_error.hpp"
#include "asio/use_awaitable.hpp"

namespace baton {

Waiter::Waiter(asio::any_io_executor executor, Clock& clock)
    : clock_(clock), timer_(std::move(executor)) {}

Waiter::~Waiter() { clock_.Disarm(timer_); }

void Waiter::Notify() {
  notified_ = true;
  timer_.cancel();
}

asio::awaitable<Waiter::Result> Waiter::Wait(absl::Time deadline, std::stop_token stop) {
  stopped_ = false;
  std::optional<std::stop_callback<std::function<void()>>> on_stop;
  if (stop.stop_possible()) {
    on_stop.emplace(stop, std::function<void()>([this] {
                      stopped_ = true;
                      timer_.cancel();
                    }));
  }
  for (;;) {
    if (notified_) {
      notified_ = false;
      clock_.Disarm(timer_);
      co_return Result::kNotified;
    }
    if (stopped_) {
      clock_.Disarm(timer_);
      co_return Result::kStopped;
    }
    if (clock_.Now() >= deadline) {
      clock_.Disarm(timer_);
      co_return Result::kTimeout;
    }
    clock_.Arm(timer_, deadline);
    asio::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace baton
