// ReadOut(): the message a reader folds from `.out` read from seq 0 (one answer), for the unit
// tests of the run and the session loop.
#ifndef BATON_TESTS_UNIT_RUNTIME_RUN_READ_OUT_H_
#define BATON_TESTS_UNIT_RUNTIME_RUN_READ_OUT_H_

#include <vector>

#include "gtest/gtest.h"
#include "hooks/json.h"
#include "hooks/records.h"
#include "runtime/transcript/ui_reducer.h"

namespace baton {

// Every chunk from the answer's one `start` to its `finish`, folded as the AI SDK client folds
// them. Fails the test on a second `start` or a chunk the reducer refuses (a tool result for a
// call it never saw).
inline Json ReadOut(const std::vector<OutRecord>& out) {
  UiReducer reducer;
  int starts = 0;
  for (const OutRecord& r : out) {
    if (r.is_control) continue;
    if (r.chunk().value("type", "") == "start") ++starts;
    absl::Status applied = reducer.Apply(r.chunk());
    EXPECT_TRUE(applied.ok()) << applied << ": " << r.chunk().dump();
  }
  EXPECT_EQ(starts, 1);
  return reducer.message();
}

}  // namespace baton

#endif  // BATON_TESTS_UNIT_RUNTIME_RUN_READ_OUT_H_
