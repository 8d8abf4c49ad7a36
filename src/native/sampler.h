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
    uint32_t grid = 0;  // its grid's reference (timer_grid), 0: none
    PerfTimer perf;
    bool is_perf() const { return perf.fd >= 0; }
};

// The CPU-time clock of thread `tid` of this process.
clockid_t thread_cpu_clock(pid_t tid);
// Its CPU time now (-1 if the thread is gone).
int64_t thread_cpu_ns(pid_t tid);

// A POSIX timer's expirations are laid on a grid of the thread's CPU time,
// like a perf_event timer's (perf_timer.h: the same PerfSlot fields and the
// same handler arithmetic): a signal charges the grid's points passed since
// the last one. The kernel's overrun count says as much for the signals
// that come, but not what did not: on a loaded machine (more runnable
// threads than cores) Linux 6.18 was measured checking these timers late,
// by up to 240 ms of a thread's CPU between two signals, so a thread
// burning 500 ms at 1 ms had 250 to 475 of its expirations signalled by
// the end, the rest lost without a trace at timer_delete. The grid knows
// what each timer still owes at a pause, a thread's end or stop
// (thread_timer_points_owed, counted as undelivered), and a thread started
// during the session is charged from its CPU time 0 by its first signal.
// A grid is found by the reference in the timer's si_value (index + 1),
// never freed, so the handler needs no lookup and no lock; reused once its
// timer is deleted (a signal still queued for the old thread is told apart
// by the tid). More timers than grids: the rest are weighted by
// 1 + si_overrun (timer_grid(0) is nullptr).
inline constexpr uint32_t kMaxTimerGrids = 65536;
// ASYNC-SIGNAL-SAFE. The grid of reference `ref`, or nullptr.
PerfSlot* timer_grid(uint32_t ref);
// Forget every grid in a forked child: its parent's timers are not its.
void timer_grids_after_fork();

// Create (but do not arm) the timer of thread `tid`. Returns 0 or an errno
// value (EAGAIN: RLIMIT_SIGPENDING reached; EINVAL: the thread is gone).
// One attempt, no waiting: callers hold the GIL and the registry's lock
// (which also guards the grids' allocation). `from_thread_start`: its grid
// starts at the thread's CPU time 0, so the first sample also charges the
// CPU it used before (a thread born while the session runs).
int create_thread_timer(pid_t tid, uint32_t session, bool from_thread_start, ThreadTimer* out);

// Arm with a period of `interval_ns` (0 disarms; the timer stays allocated).
// A perf_event timer is enabled or disabled (its phase was set at creation).
// A POSIX timer's grid starts anew at each arming (not while a signal of
// its may be handled: at creation, or with the session paused or its
// timers disarmed), from `first_ns`.
// The first expiry comes after `first_ns` of the thread's CPU time (0: one
// full interval). A first expiry drawn uniformly from (0, interval] makes
// the expected number of expirations of a thread equal to its CPU time over
// the interval however short the thread is; a full interval would never
// fire in a thread that uses less, a bias against short threads.
int arm_thread_timer(const ThreadTimer& t, int64_t interval_ns, int64_t first_ns = 0);

// How many points of the timer's grid thread `tid` has passed whose signal
// has not come (yet): charged to no sample if the timer is deleted now.
// Not while a handler of that thread may run. 0 for an unarmed timer.
uint64_t thread_timer_points_owed(const ThreadTimer& t);

// Delete the timer (either kind). Returns the overrun count the kernel still
// held for a POSIX timer.
int delete_thread_timer(ThreadTimer* t);

}  // namespace spprof
