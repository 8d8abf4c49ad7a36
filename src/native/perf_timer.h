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

// Read and written by the SIGPROF handler of the event's own thread, set up
// by the thread that creates the event before it is enabled.
struct PerfSlot {
    std::atomic<uint32_t> session{0};  // 0: not one of ours
    int32_t tid = 0;
    int64_t interval_ns = 0;
    int64_t phase_ns = 0;     // CPU time before the first expiration
    uint64_t delivered = 0;   // expirations already charged to samples
    bool period_set = false;  // the handler moved the period from phase to interval
};

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

struct PerfTimer {
    int fd = -1;
    dev_t dev = 0;  // identity of the descriptor, checked before closing:
    ino_t ino = 0;  // the program may have closed it and reused the number
};

// Open a disabled event for thread `tid` whose first expiration comes after
// `phase_ns` of its CPU time and then every `interval_ns`; signals go to
// that thread as SIGPROF. Returns 0 or an errno value.
int perf_timer_create(pid_t tid, uint32_t session, int64_t interval_ns, int64_t phase_ns,
                      PerfTimer* out);
// Enable (true) or disable the event. Returns 0 or an errno value.
int perf_timer_enable(const PerfTimer& t, bool on);
// Close the event (only if the descriptor is still ours).
void perf_timer_close(PerfTimer* t);
// In a fork child: close the inherited descriptor without touching the slot
// the parent's handler state mirrors.
void perf_timer_close_in_child(PerfTimer* t);

}  // namespace spprof
