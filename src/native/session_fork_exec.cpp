// session_fork_exec.cpp: the session across exec() and fork() (session.h):
// an exec under way disarms everything of ours until it succeeds (the new
// image has none of it) or fails (sampling resumes); a fork stops the
// session's threads in the parent for its duration, and a child starts
// with no session at all.
#include "session.h"

#include "compat.h"
#include "messages.h"
#include "os_clock.h"
#include "sigprof_disposition.h"
#include "signal_handler.h"

namespace spprof {

void Session::before_exec() {
    if (!active_ || exec_pending_.load()) return;
    exec_pending_.store(true);
    run_.exec_at_ns = monotonic_now_ns();
    // No timer of ours fires again (threads found meanwhile get disarmed
    // ones), then nothing of ours is pending and the program's disposition
    // is in place. Our POSIX timers and perf_event descriptors (close on
    // exec) do not survive execve.
    registry_.set_interval(0);
    wall_.set_paused(true);
    suspend_signal_handler_for_exec();
}

void Session::resume_after_failed_exec() {
    if (!exec_pending_.load()) return;
    resume_signal_handler_after_exec();
    exec_pending_.store(false);
    if (!handler_state().paused.load()) {
        registry_.set_interval(run_.options.interval_ns);
        wall_.set_paused(false);
    }
}

void Session::before_fork() {
    // os.fork() warns (3.12+) when the process has other threads, counting
    // them in /proc: ours would make every fork of a single-threaded program
    // warn. The service thread is stopped across the fork; sampling goes on
    // meanwhile (the handler does not need it), the buffer waits.
    if (active_) {
        wall_.stop_for_fork();
        service_.stop_for_fork();
    }
}

void Session::after_fork_in_parent() {
    if (!active_ || !service_.stopped_for_fork()) return;
    // Not from this hook: 3.13 counts the process's threads for its warning
    // after the fork hooks ran. The main thread restarts it at its next
    // check for pending calls, or any spprof call that comes first.
    if (Py_AddPendingCall(&Session::restart_service_pending, nullptr) != 0) resume_service_after_fork();
}

int Session::restart_service_pending(void*) {
    instance().resume_service_after_fork();
    return 0;
}

void Session::resume_service_after_fork() {
    if (active_ && wall_.resume_after_fork() > 0) {
        warn("spprof: cannot restart the wall-clock reader thread after fork(); time off CPU "
             "is not sampled from now on");
    }
    if (active_ && service_.resume_after_fork() > 0) {
        warn("spprof: cannot restart the service thread after fork(); samples are resolved "
             "only at stop() from now on (and dropped when the buffer is full)");
    }
}

void Session::after_fork_in_child() {
    Session& s = instance();
    HandlerState& st = handler_state();
    if (!s.active_) return;
    st.active.store(false);
    st.inflight.store(0);
    restore_signal_handler_after_fork();
    s.registry_.forget_after_fork();
    s.service_.forget_after_fork();  // that thread does not exist in the child
    s.wall_.forget_after_fork();
    compat::remove_code_death_hook();
    s.gc_.remove();
    s.release_everything();
}

}  // namespace spprof
