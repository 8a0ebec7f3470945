// File: tools/bench/chat_turns.h
//
// BM_ChatTurns (tools/bench/chat_turns.cc): the worker's CPU per turn over a long chat.
#ifndef BATON_TOOLS_BENCH_CHAT_TURNS_H_
#define BATON_TOOLS_BENCH_CHAT_TURNS_H_

namespace baton {

// Registers BM_ChatTurns/tool and /text: 200 turns per chat (BATON_BENCH_TURNS changes it),
// 5 chats after a warm-up one; `smoke`: one chat of at most 20 turns.
void RegisterChatTurns(bool smoke);

}  // namespace baton

#endif  // BATON_TOOLS_BENCH_CHAT_TURNS_H_
