// sampler.h: per-thread CPU-time timers (the SIGPROF disposition they need
// is sigprof_disposition.h).
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

#include "perf_timer.h"

namespace spprof {

// A timer handle. glibc hands out timer id 0 as a timer_t equal to NULL, so
// validity is tracked separately from the id, never as "id != nullptr".
// A thread's timer is either a POSIX CPU-time timer or a perf_event
// task-clock event (perf_timer.h); `perf.fd >= 0` tells which.
struct ThreadTimer {
    timer_t id{};
    bool valid = false;
    PerfTimer perf;
    bool is_perf() const { return perf.fd >= 0; }
};

// The CPU-time clock of thread `tid` of this process.
clockid_t thread_cpu_clock(pid_t tid);

// Create (but do not arm) the timer of thread `tid`. Returns 0 or an errno
// value (EAGAIN: RLIMIT_SIGPENDING reached; EINVAL: the thread is gone).
// One attempt, no waiting: callers hold the GIL.
int create_thread_timer(pid_t tid, uint32_t session, ThreadTimer* out);

// Arm with a period of `interval_ns` (0 disarms; the timer stays allocated).
// A perf_event timer is enabled or disabled (its phase was set at creation).
// The first expiry comes after `first_ns` of the thread's CPU time (0: one
// full interval). A first expiry drawn uniformly from (0, interval] makes
// the expected number of expirations of a thread equal to its CPU time over
// the interval however short the thread is; a full interval would never
// fire in a thread that uses less, a bias against short threads.
int arm_thread_timer(const ThreadTimer& t, int64_t interval_ns, int64_t first_ns = 0);

// Delete the timer (either kind). Returns the overrun count the kernel still
// held for a POSIX timer.
int delete_thread_timer(ThreadTimer* t);

}  // namespace spprof
