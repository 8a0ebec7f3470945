#include "runtime/hook_pool.h"

namespace baton {

HookPool::HookPool(int threads) : pool_(static_cast<size_t>(threads)) {}

HookPool::~HookPool() { pool_.join(); }

}  // namespace baton
