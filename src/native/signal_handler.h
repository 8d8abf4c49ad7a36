// signal_handler.h: the SIGPROF handler and the state it shares.
//
// THE CONTRACT (stated once, here; everything marked ASYNC-SIGNAL-SAFE in
// this codebase follows it):
//   - no malloc/free/new, no locks (no mutex, no GIL, no Python API that can
//     allocate, abort or lock), no C++ exceptions, no stdio;
//   - errno is saved on entry and restored on exit;
//   - bounded work: the stack walk and every retry loop have fixed bounds;
//   - only preallocated memory: the sample buffer and the atomics below;
//   - it reads the interrupted thread's OWN Python thread state, never the
//     GIL holder's, so a thread running C code with the GIL released is
//     charged to the Python function that called that code.
//
// The handler never touches the thread registry: everything it needs about
// the timer arrives in siginfo (the session and the timer's grid in
// si_value, a perf event's descriptor in si_fd) or is its own (gettid).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "gil_view.h"

namespace spprof {

class SampleBuffer;

// si_value layout of our POSIX timers: magic (16 bits) | session (16) |
// the reference of the timer's grid (32; sampler.h, 0: none). Signals of
// perf_event timers carry the event's descriptor instead (si_fd), whose
// slot holds the same (perf_timer.h).
inline constexpr uint64_t kTimerMagic = 0x5350;  // "SP"

inline void* encode_timer_value(uint32_t session, uint32_t grid) {
    uint64_t v = (kTimerMagic << 48) | (uint64_t{session & 0xffffu} << 32) | grid;
    return reinterpret_cast<void*>(v);
}

struct HandlerCounters {
    std::atomic<uint64_t> signals{0};          // SIGPROFs from our timers
    std::atomic<uint64_t> samples{0};          // samples written to the buffer
    std::atomic<uint64_t> dropped{0};          // buffer full
    std::atomic<uint64_t> dropped_weight{0};   // their weight (CPU intervals)
    std::atomic<uint64_t> overruns{0};         // sum of si_overrun
    std::atomic<uint64_t> no_thread_state{0};  // thread had no Python state
    std::atomic<uint64_t> walk_errors{0};      // invalid pointer / cycle seen
    std::atomic<uint64_t> recovered_walks{0};  // landed in an eval loop's prologue
    std::atomic<uint64_t> truncated{0};        // stack deeper than kMaxDepth
    std::atomic<uint64_t> paused_signals{0};   // arrived while paused
    std::atomic<uint64_t> foreign_signals{0};  // SIGPROF not from our timers
    std::atomic<uint64_t> stale_signals{0};    // from an earlier session
    std::atomic<uint64_t> early_signals{0};    // perf_event signal with no expiration due yet
    std::atomic<uint64_t> gc_samples{0};       // taken during a garbage collection
    std::atomic<uint64_t> subinterpreter_samples{0};  // thread was running another interpreter
    std::atomic<uint64_t> native_samples{0};     // samples with native frames
    std::atomic<uint64_t> native_uncovered{0};   // ... whose unwind met a frame without a registered table
    std::atomic<uint64_t> handler_ns{0};       // time spent in the handler
    void reset();
};

// The SIGPROF disposition the PROGRAM believes it has while our handler is
// installed: the one it had before start(), or the one it installed since
// through Python's signal.signal (spprof/_signals.py lets Python install it,
// then reclaim_signal_handler() in sigprof_disposition.h puts our handler back in its
// place and records it here). A SIGPROF that is not from our timers gets what
// this disposition would give it (forward_foreign): the program's handler
// runs, SIG_IGN drops it, SIG_DFL terminates the process. Our own timers'
// signals never reach it.
//
// One writer, holding the GIL; the readers are handlers on any thread. Two
// slots: the writer fills the one that is not published, then publishes it;
// before it fills a slot it waits until no handler that could still be
// reading that slot runs.
class ProgramDisposition {
public:
    // Not from a signal handler: it waits for running handlers.
    void set(const struct sigaction& action);
    // ASYNC-SIGNAL-SAFE. From a handler only while it counts in `inflight`;
    // otherwise only by the writer.
    void get(struct sigaction* out) const;

private:
    struct sigaction slots_[2]{};
    std::atomic<int> current_{0};
};

struct HandlerState {
    std::atomic<bool> active{false};
    std::atomic<bool> paused{false};
    // Handlers currently running (a handler does not count while it runs
    // the program's own handler, see forward_foreign).
    std::atomic<int> inflight{0};
    std::atomic<uint32_t> session{0};   // low 16 bits go into si_value
    SampleBuffer* buffer = nullptr;     // set before `active`
    std::atomic<uint64_t> code_epoch{0};  // bumped on every code object death
    std::atomic<bool> wake_enabled{false};  // a service thread waits on wake_word
    std::atomic<uint32_t> wake_word{0};     // futex: ask the resolver to drain (wakeup.h)
    std::atomic<bool> wake_pending{false};
    size_t wake_threshold = 0;          // buffer fill that triggers a wake
    ProgramDisposition program;         // what foreign SIGPROFs get
    // The interpreter whose code objects the session tracks (the one that
    // called start()): frames of any other interpreter are not read.
    void* main_interp = nullptr;
    // That interpreter's GIL: whether a sampled thread held it.
    GilView gil;
    // The thread running a garbage collection now (0: none) and the frame
    // that was current when it started (gc.callbacks, gc_marker.cpp).
    std::atomic<pid_t> gc_tid{0};
    std::atomic<const void*> gc_frame{nullptr};
    // Native frames in this session's samples (native_unwind.h); the
    // buffer then has a NativeTrace per slot.
    std::atomic<bool> native{false};
    HandlerCounters counters;
};

HandlerState& handler_state();

// The SIGPROF handler (installed with SA_SIGINFO). ASYNC-SIGNAL-SAFE.
void sigprof_handler(int signo, siginfo_t* info, void* ucontext);

// Not from a handler: in a thread about to exit (no Python frame left),
// whose perf_event timer is `fd`. The points of its CPU-time grid it has
// passed whose signal has not come yet (a signal comes a little after its
// point, and a thread may end in between: the first point of a thread that
// lives a few microseconds once its timer exists) are charged now, to one
// last sample of the thread, as the next signal would have.
void charge_perf_points_at_exit(int fd);

// Wait until no handler is running any more, after `active` was cleared.
// Spins with sched_yield: a handler's work is bounded (microseconds).
void wait_for_handlers_to_finish();

}  // namespace spprof
