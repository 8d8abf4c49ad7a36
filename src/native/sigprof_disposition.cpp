#include "sigprof_disposition.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "signal_handler.h"

namespace spprof {

namespace {
// Whether our handler is installed: from a successful install to the
// restore. Read and written with the GIL held (or in a fork child).
bool g_installed = false;
// Whether the last restore found our handler still installed and put the
// program's disposition back (false: someone had replaced ours; theirs was
// left in place).
bool g_restored_program = false;

struct sigaction our_disposition() {
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = sigprof_handler;
    // SA_RESTART: interrupted slow syscalls resume. CPU timers only fire on
    // a running thread, so blocked syscalls are rarely interrupted anyway.
    ours.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&ours.sa_mask);
    return ours;
}

bool is_ours(const struct sigaction& action) {
    return (action.sa_flags & SA_SIGINFO) && action.sa_sigaction == sigprof_handler;
}
}  // namespace

bool install_signal_handler(bool take_over, std::string* error) {
    HandlerState& st = handler_state();
    struct sigaction current;
    if (sigaction(SIGPROF, nullptr, &current) != 0) {
        *error = std::string("cannot read the SIGPROF disposition: ") + strerror(errno);
        return false;
    }
    if (is_ours(current)) {
        if (g_installed) {
            *error = "spprof's SIGPROF handler is already installed";
            return false;
        }
        // Ours from an earlier session, put back after it by someone who had
        // saved it (faulthandler.unregister, another tool's restore): it
        // stands for the disposition the program believed in then.
        st.program.get(&current);
    }
    bool has_handler = current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN;
    if (has_handler && !take_over) {
        *error =
            "another SIGPROF handler is already installed (by the program or another "
            "profiler); spprof left it untouched. Remove it, or pass "
            "take_over_sigprof=True to let spprof replace it for the session and "
            "restore it on stop()";
        return false;
    }
    // What the program has stays what it believes it has: foreign SIGPROFs
    // get it while ours is installed (forward_foreign).
    st.program.set(current);
    struct sigaction ours = our_disposition();
    if (sigaction(SIGPROF, &ours, nullptr) != 0) {
        *error = std::string("cannot install the SIGPROF handler: ") + strerror(errno);
        return false;
    }
    g_installed = true;
    return true;
}

bool reclaim_signal_handler(bool believe_default) {
    if (!g_installed) return false;
    HandlerState& st = handler_state();
    struct sigaction ours = our_disposition();
    struct sigaction found;
    // One call swaps: no moment without a disposition we know about.
    if (sigaction(SIGPROF, &ours, &found) != 0) return false;
    if (believe_default) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        st.program.set(dfl);
    } else if (!is_ours(found)) {
        st.program.set(found);
    }
    return true;
}

namespace {
// Our timers are disarmed or deleted. Swapping in SIG_IGN takes whatever is
// installed now in the same step, and discards every pending SIGPROF on
// every thread (POSIX; Linux flushes the shared and all per-thread queues,
// and pending signals would otherwise survive execve), so nothing of ours
// can be delivered after this. A handler already entered on another thread
// is waited for. Then, if ours was still installed, the disposition the
// program believes it has goes back; if someone replaced ours during the
// session (at the C level: sigaction, another profiler, faulthandler),
// theirs stays. Returns whether ours was found.
bool flush_and_hand_back() {
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    struct sigaction installed;
    if (sigaction(SIGPROF, &ignore, &installed) != 0) installed = our_disposition();
    wait_for_handlers_to_finish();
    const bool ours = is_ours(installed);
    struct sigaction back;
    if (ours) {
        handler_state().program.get(&back);
    } else {
        back = installed;
    }
    sigaction(SIGPROF, &back, nullptr);
    g_installed = false;
    return ours;
}
}  // namespace

bool restore_signal_handler() {
    g_restored_program = flush_and_hand_back();
    return g_restored_program;
}

bool suspend_signal_handler_for_exec() {
    if (!g_installed) return false;
    flush_and_hand_back();
    return true;
}

void resume_signal_handler_after_exec() {
    if (g_installed) return;
    HandlerState& st = handler_state();
    struct sigaction ours = our_disposition();
    struct sigaction found;
    if (sigaction(SIGPROF, &ours, &found) != 0) return;
    if (!is_ours(found)) st.program.set(found);
    g_installed = true;
}

void restore_signal_handler_after_fork() {
    // Idempotent: spprof/_signals.py may call it before the session's own
    // after-fork handling does. The child has no timers and no pending
    // signals (fork clears them), so nothing needs flushing.
    if (!g_installed) return;
    HandlerState& st = handler_state();
    struct sigaction installed;
    g_restored_program = sigaction(SIGPROF, nullptr, &installed) == 0 && is_ours(installed);
    if (g_restored_program) {
        struct sigaction back;
        st.program.get(&back);
        sigaction(SIGPROF, &back, nullptr);
    }
    g_installed = false;
}

bool restored_program_disposition() { return g_restored_program; }

const char* sigprof_disposition_name() {
    struct sigaction current;
    if (sigaction(SIGPROF, nullptr, &current) != 0) return "unknown";
    if (is_ours(current)) return "spprof";
    if (current.sa_handler == SIG_DFL) return "default";
    if (current.sa_handler == SIG_IGN) return "ignore";
    return "handler";
}

}  // namespace spprof
