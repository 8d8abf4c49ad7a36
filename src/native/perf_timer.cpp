#include "perf_timer.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <mutex>

#include "sampler.h"

namespace spprof {

namespace {
// The kernel's own floor for a software event's period.
constexpr uint64_t kPerfShortestPeriodNs = 10'000;

// Zero-initialised, so untouched pages cost nothing.
PerfSlot g_slots[kMaxPerfFd];

std::once_flag g_probe_once;
bool g_available = false;
bool g_include_kernel = false;
std::atomic<bool> g_user_only{false};  // perf_events_user_only()
std::string g_why;

int open_event(pid_t tid, int64_t period_ns, bool include_kernel) {
    perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.sample_period = static_cast<uint64_t>(period_ns);
    attr.disabled = 1;
    attr.exclude_kernel = include_kernel ? 0 : 1;
    attr.exclude_hv = 1;
    attr.wakeup_events = 1;
    return static_cast<int>(
        syscall(SYS_perf_event_open, &attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC));
}

void probe() {
    pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
    int fd = open_event(self, 10'000'000, true);
    if (fd >= 0) {
        g_include_kernel = true;
    } else if (errno == EACCES || errno == EPERM) {
        fd = open_event(self, 10'000'000, false);
    }
    if (fd < 0) {
        g_why = std::string("perf_event_open refused: ") + strerror(errno);
        if (errno == EACCES || errno == EPERM) {
            g_why += " (see /proc/sys/kernel/perf_event_paranoid; a container's seccomp policy can refuse it too)";
        }
        return;
    }
    close(fd);
    g_available = true;
}
}  // namespace

PerfSlot* perf_slot(int fd) { return fd >= 0 && fd < kMaxPerfFd ? &g_slots[fd] : nullptr; }

bool perf_events_available(std::string* why) {
    std::call_once(g_probe_once, probe);
    if (!g_available && why != nullptr) *why = g_why;
    return g_available;
}

bool perf_events_include_kernel() { return g_include_kernel && !g_user_only.load(); }

void perf_events_user_only(bool yes) { g_user_only.store(yes); }

int perf_timer_create(pid_t tid, uint32_t session, int64_t interval_ns, int64_t phase_ns,
                      int min_fd, bool from_thread_start, PerfTimer* out) {
    if (!perf_events_available(nullptr)) return ENOTSUP;
    if (phase_ns <= 0 || phase_ns > interval_ns) phase_ns = interval_ns;
    int fd = open_event(tid, phase_ns, perf_events_include_kernel());
    if (fd < 0) return errno;
    if (fd < min_fd) {
        int high = fcntl(fd, F_DUPFD_CLOEXEC, min_fd);
        int saved = errno;
        close(fd);
        if (high < 0) return saved == EINVAL ? EMFILE : saved;
        fd = high;
    }
    PerfSlot* slot = perf_slot(fd);
    struct stat sb;
    f_owner_ex owner{F_OWNER_TID, tid};
    int err = 0;
    if (slot == nullptr) {
        err = EMFILE;  // beyond the handler's table: let the caller use a POSIX timer
    } else if (fstat(fd, &sb) != 0 || fcntl(fd, F_SETSIG, SIGPROF) != 0 ||
               fcntl(fd, F_SETOWN_EX, &owner) != 0 ||
               fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC | O_NONBLOCK) != 0) {
        err = errno;
    }
    if (err != 0) {
        close(fd);
        return err;
    }
    slot->session.store(0, std::memory_order_relaxed);
    slot->tid = tid;
    slot->interval_ns = interval_ns;
    slot->phase_ns = phase_ns;
    slot->delivered = 0;
    slot->period = phase_ns == interval_ns ? PerfPeriod::interval : PerfPeriod::then_interval;
    slot->ever_enabled = false;
    slot->from_thread_start = from_thread_start;
    slot->disabled = false;
    slot->cpu_base_ns.store(0, std::memory_order_relaxed);
    slot->disabled_cpu_ns = 0;
    slot->session.store(session & 0xffffu ? session & 0xffffu : 1, std::memory_order_release);
    out->fd = fd;
    out->tid = tid;
    out->dev = sb.st_dev;
    out->ino = sb.st_ino;
    return 0;
}

int perf_timer_enable(const PerfTimer& t, bool on) {
    if (t.fd < 0) return EINVAL;
    if (!perf_timer_still_ours(t)) return EBADF;
    PerfSlot* slot = perf_slot(t.fd);
    if (on) {
        if (slot != nullptr) {
            const int64_t now = thread_cpu_ns(slot->tid);
            if (!slot->ever_enabled) {
                if (slot->from_thread_start && now > 0) {
                    // The grid starts at CPU 0 and the thread is at `now`.
                    // Before its first point: the first period ends there.
                    // Past it: a first sample right away charges the
                    // points passed (the thread may end before the next
                    // one) and aims at the next.
                    const bool passed = now >= slot->phase_ns;
                    uint64_t first = passed ? kPerfShortestPeriodNs
                                            : static_cast<uint64_t>(slot->phase_ns - now);
                    if (ioctl(t.fd, PERF_EVENT_IOC_PERIOD, &first) == 0) {
                        slot->period = passed ? PerfPeriod::aim_next : PerfPeriod::then_interval;
                        slot->cpu_base_ns.store(0, std::memory_order_release);
                    } else {
                        slot->cpu_base_ns.store(now, std::memory_order_release);
                    }
                } else {
                    slot->cpu_base_ns.store(now < 0 ? 0 : now, std::memory_order_release);
                }
                slot->ever_enabled = true;
            } else if (slot->disabled && slot->disabled_cpu_ns >= 0 && now >= slot->disabled_cpu_ns) {
                slot->cpu_base_ns.fetch_add(now - slot->disabled_cpu_ns, std::memory_order_acq_rel);
            }
            slot->disabled = false;
        }
        return ioctl(t.fd, PERF_EVENT_IOC_ENABLE, 0) == 0 ? 0 : errno;
    }
    if (ioctl(t.fd, PERF_EVENT_IOC_DISABLE, 0) != 0) return errno;
    if (slot != nullptr && slot->ever_enabled && !slot->disabled) {
        slot->disabled_cpu_ns = thread_cpu_ns(slot->tid);
        slot->disabled = true;
    }
    return 0;
}

bool perf_timer_still_ours(const PerfTimer& t) {
    if (t.fd < 0) return false;
    // Every anonymous-inode file (perf events, eventfds, epoll, ...) shares
    // one inode, so the inode alone does not prove it; a program's file
    // that is also set to signal SIGPROF to this very thread does not exist.
    struct stat sb;
    if (fstat(t.fd, &sb) != 0 || sb.st_dev != t.dev || sb.st_ino != t.ino) return false;
    if (fcntl(t.fd, F_GETSIG) != SIGPROF) return false;
    // The owner reads as 0 once the thread has exited (its timer is then
    // deleted by the registry).
    f_owner_ex owner{};
    return fcntl(t.fd, F_GETOWN_EX, &owner) == 0 && owner.type == F_OWNER_TID &&
           (owner.pid == t.tid || owner.pid == 0);
}

void perf_timer_forget(PerfTimer* t) {
    if (PerfSlot* slot = perf_slot(t->fd)) slot->session.store(0, std::memory_order_release);
    t->fd = -1;
}

namespace {
bool still_ours(const PerfTimer& t) { return perf_timer_still_ours(t); }
}  // namespace

void perf_timer_close(PerfTimer* t) {
    if (t->fd < 0) return;
    if (still_ours(*t)) {
        // Disable first so no new signal is raised; one already queued is
        // recognised as stale by the session check in the handler.
        ioctl(t->fd, PERF_EVENT_IOC_DISABLE, 0);
        if (PerfSlot* slot = perf_slot(t->fd)) slot->session.store(0, std::memory_order_release);
        close(t->fd);
    } else if (PerfSlot* slot = perf_slot(t->fd)) {
        slot->session.store(0, std::memory_order_release);  // the number is the program's now
    }
    t->fd = -1;
}

void perf_timer_close_in_child(PerfTimer* t) {
    if (t->fd >= 0 && still_ours(*t)) close(t->fd);
    t->fd = -1;
}

}  // namespace spprof
