// service_thread.h: the session's background thread.
//
// It sleeps without the GIL on the handler's wake word (wakeup.h), polling
// the number of threads in the process, and takes the GIL for a tick (the
// session's service_tick: find new threads, resolve and aggregate samples,
// health checks) when threads come and go, when the sample buffer is a
// quarter full, and at least every 100 ms. It never gets a timer of its
// own and runs no Python code. Stopped across fork() (a fork of a
// single-threaded program must not see it) and restarted afterwards.
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "session_thread.h"

namespace spprof {

// The kernel name (comm) of the service thread.
inline constexpr char kServiceThreadName[] = "spprof-service";

class ThreadRegistry;

class ServiceThread {
public:
    using Tick = void (*)();  // called with the GIL held

    // Start it. 0 or an errno value.
    int start(ThreadRegistry* registry, Tick tick);
    // GIL held: stop it and wait for it (the GIL is released while waiting).
    void stop();
    bool running() const { return thread_.running(); }
    bool is_current_thread() const { return thread_.is_current_thread(); }

    // The counters of one session.
    void reset_counters();
    int64_t cpu_ns() const;  // of every service thread of the session
    uint64_t wakes() const { return wakes_.load(); }
    uint64_t gil_ticks() const { return gil_ticks_.load(); }

    // Across os.fork() in the parent: stopped before, started again after
    // (resume_after_fork: 0, an errno value, or -1 when it was not stopped
    // for a fork).
    void stop_for_fork();
    int resume_after_fork();
    bool stopped_for_fork() const { return thread_.stopped_for_fork(); }
    // A fork child: that thread does not exist there.
    void forget_after_fork() { thread_.forget_after_fork(); }

private:
    static void* main(void* arg);
    void loop();

    ThreadRegistry* registry_ = nullptr;
    Tick tick_ = nullptr;
    SessionThread thread_;
    std::atomic<uint64_t> wakes_{0};        // how often it woke up
    std::atomic<uint64_t> gil_ticks_{0};    // how many wakes took the GIL
};

// Threads in this process (procfs: the task directory's link count), or -1.
long process_thread_count();

}  // namespace spprof
