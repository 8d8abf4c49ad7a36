// sampler.h: per-thread CPU-time timers and the SIGPROF disposition.
//
// Each sampled thread gets one POSIX timer on ITS OWN CPU clock
// (CLOCK_THREAD_CPUTIME_ID of that thread, built from its tid) that delivers
// SIGPROF to that thread (SIGEV_THREAD_ID). Any thread may create the timer
// of any other thread of the process, so threads need not call anything.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <string>

namespace spprof {

// A timer handle. glibc hands out timer id 0 as a timer_t equal to NULL, so
// validity is tracked separately from the id, never as "id != nullptr".
struct ThreadTimer {
    timer_t id{};
    bool valid = false;
};

// The CPU-time clock of thread `tid` of this process.
clockid_t thread_cpu_clock(pid_t tid);

// Create (but do not arm) the timer of thread `tid`. Returns 0 or an errno
// value (EAGAIN: RLIMIT_SIGPENDING reached; EINVAL: the thread is gone).
// EAGAIN is retried briefly first.
int create_thread_timer(pid_t tid, uint32_t session, ThreadTimer* out);

// Arm with a period of `interval_ns` (0 disarms; the timer stays allocated).
int arm_thread_timer(const ThreadTimer& t, int64_t interval_ns);

// Delete the timer. Returns the overrun count the kernel still held for it.
int delete_thread_timer(ThreadTimer* t);

// Install our SIGPROF handler. With `take_over` false, refuses (returns
// false and sets `error`) if the program already has a SIGPROF handler.
bool install_signal_handler(bool take_over, std::string* error);

// Put back exactly the disposition that was there before install, after
// discarding any SIGPROF still pending for our timers on any thread.
void restore_signal_handler();

// In a fork child: put the previous disposition back without waiting.
void restore_signal_handler_after_fork();

}  // namespace spprof
