// perf_timer.h: a thread's sampling timer on its perf_event task clock.
//
// POSIX CPU-time timers are checked on scheduler ticks only (250 Hz here),
// so a thread that ends between two ticks loses the CPU it used since the
// last one: most of the CPU of a thread that lives a few milliseconds. A
// perf_event software task-clock event counts the thread's CPU with an
// hrtimer while it runs and signals the thread when a period elapses, at
// any interval and at the right moment. It needs perf_event_open (allowed
// by perf_event_paranoid <= 2 and no seccomp filter); where it is refused,
// the registry falls back to timer_create.
//
// Each event is one file descriptor. The handler finds the event's state in
// a table indexed by that descriptor (si_fd of the signal), preallocated
// and never freed, so it needs no lookup structure and no lock.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace spprof {

// The event is the trigger, the thread's CPU clock is the measure. The
// task-clock count runs ahead of the thread's CPU time wherever the kernel
// accounts steal time (a virtual machine whose vCPU the host preempted while
// the thread was scheduled on it counts for the task clock, not for
// CLOCK_THREAD_CPUTIME_ID, time.thread_time() or getrusage): weights taken
// from the count over-counted by the steal, up to 10% in a 200 ms window on
// a busy host. So expirations are laid on a grid of the thread's own CPU
// time (CLOCK_THREAD_CPUTIME_ID, read in the handler), starting at
// `cpu_base_ns` and shifted by the CPU the thread used while its event was
// disabled (pause): expiration k is due at cpu_base + phase + k * interval.
// A signal that comes before the next grid point (the task clock is ahead)
// charges nothing; one that comes late charges every point it passed.
// The event's period is kept so that signals come at the points (PerfPeriod):
// a signal after an early one, or after a catch-up, is aimed at the next
// point. A thread started during the session has its grid from CPU time 0
// (`from_thread_start`): what it used before its event existed is charged
// by its first sample, which comes at once when a point has already passed.
// At its exit, a point passed whose signal has not come yet is charged too
// (charge_perf_points_at_exit).
//
// Read and written by the SIGPROF handler of the event's own thread, set up
// by the thread that creates the event before it is enabled. `cpu_base_ns`
// and `disabled_cpu_ns` are also written by perf_timer_enable() from the
// thread that pauses or resumes, while the session's `paused` flag keeps the
// handler from reading them (Session::pause waits for running handlers).
// The event's period, kept so that signals come at the grid's points.
enum class PerfPeriod : uint8_t {
    interval,       // the interval: the last signal came at a point
    then_interval,  // ends at the next point: the next signal sets the interval
    aim_next,       // a short one: the next signal aims at the next point
};

struct PerfSlot {
    std::atomic<uint32_t> session{0};  // 0: not one of ours
    int32_t tid = 0;
    int64_t interval_ns = 0;
    int64_t phase_ns = 0;     // CPU time before the first expiration
    uint64_t delivered = 0;   // expirations already charged to samples
    PerfPeriod period = PerfPeriod::interval;  // what the event's period is now
    bool ever_enabled = false;
    bool from_thread_start = false;  // the grid starts at the thread's CPU 0
    bool disabled = false;                 // disabled since disabled_cpu_ns
    std::atomic<int64_t> cpu_base_ns{0};  // the thread's CPU time where the grid starts
    int64_t disabled_cpu_ns = 0;           // its CPU time when last disabled
    // (Every field starts at zero: the table of slots stays in .bss, whose
    // untouched pages cost nothing, not 3.6 MB of the module's file.)
};

// ASYNC-SIGNAL-SAFE. How many points of `slot`'s grid a thread at `cpu`
// (its CPU time minus cpu_base_ns) has passed.
inline uint64_t grid_points_due(const PerfSlot* slot, int64_t cpu) {
    const int64_t reach = cpu + slot->interval_ns / 64;  // timer vs clock jitter
    return reach < slot->phase_ns
               ? 0
               : static_cast<uint64_t>((reach - slot->phase_ns) / slot->interval_ns) + 1;
}

inline constexpr int kMaxPerfFd = 65536;

// ASYNC-SIGNAL-SAFE. The slot of descriptor `fd`, or nullptr out of range.
PerfSlot* perf_slot(int fd);

// Whether perf_event task-clock sampling can be used in this process; the
// first call probes (opens and closes one event). `why` gets the reason
// when not.
bool perf_events_available(std::string* why);
// Whether kernel-mode CPU is sampled too (not with perf_event_paranoid >= 2
// without CAP_PERFMON; the handler's weights still count it, from the
// event's count).
bool perf_events_include_kernel();
// Wall mode: events made from now on count user mode only, so that no
// signal is raised while a thread is inside a system call, where it would
// end a blocking call the thread is entering (poll() returns EINTR even
// under SA_RESTART): a signal raised in user mode is taken before the next
// system call begins. Their weights still count kernel time (the grid is
// the thread's CPU clock).
void perf_events_user_only(bool yes);

struct PerfTimer {
    int fd = -1;
    pid_t tid = 0;  // the thread it signals
    dev_t dev = 0;  // identity of the descriptor, checked before any use:
    ino_t ino = 0;  // the program may have closed it and reused the number
};

// Open a disabled event for thread `tid` whose first expiration comes after
// `phase_ns` of its CPU time and then every `interval_ns`; signals go to
// that thread as SIGPROF. The descriptor is placed at `min_fd` or above
// (out of the low numbers programs expect: select() takes only descriptors
// below 1024); EMFILE when it cannot be. `from_thread_start`: the grid
// starts at the thread's first instruction (CPU time 0), not where the
// event is first enabled, so the first sample also charges the CPU the
// thread used before (a thread born while this session's timers run).
// Returns 0 or an errno value.
int perf_timer_create(pid_t tid, uint32_t session, int64_t interval_ns, int64_t phase_ns,
                      int min_fd, bool from_thread_start, PerfTimer* out);
// Whether `t`'s descriptor is still our event: a perf_event file set up to
// signal SIGPROF to its thread. The program may have closed it and reused
// the number, or dup2'ed something over it. ASYNC-SIGNAL-SAFE (fcntl and
// fstat only).
bool perf_timer_still_ours(const PerfTimer& t);
// Forget a descriptor that is no longer ours, without touching it.
void perf_timer_forget(PerfTimer* t);
// Enable (true) or disable the event. Returns 0 or an errno value. The CPU
// the thread uses while its event is disabled is taken out of its grid.
int perf_timer_enable(const PerfTimer& t, bool on);
// Close the event (only if the descriptor is still ours).
void perf_timer_close(PerfTimer* t);
// In a fork child: close the inherited descriptor without touching the slot
// the parent's handler state mirrors.
void perf_timer_close_in_child(PerfTimer* t);

}  // namespace spprof
