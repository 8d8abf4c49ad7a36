#include "os_clock.h"

#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <exception>

namespace spprof {

namespace {
int64_t clock_ns(clockid_t clock) {
    timespec ts;
    clock_gettime(clock, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

int64_t monotonic_now_ns() { return clock_ns(CLOCK_MONOTONIC); }
int64_t process_cpu_now_ns() { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }
int64_t thread_cpu_now_ns() { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }
pid_t current_tid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

void prepare_thread_for_exceptions() {
    // Reads the runtime's per-thread exception globals (allocating them).
    volatile int n = std::uncaught_exceptions();
    (void)n;
}

}  // namespace spprof
