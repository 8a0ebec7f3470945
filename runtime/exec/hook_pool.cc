#include "runtime/exec/hook_pool.h"

namespace baton {

HookPool::HookPool(int threads) : pool_(static_cast<size_t>(threads)) {}

HookPool::~HookPool() { pool_.join(); }

void RunUntilQuiet(asio::io_context& io, const HookPool& pool) {
  for (;;) {
    io.restart();
    if (io.poll() > 0) continue;
    if (pool.outstanding() == 0) return;
    io.restart();
    io.run_one();  // blocks until a pool call hands back its result
  }
}

}  // namespace baton
