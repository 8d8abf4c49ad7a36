#include "service_thread.h"

#include <Python.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>

#include "os_clock.h"
#include "signal_handler.h"
#include "thread_registry.h"
#include "wakeup.h"

namespace spprof {

namespace {
// The service thread polls, without the GIL, for a change in the number of
// threads: every 20 ms while threads come and go (a change in the last
// second), every 50 ms in a steady state. Each wake costs a context
// switch, which is not free in a virtual machine.
constexpr int kBusyPollMs = 20;
constexpr int kSteadyPollMs = 50;
constexpr int64_t kBusyWindowNs = 1'000'000'000;
// It takes the GIL (to scan thread states, resolve and aggregate samples)
// at least this often, and early when the thread count changes or the
// buffer is a quarter full. Every GIL acquisition also costs the program a
// GIL hand-off, so an idle tick must not take it.
constexpr int64_t kFullTickNs = 100'000'000;
// After the thread count changes, this many polls in a row take the GIL:
// a new thread's state gets its kernel id only once the thread runs.
constexpr int kHotTicks = 3;
}  // namespace

long process_thread_count() {
    // One stat() is far cheaper than a GIL hand-off, so the service thread
    // checks it on every poll. -1 when procfs is not there (then only the
    // periodic scans find new threads).
    struct stat sb;
    if (stat("/proc/self/task", &sb) != 0) return -1;
    return static_cast<long>(sb.st_nlink);
}

int ServiceThread::start(ThreadRegistry* registry, Tick tick) {
    registry_ = registry;
    tick_ = tick;
    registry_->expect_own_thread();
    int err = thread_.start(&ServiceThread::main, this, 512 * 1024);
    if (err != 0) registry_->own_thread_failed();
    return err;
}

void ServiceThread::stop() { thread_.stop(&handler_state().wake_word); }

void ServiceThread::stop_for_fork() { thread_.stop_for_fork(&handler_state().wake_word); }

int ServiceThread::resume_after_fork() {
    if (!thread_.take_stopped_for_fork()) return -1;
    return start(registry_, tick_);
}

void ServiceThread::reset_counters() {
    thread_.reset_cpu();
    wakes_.store(0);
    gil_ticks_.store(0);
}

int64_t ServiceThread::cpu_ns() const { return thread_.cpu_ns(); }

void* ServiceThread::main(void* arg) {
    static_cast<ServiceThread*>(arg)->loop();
    return nullptr;
}

void ServiceThread::loop() {
    prepare_thread_for_exceptions();
    // Named in the kernel, so tools that list threads (top -H, py-spy, the
    // coverage line's threads without Python) can tell it from the program's.
    prctl(PR_SET_NAME, kServiceThreadName, 0, 0, 0);
    thread_.note_started();
    // Before this thread first holds a thread state (next line): a timer
    // made for it by a scan would sample a thread that runs no Python code.
    registry_->ignore_thread(current_tid());
    // Its own thread state, as PyGILState_Ensure would make, but out of
    // memory that one ends the process ("Couldn't create thread-state for
    // new thread"): this thread then just ends, and the session goes on
    // without it (stop() drains what the buffer kept).
    PyThreadState* tstate = PyThreadState_New(PyInterpreterState_Main());
    if (tstate == nullptr) {
        thread_.note_ending();
        return;
    }
    long threads_seen = process_thread_count();
    int64_t last_full_ns = monotonic_now_ns();
    int64_t last_change_ns = last_full_ns;
    // Threads started right after start() may already be in the first count
    // read above, so the first polls take the GIL as after a change.
    int hot = kHotTicks;
    while (!thread_.stop_requested()) {
        bool busy = monotonic_now_ns() - last_change_ns < kBusyWindowNs;
        // Woken early when the buffer is a quarter full.
        bool work = wakeup_wait(&handler_state().wake_word, busy ? kBusyPollMs : kSteadyPollMs);
        wakes_.fetch_add(1, std::memory_order_relaxed);
        if (thread_.stop_requested()) break;
        long threads_now = process_thread_count();
        if (threads_now != threads_seen) {
            threads_seen = threads_now;
            last_change_ns = monotonic_now_ns();
            hot = kHotTicks;
        }
        if (hot > 0) {
            --hot;
            work = true;
        }
        int64_t now = monotonic_now_ns();
        if (!work && now - last_full_ns < kFullTickNs) continue;
        last_full_ns = now;
        gil_ticks_.fetch_add(1, std::memory_order_relaxed);
        handler_state().wake_pending.store(false, std::memory_order_release);
        PyEval_RestoreThread(tstate);
        tick_();
        tstate = PyEval_SaveThread();
    }
    thread_.note_ending();
    PyEval_RestoreThread(tstate);
    PyThreadState_Clear(tstate);
    PyThreadState_DeleteCurrent();
}

}  // namespace spprof
