// The SIGPROF handler. See signal_handler.h for the contract this file keeps.
#include "signal_handler.h"

#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "frame_walker.h"
#include "native_unwind.h"
#include "perf_timer.h"
#include "sample_buffer.h"
#include "sampler.h"
#include "wakeup.h"

namespace spprof {

namespace {
HandlerState g_state;

// ASYNC-SIGNAL-SAFE (clock_gettime is on the POSIX list; vDSO, no syscall).
inline int64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// ASYNC-SIGNAL-SAFE: end the process the way the default action of `signo`
// (SIGPROF: terminate) would, for a signal the program leaves at SIG_DFL:
// SIG_DFL goes back in, the signal is unblocked in this thread (it is
// blocked while its handler runs) and raised again. Other threads' signals
// that arrive meanwhile end the process the same way. Only if the process
// survives that (a debugger swallowed the signal) does our handler go back.
void die_by_default_action(int signo) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    struct sigaction ours {};
    if (sigaction(signo, &dfl, &ours) != 0) return;
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, signo);
    pthread_sigmask(SIG_UNBLOCK, &only, nullptr);
    raise(signo);
    pthread_sigmask(SIG_BLOCK, &only, nullptr);
    sigaction(signo, &ours, nullptr);
}

// ASYNC-SIGNAL-SAFE.
bool mask_is_empty(const sigset_t& mask) {
    // Only the signals the kernel knows: glibc's sigset_t is larger, and a
    // disposition read back with sigaction() has garbage past them.
    for (int s = 1; s < NSIG; ++s) {
        if (sigismember(&mask, s) == 1) return false;
    }
    return true;
}

// ASYNC-SIGNAL-SAFE: a SIGPROF that is not from our timers (ITIMER_PROF,
// kill, another tool's timer) gets what the disposition the program believes
// SIGPROF has would give it (see ProgramDisposition): dropped for SIG_IGN,
// the process ends for SIG_DFL, else the program's handler runs, with its
// own siginfo/ucontext and its mask.
void forward_foreign(HandlerState& st, int signo, siginfo_t* info, void* uc) {
    st.counters.foreign_signals.fetch_add(1, std::memory_order_relaxed);
    struct sigaction program;
    st.program.get(&program);
    // sa_handler and sa_sigaction share storage: 0 and 1 are SIG_DFL and
    // SIG_IGN whatever the flags say (that is how the kernel reads them).
    if (program.sa_handler == SIG_IGN) return;
    if (program.sa_handler == SIG_DFL) {
        die_by_default_action(signo);
        return;
    }
    sigset_t saved;
    const bool masked = !mask_is_empty(program.sa_mask);
    if (masked) pthread_sigmask(SIG_BLOCK, &program.sa_mask, &saved);
    // The program's handler is not ours: while it runs, this thread does
    // not count as a handler in flight, so one that takes long or never
    // comes back here (siglongjmp) holds up neither stop() nor
    // ProgramDisposition::set(). `program` is our own copy.
    st.inflight.fetch_sub(1, std::memory_order_seq_cst);
    if (program.sa_flags & SA_SIGINFO) {
        program.sa_sigaction(signo, info, uc);
    } else {
        program.sa_handler(signo);
    }
    st.inflight.fetch_add(1, std::memory_order_seq_cst);
    if (masked) pthread_sigmask(SIG_SETMASK, &saved, nullptr);
}

// ASYNC-SIGNAL-SAFE. Set the period of perf event `fd`, only if it is still
// this thread's event (set to signal SIGPROF to `tid`): the program may have
// closed ours and reused the number since the signal was queued.
bool set_perf_period(int fd, int32_t tid, int64_t period_ns) {
    f_owner_ex owner{};
    if (fcntl(fd, F_GETSIG) != SIGPROF || fcntl(fd, F_GETOWN_EX, &owner) != 0 ||
        owner.type != F_OWNER_TID || owner.pid != tid) {
        return false;
    }
    uint64_t period = static_cast<uint64_t>(period_ns);
    return ioctl(fd, PERF_EVENT_IOC_PERIOD, &period) == 0;
}

// ASYNC-SIGNAL-SAFE. The weight of a perf_event signal: the expirations of
// the thread's CPU-time grid (perf_timer.h) passed and not yet charged. A
// signal can be lost (a SIGPROF already pending absorbs it) or an
// expiration skipped (in kernel mode without permission to sample it); the
// grid charges those to the next sample, so totals stay exact. The event's
// own count is not the measure: it includes steal time.
// `*next_in_ns` gets how much CPU the thread has to use until the next
// point not charged (more than interval / 64; 0 if the clock failed).
// ASYNC-SIGNAL-SAFE. The thread's CPU time on its grid (-1 if unreadable).
int64_t perf_grid_cpu(const PerfSlot* slot) {
    timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return -1;
    return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec -
           slot->cpu_base_ns.load(std::memory_order_acquire);
}

uint64_t perf_points_due(const PerfSlot* slot, int64_t cpu) { return grid_points_due(slot, cpu); }

uint32_t perf_weight(PerfSlot* slot, int64_t* next_in_ns) {
    *next_in_ns = 0;
    const int64_t cpu = perf_grid_cpu(slot);
    if (cpu < 0) return 1;
    const int64_t interval = slot->interval_ns;
    const uint64_t due = perf_points_due(slot, cpu);
    const uint64_t weight = due > slot->delivered ? due - slot->delivered : 0;
    if (weight > 0) slot->delivered = due;
    // Point `delivered` (counted from 0) is the next one not charged.
    *next_in_ns = slot->phase_ns + static_cast<int64_t>(slot->delivered) * interval - cpu;
    return weight > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(weight);
}

// ASYNC-SIGNAL-SAFE.
void take_sample(HandlerState& st, int signo, siginfo_t* info, void* uc) {
    if (info == nullptr) {
        forward_foreign(st, signo, info, uc);
        return;
    }
    const uint32_t session = st.session.load(std::memory_order_relaxed) & 0xffffu;
    int32_t tid = 0;
    uint32_t overrun = 0;
    uint32_t weight = 1;
    if (info->si_code == SI_TIMER) {
        auto value = reinterpret_cast<uint64_t>(info->si_value.sival_ptr);
        if ((value >> 48) != kTimerMagic) {
            forward_foreign(st, signo, info, uc);
            return;
        }
        if (((value >> 32) & 0xffffu) != session) {
            // Queued by a timer of an earlier session before it was deleted.
            st.counters.stale_signals.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        tid = static_cast<int32_t>(syscall(SYS_gettid));  // the timer signals its own thread
        PerfSlot* grid = timer_grid(static_cast<uint32_t>(value & 0xffffffffu));
        if (grid == nullptr) {
            // More timers than grids (sampler.h): the kernel's count.
            overrun = info->si_overrun > 0 ? static_cast<uint32_t>(info->si_overrun) : 0;
            weight = 1 + overrun;
        } else {
            if (grid->session.load(std::memory_order_acquire) != (session ? session : 1) || grid->tid != tid) {
                // The timer was deleted since it queued this (its grid may
                // be another thread's now).
                st.counters.stale_signals.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            if (st.paused.load(std::memory_order_acquire)) {
                // Queued before the pause disarmed it; its grid is laid
                // anew at resume.
                st.counters.signals.fetch_add(1, std::memory_order_relaxed);
                st.counters.paused_signals.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            std::atomic_thread_fence(std::memory_order_acquire);
            const int64_t cpu = grid->interval_ns > 0 ? perf_grid_cpu(grid) : -1;
            if (cpu < 0) {
                weight = 1 + (info->si_overrun > 0 ? static_cast<uint32_t>(info->si_overrun) : 0);
            } else {
                const uint64_t due = perf_points_due(grid, cpu);
                if (due <= grid->delivered) {
                    // Before its next point: queued before the grid was
                    // laid anew (a pause, an exec that failed).
                    st.counters.early_signals.fetch_add(1, std::memory_order_relaxed);
                    return;
                }
                const uint64_t passed = due - grid->delivered;
                grid->delivered = due;
                weight = passed > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(passed);
            }
            overrun = weight - 1;
        }
    } else if (info->si_code == POLL_IN || info->si_code == POLL_HUP) {
        PerfSlot* slot = perf_slot(info->si_fd);
        uint32_t owner = slot ? slot->session.load(std::memory_order_acquire) : 0;
        if (owner == 0 || owner != (session ? session : 1) ||
            slot->tid != static_cast<int32_t>(syscall(SYS_gettid))) {
            // An event of ours closed or recycled since it queued this.
            st.counters.stale_signals.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        tid = slot->tid;
        if (st.paused.load(std::memory_order_acquire)) {
            // Queued before the pause disabled the event. Its grid is being
            // moved (perf_timer_enable): neither read nor charged.
            st.counters.signals.fetch_add(1, std::memory_order_relaxed);
            st.counters.paused_signals.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        // Signals are kept on the grid's points (perf_timer.h: a thread
        // that ends between a point and its late signal would not be
        // charged for it): the event's period is the interval once a
        // signal came at a point, and the rest of the way to the next
        // point after one that did not.
        int64_t next_in_ns = 0;
        weight = perf_weight(slot, &next_in_ns);
        const bool off_grid = weight == 0 || slot->period == PerfPeriod::aim_next;
        if (off_grid && next_in_ns > 0 && next_in_ns <= slot->interval_ns) {
            if (set_perf_period(info->si_fd, tid, next_in_ns + slot->interval_ns / 128)) {
                slot->period = PerfPeriod::then_interval;
            }
        } else if (slot->period == PerfPeriod::then_interval) {
            set_perf_period(info->si_fd, tid, slot->interval_ns);
            slot->period = PerfPeriod::interval;
        }
        if (weight == 0) {
            // Before the next point: the task clock runs ahead of the
            // thread's CPU clock (steal time).
            st.counters.early_signals.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        overrun = weight - 1;
    } else {
        forward_foreign(st, signo, info, uc);
        return;
    }
    const int64_t start = monotonic_ns();
    HandlerCounters& c = st.counters;
    c.signals.fetch_add(1, std::memory_order_relaxed);
    c.overruns.fetch_add(overrun, std::memory_order_relaxed);

    if (st.paused.load(std::memory_order_relaxed)) {
        // A signal already queued when the timers were disarmed.
        c.paused_signals.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    // No thread state: a native thread (no Python at all), or a Python
    // thread before its state is bound or after it is gone. Its CPU counts:
    // the resolver names it.
    PyThreadState* tstate = compat::own_thread_state();
    if (tstate == nullptr) c.no_thread_state.fetch_add(1, std::memory_order_relaxed);
    SampleSlot* slot = st.buffer->try_claim();
    if (slot == nullptr) {
        c.dropped.fetch_add(1, std::memory_order_relaxed);
        c.dropped_weight.fetch_add(weight, std::memory_order_relaxed);
    } else {
        slot->timestamp_ns = start;
        // Read before the walk: the resolver uses it to tell a code object
        // seen here from a later one allocated at the same address.
        slot->code_epoch = st.code_epoch.load(std::memory_order_acquire);
        slot->tid = tid;
        slot->weight = weight;
        slot->flags = 0;
        slot->gc_pos = -1;
        // Native frames: where the evaluation loop runs each run of the
        // Python frames (filled by the walk, placed by the unwind).
        const bool want_native = uc != nullptr && st.native.load(std::memory_order_relaxed) &&
                                 st.buffer->trace_of(slot) != nullptr;
        EvalRuns runs;
        if (tstate == nullptr) {
            slot->depth = 0;
            slot->truncated = 0;
            slot->flags = kSampleNoThreadState;
        } else if (compat::thread_state_interp(tstate) != st.main_interp) {
            // Another interpreter's code objects die without telling us:
            // never record their addresses. The sample says where it was.
            slot->depth = 0;
            slot->truncated = 0;
            slot->flags = kSampleSubinterpreter;
            c.subinterpreter_samples.fetch_add(1, std::memory_order_relaxed);
        } else {
            if (st.gil.known()) {
                slot->flags |= kSampleGilKnown;
                if (st.gil.held_by(tstate)) slot->flags |= kSampleGilHeld;
            }
            const void* gc_frame = nullptr;
            bool in_gc = st.gc_tid.load(std::memory_order_acquire) == tid;
            if (in_gc) gc_frame = st.gc_frame.load(std::memory_order_acquire);
            WalkResult walk = walk_own_stack(tstate, slot->frames, kMaxDepth, gc_frame,
                                             want_native ? &runs : nullptr);
            slot->depth = walk.depth;
            slot->truncated = walk.truncated ? 1 : 0;
            if (walk.invalid) {
                runs.count = 0;
                // The signal landed while the interpreter was relinking its
                // frames (an eval loop's prologue, on 3.11/3.12): what was
                // read cannot be trusted. The sample keeps its weight under
                // an honest name rather than a wrong or empty stack.
                slot->depth = 0;
                slot->truncated = 0;
                slot->gc_pos = -1;
                slot->flags |= kSampleIncomplete;
            }
            if (in_gc) {
                slot->gc_pos = static_cast<int16_t>(walk.gc_pos >= 0 ? walk.gc_pos : 0);
                c.gc_samples.fetch_add(1, std::memory_order_relaxed);
            }
            if (walk.invalid) c.walk_errors.fetch_add(1, std::memory_order_relaxed);
            if (walk.recovered) c.recovered_walks.fetch_add(1, std::memory_order_relaxed);
            if (walk.truncated) c.truncated.fetch_add(1, std::memory_order_relaxed);
        }
        if (NativeTrace* trace = st.buffer->trace_of(slot)) {
            trace->depth = 0;
            trace->flags = 0;
            if (want_native) {
                // A Python thread: the C code between its runs of the
                // evaluation loop, each run's innermost frame told where its
                // call of the loop is among the native frames (RawFrame::
                // native_eval); a thread without Python: its whole stack.
                int16_t eval_at[kMaxDepth];
                native::EvalSplice splice{runs.count, runs.anchor, eval_at};
                trace->depth = static_cast<uint16_t>(native::unwind_signal_context(
                    uc, trace->ip, kMaxNativeDepth, tstate != nullptr ? &splice : nullptr,
                    &trace->flags));
                for (int j = 0; j < runs.count; ++j) {
                    slot->frames[runs.first_frame[j]].native_eval = eval_at[j] >= 0 ? eval_at[j] + 1 : -1;
                }
                if (trace->depth > 0) c.native_samples.fetch_add(1, std::memory_order_relaxed);
                if (trace->flags & native::kTraceUncovered) {
                    c.native_uncovered.fetch_add(1, std::memory_order_relaxed);
                }
            }
        }
        st.buffer->publish(slot);
        c.samples.fetch_add(1, std::memory_order_relaxed);
        if (st.wake_enabled.load(std::memory_order_relaxed) &&
            st.buffer->approx_size() >= st.wake_threshold &&
            !st.wake_pending.exchange(true, std::memory_order_acq_rel)) {
            wakeup_signal(&st.wake_word);
        }
    }
    c.handler_ns.fetch_add(static_cast<uint64_t>(monotonic_ns() - start),
                           std::memory_order_relaxed);
}

}  // namespace

void HandlerCounters::reset() {
    for (auto* a : {&signals, &samples, &dropped, &dropped_weight, &overruns, &no_thread_state,
                    &walk_errors, &recovered_walks, &truncated, &paused_signals, &foreign_signals, &stale_signals,
                    &early_signals, &gc_samples, &subinterpreter_samples, &native_samples, &native_uncovered,
                    &handler_ns}) {
        a->store(0, std::memory_order_relaxed);
    }
}

HandlerState& handler_state() { return g_state; }

void ProgramDisposition::set(const struct sigaction& action) {
    const int next = 1 - current_.load(std::memory_order_seq_cst);
    // A handler that read the index while `next` was the published slot may
    // still be copying it: every such handler is in flight now (it counts
    // itself before it reads the index), so wait for those to finish.
    // seq_cst pairs with the handler's count and read of the index: a
    // handler this does not see counted reads the published index.
    while (g_state.inflight.load(std::memory_order_seq_cst) != 0) sched_yield();
    slots_[next] = action;
    current_.store(next, std::memory_order_seq_cst);
}

void ProgramDisposition::get(struct sigaction* out) const {
    *out = slots_[current_.load(std::memory_order_seq_cst)];
}

void sigprof_handler(int signo, siginfo_t* info, void* ucontext) {
    const int saved_errno = errno;
    HandlerState& st = g_state;
    // Entering before checking `active` (both seq_cst) pairs with stop(),
    // which clears `active` and then waits for `inflight` to reach zero:
    // either stop() sees this handler, or this handler sees inactive.
    st.inflight.fetch_add(1, std::memory_order_seq_cst);
    if (st.active.load(std::memory_order_seq_cst)) {
        take_sample(st, signo, info, ucontext);
    } else if (info == nullptr ||
               (info->si_code != SI_TIMER && info->si_code != POLL_IN && info->si_code != POLL_HUP) ||
               (info->si_code == SI_TIMER &&
                (reinterpret_cast<uint64_t>(info->si_value.sival_ptr) >> 48) != kTimerMagic)) {
        forward_foreign(st, signo, info, ucontext);
    }
    st.inflight.fetch_sub(1, std::memory_order_release);
    errno = saved_errno;
}

void charge_perf_points_at_exit(int fd) {
    PerfSlot* slot = perf_slot(fd);
    if (slot == nullptr || slot->interval_ns <= 0 || g_state.paused.load(std::memory_order_acquire)) return;
    sigset_t only, saved;
    sigemptyset(&only);
    sigaddset(&only, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &only, &saved);
    const int64_t cpu = perf_grid_cpu(slot);
    if (cpu >= 0 && perf_points_due(slot, cpu) > slot->delivered) {
        // As if the event had signalled this point (with SIGPROF blocked,
        // no real signal of the event runs meanwhile).
        siginfo_t info;
        memset(&info, 0, sizeof info);
        info.si_signo = SIGPROF;
        info.si_code = POLL_IN;
        info.si_fd = fd;
        sigprof_handler(SIGPROF, &info, nullptr);
    }
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
}

void wait_for_handlers_to_finish() {
    while (g_state.inflight.load(std::memory_order_acquire) != 0) sched_yield();
}

}  // namespace spprof
