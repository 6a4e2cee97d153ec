// TbbExecutor's scheduling guarantees: every index once, nested calls, Submit() running
// threads() tasks at once while the submitter blocks, and a loop called from outside the arena
// running on its caller even while every worker is held by a submitted task.
#include "core/pipeline/tbb_executor.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace hc {
namespace {

// Long enough never to fire in a passing run on a loaded machine; it only bounds a failing one.
constexpr std::chrono::seconds kWatchdog{60};

TEST(TbbExecutorTest, ParallelForCallsEveryIndexOnceNestedOrNot) {
  for (int threads : {1, 2, 3}) {
    TbbExecutor ex(threads);
    EXPECT_EQ(ex.threads(), threads);
    constexpr int64_t kOuter = 37, kInner = 53;
    std::vector<std::atomic<int>> calls(kOuter * kInner);
    ex.ParallelFor(kOuter, [&](int64_t i) {
      ex.ParallelFor(kInner, [&](int64_t j) { calls[i * kInner + j].fetch_add(1); });
    });
    for (const auto& c : calls) ASSERT_EQ(c.load(), 1) << "threads " << threads;
    ex.ParallelFor(0, [&](int64_t) { ADD_FAILURE() << "n = 0 ran a body"; });
  }
}

// The compression pipeline's pattern: a thread submits tasks that run nested loops, then blocks
// on a condition variable until they are done; no slot is reserved for it.
TEST(TbbExecutorTest, SubmitterMayBlockWhileTasksRunNestedLoops) {
  for (int threads : {1, 2}) {
    TbbExecutor ex(threads);
    constexpr int kTasks = 6;
    constexpr int64_t kChunks = 40;
    std::mutex mu;
    std::condition_variable cv;
    int done = 0;
    std::vector<int64_t> sums(kTasks, 0);
    for (int t = 0; t < kTasks; ++t) {
      ex.Submit([&, t] {
        std::vector<int64_t> part(kChunks);
        ex.ParallelFor(kChunks, [&](int64_t c) {
          ex.ParallelFor(3, [&](int64_t k) {
            if (k == 0) part[c] = c * (t + 1);
          });
        });
        int64_t s = 0;
        for (int64_t v : part) s += v;
        std::lock_guard<std::mutex> lock(mu);
        sums[t] = s;
        ++done;
        cv.notify_all();
      });
    }
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done == kTasks; });
    for (int t = 0; t < kTasks; ++t) EXPECT_EQ(sums[t], (t + 1) * kChunks * (kChunks - 1) / 2);
  }
}

// The server's pattern: an arena of N threads runs N submitted tasks at once (each task here
// waits until all N have started, so fewer at once would never let them finish).
TEST(TbbExecutorTest, SubmitRunsThreadsTasksAtOnce) {
  constexpr int kThreads = 3;
  TbbExecutor ex(kThreads);
  std::mutex mu;
  std::condition_variable cv;
  int started = 0, met = 0, max_busy = 0;
  for (int t = 0; t < kThreads; ++t) {
    ex.Submit([&] {
      std::unique_lock<std::mutex> lock(mu);
      ++started;
      max_busy = std::max(max_busy, ex.busy());
      cv.notify_all();
      if (cv.wait_for(lock, kWatchdog, [&] { return started == kThreads; })) ++met;
    });
  }
  ex.WaitAll();
  EXPECT_EQ(met, kThreads);
  EXPECT_EQ(max_busy, kThreads);
  EXPECT_EQ(ex.busy(), 0);
}

// A loop called from a thread outside the arena (the GEMV kernels' caller) runs on that thread:
// here both workers are held by submitted tasks until the loop has returned, so the loop can
// only finish if its caller runs it. Before the caller took a slot of its own it handed the
// loop to the busy workers and waited (here, until the watchdog released them).
TEST(TbbExecutorTest, LoopFromOutsideRunsOnItsCallerWhileWorkersAreBusy) {
  TbbExecutor ex(2);
  std::mutex mu;
  std::condition_variable cv;
  int holding = 0;
  bool release = false, loop_done = false;
  for (int t = 0; t < 2; ++t) {
    ex.Submit([&] {
      std::unique_lock<std::mutex> lock(mu);
      ++holding;
      cv.notify_all();
      cv.wait(lock, [&] { return release; });
    });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return holding == 2; });
  }
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, kWatchdog, [&] { return loop_done; });
    release = true;
    cv.notify_all();
  });
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int> on_caller{0}, calls{0};
  ex.ParallelFor(16, [&](int64_t) {
    calls.fetch_add(1);
    if (std::this_thread::get_id() == caller) on_caller.fetch_add(1);
  });
  bool released_first = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    released_first = release;
    loop_done = true;
  }
  cv.notify_all();
  watchdog.join();
  ex.WaitAll();
  EXPECT_EQ(calls.load(), 16);
  EXPECT_FALSE(released_first) << "the loop waited for the submitted tasks to end";
  EXPECT_GE(on_caller.load(), 1);
}

// With one thread the caller runs the whole loop itself: the arena has no worker to give it to.
TEST(TbbExecutorTest, OneThreadRunsLoopsOnTheCaller) {
  TbbExecutor ex(1);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int> elsewhere{0};
  for (int rep = 0; rep < 20; ++rep) {
    ex.ParallelFor(64, [&](int64_t) {
      if (std::this_thread::get_id() != caller) elsewhere.fetch_add(1);
    });
  }
  EXPECT_EQ(elsewhere.load(), 0);
}

}  // namespace
}  // namespace hc
