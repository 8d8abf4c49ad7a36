// session_thread.h: the life of a background thread of the session, shared
// by the service thread (service_thread.h) and the wall reader
// (wall_reader.h): started with a small stack (a default 8 MiB reservation
// can fail under an address-space limit), stopped and joined with the GIL
// released (the program's threads keep running), stopped across os.fork()
// in the parent and started again after it, forgotten in a fork child
// (where it does not exist), and the CPU time it used (stats' overhead).
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace spprof {

class SessionThread {
public:
    // Run `body(arg)` on a new thread. 0 or an errno value.
    int start(void* (*body)(void*), void* arg, size_t stack_bytes);
    // GIL held: ask the thread to stop (stop_requested() becomes true),
    // wake it through the futex word `wake` (wakeup.h), and wait for it,
    // the GIL released meanwhile. Idempotent.
    void stop(std::atomic<uint32_t>* wake);
    bool stop_requested() const { return stop_.load(std::memory_order_acquire); }
    bool running() const { return running_; }
    bool is_current_thread() const { return running_ && pthread_equal(pthread_self(), thread_); }

    // Across os.fork() in the parent: stopped before; `resume` says whether
    // it was (once), so the owner starts it again.
    void stop_for_fork(std::atomic<uint32_t>* wake);
    bool take_stopped_for_fork();
    bool stopped_for_fork() const { return stopped_for_fork_; }
    // A fork child: the thread does not exist there.
    void forget_after_fork() { running_ = stopped_for_fork_ = false; }

    // On the thread itself: at its start, and as it ends (its CPU time is
    // kept for cpu_ns()).
    void note_started();
    void note_ending();
    // CPU time of every thread started since reset_cpu().
    int64_t cpu_ns() const;
    void reset_cpu() { ended_cpu_ns_.store(0); }

private:
    pthread_t thread_{};
    bool running_ = false;
    bool stopped_for_fork_ = false;
    std::atomic<bool> stop_{false};
    std::atomic<pid_t> tid_{0};
    std::atomic<int64_t> ended_cpu_ns_{0};  // of threads that ended
};

}  // namespace spprof
