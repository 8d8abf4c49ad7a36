#include "sampler.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <thread>

#include "signal_handler.h"

namespace spprof {

// linux/posix-timers.h: MAKE_THREAD_CPUCLOCK with CPUCLOCK_SCHED and the
// per-thread bit.
clockid_t thread_cpu_clock(pid_t tid) {
    return static_cast<clockid_t>((~static_cast<unsigned>(tid) << 3) | 6u);
}

int create_thread_timer(pid_t tid, uint32_t session, ThreadTimer* out) {
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGPROF;
    sev._sigev_un._tid = tid;
    sev.sigev_value.sival_ptr = encode_timer_value(session, tid);
    // EAGAIN means the queued-signal budget (RLIMIT_SIGPENDING) is used up;
    // timers of exiting threads are being deleted concurrently, so a short
    // retry often succeeds.
    for (int attempt = 0;; ++attempt) {
        timer_t id{};
        if (timer_create(thread_cpu_clock(tid), &sev, &id) == 0) {
            out->id = id;
            out->valid = true;
            return 0;
        }
        int err = errno;
        if (err != EAGAIN || attempt >= 3) return err;
        std::this_thread::sleep_for(std::chrono::microseconds(200 << attempt));
    }
}

int arm_thread_timer(const ThreadTimer& t, int64_t interval_ns) {
    if (!t.valid) return EINVAL;
    struct itimerspec spec;
    memset(&spec, 0, sizeof spec);
    spec.it_interval.tv_sec = interval_ns / 1000000000;
    spec.it_interval.tv_nsec = interval_ns % 1000000000;
    spec.it_value = spec.it_interval;
    return timer_settime(t.id, 0, &spec, nullptr) == 0 ? 0 : errno;
}

int delete_thread_timer(ThreadTimer* t) {
    if (!t->valid) return 0;
    int overrun = timer_getoverrun(t->id);
    timer_delete(t->id);
    t->valid = false;
    t->id = timer_t{};
    return overrun > 0 ? overrun : 0;
}

bool install_signal_handler(bool take_over, std::string* error) {
    HandlerState& st = handler_state();
    struct sigaction current;
    if (sigaction(SIGPROF, nullptr, &current) != 0) {
        *error = std::string("cannot read the SIGPROF disposition: ") + strerror(errno);
        return false;
    }
    bool has_handler = (current.sa_flags & SA_SIGINFO)
                           ? current.sa_sigaction != nullptr
                           : (current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN);
    if (has_handler && current.sa_sigaction == sigprof_handler) {
        *error = "spprof's SIGPROF handler is already installed";
        return false;
    }
    if (has_handler && !take_over) {
        *error =
            "another SIGPROF handler is already installed (by the program or another "
            "profiler); spprof left it untouched. Remove it, or pass "
            "take_over_sigprof=True to let spprof replace it for the session and "
            "restore it on stop()";
        return false;
    }
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = sigprof_handler;
    // SA_RESTART: interrupted slow syscalls resume. CPU timers only fire on
    // a running thread, so blocked syscalls are rarely interrupted anyway.
    ours.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&ours.sa_mask);
    st.previous = current;
    st.chain_previous = has_handler;
    if (sigaction(SIGPROF, &ours, nullptr) != 0) {
        *error = std::string("cannot install the SIGPROF handler: ") + strerror(errno);
        return false;
    }
    return true;
}

void restore_signal_handler() {
    HandlerState& st = handler_state();
    // Setting SIG_IGN discards every pending SIGPROF on every thread
    // (POSIX; Linux flushes the shared and all per-thread queues). Our timers
    // are already deleted, so nothing of ours can be queued after this.
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPROF, &ignore, nullptr);
    // A handler that was already entered may still be running on another
    // thread; its code stays loaded, but wait so that no handler of ours
    // runs once we return.
    wait_for_handlers_to_finish();
    sigaction(SIGPROF, &st.previous, nullptr);
    st.chain_previous = false;
}

void restore_signal_handler_after_fork() {
    HandlerState& st = handler_state();
    sigaction(SIGPROF, &st.previous, nullptr);
    st.chain_previous = false;
}

}  // namespace spprof
