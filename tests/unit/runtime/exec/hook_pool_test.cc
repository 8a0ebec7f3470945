#include "runtime/exec/hook_pool.h"

#include <latch>
#include <optional>
#include <thread>

#include "asio/co_spawn.hpp"
#include "asio/detached.hpp"
#include "asio/io_context.hpp"
#include "gtest/gtest.h"

namespace baton {
namespace {

class HookPoolTest : public ::testing::Test {
 protected:
  // Starts `pool_.Run(fn)` as a coroutine on `io_`; the result lands in `result_`.
  void Start(absl::AnyInvocable<absl::StatusOr<int>()> fn, absl::Duration timeout) {
    auto run = [this, fn = std::move(fn), timeout]() mutable -> asio::awaitable<void> {
      absl::Time deadline = clock_.Now() + timeout;
      result_ = co_await pool_.Run<absl::StatusOr<int>>(io_.get_executor(), clock_, std::move(fn),
                                                        deadline, stop_.get_token());
    };
    asio::co_spawn(io_, std::move(run), asio::detached);
  }

  // Runs the loop until the result is in (a pool call hands it back through `io_`).
  void Finish() {
    while (!result_.has_value()) {
      io_.restart();
      if (io_.poll() == 0) {
        io_.restart();
        io_.run_one();
      }
    }
  }

  FakeClock clock_;
  asio::io_context io_;
  HookPool pool_{2};
  std::stop_source stop_;
  std::optional<absl::StatusOr<int>> result_;
};

TEST_F(HookPoolTest, ReturnsTheResultOnTheCallersExecutor) {
  std::thread::id caller = std::this_thread::get_id();
  std::thread::id ran_on;
  Start(
      [&ran_on]() -> absl::StatusOr<int> {
        ran_on = std::this_thread::get_id();
        return 7;
      },
      absl::Seconds(1));
  Finish();
  ASSERT_TRUE(result_->ok());
  EXPECT_EQ(**result_, 7);
  EXPECT_NE(ran_on, caller);
  EXPECT_EQ(pool_.outstanding(), 0);
}

TEST_F(HookPoolTest, AnExceptionBecomesAnErrorStatus) {
  Start([]() -> absl::StatusOr<int> { throw std::runtime_error("boom"); }, absl::Seconds(1));
  Finish();
  EXPECT_EQ(result_->status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(result_->status().message(), "boom");
}

TEST_F(HookPoolTest, AStopFreesTheCallerAtOnceAndDropsTheLateResult) {
  std::latch release(1);
  bool finished = false;
  Start(
      [&]() -> absl::StatusOr<int> {
        release.wait();  // user code stuck in a long computation
        finished = true;
        return 1;
      },
      absl::Hours(1));
  io_.poll();
  stop_.request_stop();
  Finish();
  EXPECT_EQ(result_->status().code(), absl::StatusCode::kCancelled);
  release.count_down();
  while (pool_.outstanding() > 0) {
    io_.restart();
    io_.run_one();
  }
  io_.restart();
  io_.poll();  // the late result arrives and is dropped
  EXPECT_TRUE(finished);
  EXPECT_EQ(result_->status().code(), absl::StatusCode::kCancelled);
}

TEST_F(HookPoolTest, ADeadlineEndsTheWait) {
  std::latch release(1);
  Start(
      [&]() -> absl::StatusOr<int> {
        release.wait();
        return 1;
      },
      absl::Seconds(5));
  io_.poll();
  clock_.Advance(absl::Seconds(5));
  Finish();
  EXPECT_EQ(result_->status().code(), absl::StatusCode::kDeadlineExceeded);
  release.count_down();
  while (pool_.outstanding() > 0) {
    io_.restart();
    io_.run_one();
  }
}

}  // namespace
}  // namespace baton
