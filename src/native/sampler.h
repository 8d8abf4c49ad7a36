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

// Install our SIGPROF handler. With `take_over` false, refuses (returns
// false and sets `error`) if the program already has a SIGPROF handler.
// The disposition found becomes the one the program believes it has
// (ProgramDisposition in signal_handler.h).
bool install_signal_handler(bool take_over, std::string* error);

// While our handler is installed, with the GIL held: the program has just
// installed a SIGPROF disposition of its own (spprof/_signals.py, through
// Python's signal.signal). Put our handler back in its place and make what
// the program installed the disposition it believes it has (SIG_DFL instead
// when `believe_default`: SIG_DFL itself must never be installed while our
// timers run, their next signal would end the process). False, and nothing
// done, when our handler is not installed.
bool reclaim_signal_handler(bool believe_default);

// After our timers are deleted: discard every pending SIGPROF, then, if our
// handler is still installed, put back exactly the disposition the program
// believes it has (the one before install, or the one it installed since)
// and return true. If someone replaced our handler during the session,
// theirs stays and this returns false.
bool restore_signal_handler();

// The program is about to exec (os.exec*, seen by an audit hook): our
// timers are already disarmed. Discard every pending SIGPROF and put the
// disposition the program believes it has in place of our handler, so the
// new image inherits the program's own (a handler becomes SIG_DFL there;
// SIG_IGN stays) and no signal of ours. False if our handler was not
// installed.
bool suspend_signal_handler_for_exec();
// The exec failed and the program goes on: our handler back, what was
// installed meanwhile becoming what the program believes it has.
void resume_signal_handler_after_exec();

// In a fork child: the same without waiting (the child has no timers and
// no pending signals). Idempotent.
void restore_signal_handler_after_fork();

// What the last restore returned.
bool restored_program_disposition();

// The kernel's SIGPROF disposition: "spprof", "default", "ignore",
// "handler" (someone else's).
const char* sigprof_disposition_name();

}  // namespace spprof
