// File: runtime/exec/hook_pool.h
//
// HookPool: where user code (hooks, tool executes) runs. A bounded set of threads, so user code
// may block without stalling the event loop; the awaiting run resumes on its executor when the
// call returns, or earlier when its deadline passes or it is stopped (the late result is then
// dropped).
#ifndef BATON_RUNTIME_EXEC_HOOK_POOL_H_
#define BATON_RUNTIME_EXEC_HOOK_POOL_H_

#include <atomic>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "asio/any_io_executor.hpp"
#include "asio/awaitable.hpp"
#include "asio/io_context.hpp"
#include "asio/post.hpp"
#include "asio/thread_pool.hpp"
#include "runtime/exec/clock.h"
#include "runtime/exec/waiter.h"

namespace baton {

// Thread-safety: Run() is called on a run's executor; the pool's threads only run the submitted
// functions and post results back.
class HookPool {
 public:
  explicit HookPool(int threads);
  ~HookPool();  // waits for running calls to finish

  // Runs `fn` on the pool. `R` is absl::Status or absl::StatusOr<T>; an exception thrown by `fn`
  // becomes an error status carrying its what(). Returns kCancelled when `stop` is requested
  // first and kDeadlineExceeded when `deadline` passes first. `*in_time`, when given, says
  // whether the result is fn's own (it came back before the deadline and the stop).
  template <typename R>
  asio::awaitable<R> Run(asio::any_io_executor executor, Clock& clock, absl::AnyInvocable<R()> fn,
                         absl::Time deadline, std::stop_token stop = {}, bool* in_time = nullptr);

  // Runs `fn` on the pool and then `done(result)` on `executor`. The building block of Run(),
  // for callers that wait on several calls at once (parallel tool executes).
  template <typename R>
  void Submit(asio::any_io_executor executor, absl::AnyInvocable<R()> fn,
              absl::AnyInvocable<void(R)> done);

  // Calls submitted whose results have not yet been handled on their executor. The test kit
  // reads it to know when a process is quiet.
  int outstanding() const { return outstanding_.load(std::memory_order_acquire); }

 private:
  template <typename R>
  static R CallCatching(absl::AnyInvocable<R()>& fn) {
    try {
      return fn();
    } catch (const std::exception& e) {
      return absl::InternalError(e.what());
    } catch (...) {
      return absl::UnknownError("unknown exception");
    }
  }

  asio::thread_pool pool_;
  std::atomic<int> outstanding_{0};
};

template <typename R>
void HookPool::Submit(asio::any_io_executor executor, absl::AnyInvocable<R()> fn,
                      absl::AnyInvocable<void(R)> done) {
  outstanding_.fetch_add(1, std::memory_order_acq_rel);
  // The tracked executor counts as outstanding work of the loop until the result is posted, so
  // a loop waiting for it blocks instead of returning for lack of work.
  auto tracked = asio::prefer(executor, asio::execution::outstanding_work.tracked);
  asio::post(pool_, [this, tracked, fn = std::move(fn), done = std::move(done)]() mutable {
    R result = CallCatching(fn);
    // The call stops counting only when its result is handled on `executor`: a count of zero
    // then means nothing is in flight and nothing is queued (the test kit relies on it).
    asio::post(tracked, [this, done = std::move(done), result = std::move(result)]() mutable {
      outstanding_.fetch_sub(1, std::memory_order_acq_rel);
      done(std::move(result));
    });
  });
}

template <typename R>
asio::awaitable<R> HookPool::Run(asio::any_io_executor executor, Clock& clock,
                                 absl::AnyInvocable<R()> fn, absl::Time deadline,
                                 std::stop_token stop, bool* in_time) {
  // Touched only on `executor`: the pool thread hands the result over by posting.
  struct Call {
    std::optional<R> result;
    Waiter* waiter = nullptr;
  };
  auto call = std::make_shared<Call>();
  Waiter waiter(executor, clock);
  call->waiter = &waiter;
  Submit<R>(executor, std::move(fn), [call](R result) {
    call->result = std::move(result);
    if (call->waiter != nullptr) call->waiter->Notify();
  });
  Waiter::Result woke = co_await waiter.Wait(deadline, stop);
  call->waiter = nullptr;
  if (in_time != nullptr) *in_time = call->result.has_value();
  if (call->result.has_value()) co_return std::move(*call->result);
  if (woke == Waiter::Result::kStopped) co_return absl::CancelledError("stopped");
  co_return absl::DeadlineExceededError("user code did not return in time");
}

// RunUntilQuiet()
//
// Runs `io` on this thread until no handler is ready and no call of `pool` is in flight:
// every run is parked (on `.in`, a timer or the clock). For tests and benchmarks that drive a
// process themselves; the test kit uses it after every step. A pool call stops counting only
// when its result has been handled on `io`, so a non-zero count means a result is to come.
void RunUntilQuiet(asio::io_context& io, const HookPool& pool);

}  // namespace baton

#endif  // BATON_RUNTIME_EXEC_HOOK_POOL_H_
