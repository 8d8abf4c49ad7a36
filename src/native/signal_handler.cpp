// The SIGPROF handler. See signal_handler.h for the contract this file keeps.
#include "signal_handler.h"

#include <errno.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "frame_walker.h"
#include "sample_buffer.h"

namespace spprof {

namespace {
HandlerState g_state;

// ASYNC-SIGNAL-SAFE (clock_gettime is on the POSIX list; vDSO, no syscall).
inline int64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// ASYNC-SIGNAL-SAFE: forwards a SIGPROF that is not ours to the handler the
// program had installed before us (only when we were told to take over).
void forward_foreign(HandlerState& st, int signo, siginfo_t* info, void* uc) {
    st.counters.foreign_signals.fetch_add(1, std::memory_order_relaxed);
    if (!st.chain_previous) return;
    const struct sigaction& prev = st.previous;
    if (prev.sa_flags & SA_SIGINFO) {
        if (prev.sa_sigaction != nullptr) prev.sa_sigaction(signo, info, uc);
    } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN &&
               prev.sa_handler != nullptr) {
        prev.sa_handler(signo);
    }
}

// ASYNC-SIGNAL-SAFE.
void take_sample(HandlerState& st, int signo, siginfo_t* info, void* uc) {
    if (info == nullptr || info->si_code != SI_TIMER) {
        forward_foreign(st, signo, info, uc);
        return;
    }
    auto value = reinterpret_cast<uint64_t>(info->si_value.sival_ptr);
    if ((value >> 48) != kTimerMagic) {
        forward_foreign(st, signo, info, uc);
        return;
    }
    if (((value >> 32) & 0xffffu) != (st.session.load(std::memory_order_relaxed) & 0xffffu)) {
        // Queued by a timer of an earlier session before it was deleted.
        st.counters.stale_signals.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    const int64_t start = monotonic_ns();
    HandlerCounters& c = st.counters;
    c.signals.fetch_add(1, std::memory_order_relaxed);
    const uint32_t overrun = info->si_overrun > 0 ? static_cast<uint32_t>(info->si_overrun) : 0;
    c.overruns.fetch_add(overrun, std::memory_order_relaxed);
    const uint32_t weight = 1 + overrun;

    if (st.paused.load(std::memory_order_relaxed)) {
        // A signal already queued when the timers were disarmed.
        c.paused_signals.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    PyThreadState* tstate = compat::own_thread_state();
    if (tstate == nullptr) {
        c.no_thread_state.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    SampleSlot* slot = st.buffer->try_claim();
    if (slot == nullptr) {
        c.dropped.fetch_add(1, std::memory_order_relaxed);
        c.dropped_weight.fetch_add(weight, std::memory_order_relaxed);
    } else {
        slot->timestamp_ns = start;
        // Read before the walk: the resolver uses it to tell a code object
        // seen here from a later one allocated at the same address.
        slot->code_epoch = st.code_epoch.load(std::memory_order_acquire);
        slot->tid = static_cast<int32_t>(value & 0xffffffffu);
        slot->weight = weight;
        WalkResult walk = walk_own_stack(tstate, slot->frames, kMaxDepth);
        slot->depth = walk.depth;
        slot->truncated = walk.truncated ? 1 : 0;
        if (walk.invalid) c.walk_errors.fetch_add(1, std::memory_order_relaxed);
        if (walk.recovered) c.recovered_walks.fetch_add(1, std::memory_order_relaxed);
        if (walk.truncated) c.truncated.fetch_add(1, std::memory_order_relaxed);
        st.buffer->publish(slot);
        c.samples.fetch_add(1, std::memory_order_relaxed);
        if (st.wake_fd >= 0 && st.buffer->approx_size() >= st.wake_threshold &&
            !st.wake_pending.exchange(true, std::memory_order_acq_rel)) {
            uint64_t one = 1;
            ssize_t ignored = write(st.wake_fd, &one, sizeof one);  // eventfd: AS-safe
            (void)ignored;
        }
    }
    c.handler_ns.fetch_add(static_cast<uint64_t>(monotonic_ns() - start),
                           std::memory_order_relaxed);
}

}  // namespace

void HandlerCounters::reset() {
    for (auto* a : {&signals, &samples, &dropped, &dropped_weight, &overruns, &no_thread_state,
                    &walk_errors, &recovered_walks, &truncated, &paused_signals, &foreign_signals, &stale_signals,
                    &handler_ns}) {
        a->store(0, std::memory_order_relaxed);
    }
}

HandlerState& handler_state() { return g_state; }

void sigprof_handler(int signo, siginfo_t* info, void* ucontext) {
    const int saved_errno = errno;
    HandlerState& st = g_state;
    // Entering before checking `active` (both seq_cst) pairs with stop(),
    // which clears `active` and then waits for `inflight` to reach zero:
    // either stop() sees this handler, or this handler sees inactive.
    st.inflight.fetch_add(1, std::memory_order_seq_cst);
    if (st.active.load(std::memory_order_seq_cst)) {
        take_sample(st, signo, info, ucontext);
    } else if (info == nullptr || info->si_code != SI_TIMER ||
               (reinterpret_cast<uint64_t>(info->si_value.sival_ptr) >> 48) != kTimerMagic) {
        forward_foreign(st, signo, info, ucontext);
    }
    st.inflight.fetch_sub(1, std::memory_order_release);
    errno = saved_errno;
}

void wait_for_handlers_to_finish() {
    while (g_state.inflight.load(std::memory_order_acquire) != 0) sched_yield();
}

}  // namespace spprof
