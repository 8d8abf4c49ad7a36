#include "sampler.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

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
    timer_t id{};
    if (timer_create(thread_cpu_clock(tid), &sev, &id) != 0) return errno;
    out->id = id;
    out->valid = true;
    return 0;
}

int arm_thread_timer(const ThreadTimer& t, int64_t interval_ns, int64_t first_ns) {
    if (t.is_perf()) return perf_timer_enable(t.perf, interval_ns > 0);
    if (!t.valid) return EINVAL;
    struct itimerspec spec;
    memset(&spec, 0, sizeof spec);
    spec.it_interval.tv_sec = interval_ns / 1000000000;
    spec.it_interval.tv_nsec = interval_ns % 1000000000;
    if (interval_ns > 0 && first_ns > 0 && first_ns <= interval_ns) {
        spec.it_value.tv_sec = first_ns / 1000000000;
        spec.it_value.tv_nsec = first_ns % 1000000000;
    } else {
        spec.it_value = spec.it_interval;
    }
    return timer_settime(t.id, 0, &spec, nullptr) == 0 ? 0 : errno;
}

int delete_thread_timer(ThreadTimer* t) {
    if (t->is_perf()) {
        perf_timer_close(&t->perf);
        return 0;
    }
    if (!t->valid) return 0;
    int overrun = timer_getoverrun(t->id);
    timer_delete(t->id);
    t->valid = false;
    t->id = timer_t{};
    return overrun > 0 ? overrun : 0;
}

}  // namespace spprof
