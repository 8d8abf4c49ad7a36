#include "sampler.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "signal_handler.h"

namespace spprof {

// linux/posix-timers.h: MAKE_THREAD_CPUCLOCK with CPUCLOCK_SCHED and the
// per-thread bit.
clockid_t thread_cpu_clock(pid_t tid) {
    return static_cast<clockid_t>((~static_cast<unsigned>(tid) << 3) | 6u);
}

int64_t thread_cpu_ns(pid_t tid) {
    timespec ts;
    if (clock_gettime(thread_cpu_clock(tid), &ts) != 0) return -1;
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

namespace {
// In .bss, like perf_timer.cpp's table: untouched pages cost nothing.
PerfSlot g_grids[kMaxTimerGrids];
uint32_t g_free[kMaxTimerGrids];  // references not in use, a stack
uint32_t g_free_count = 0;
uint32_t g_never_used = 1;  // references from here up were never handed out

uint32_t take_grid() {
    if (g_free_count > 0) return g_free[--g_free_count];
    return g_never_used <= kMaxTimerGrids ? g_never_used++ : 0;
}

void give_back_grid(uint32_t ref) {
    PerfSlot* grid = timer_grid(ref);
    if (grid == nullptr) return;
    grid->session.store(0, std::memory_order_release);
    g_free[g_free_count++] = ref;
}
}  // namespace

PerfSlot* timer_grid(uint32_t ref) {
    return ref >= 1 && ref <= kMaxTimerGrids ? &g_grids[ref - 1] : nullptr;
}

void timer_grids_after_fork() {
    for (uint32_t ref = 1; ref < g_never_used; ++ref) g_grids[ref - 1].session.store(0);
    g_free_count = 0;
    g_never_used = 1;
}

int create_thread_timer(pid_t tid, uint32_t session, bool from_thread_start, ThreadTimer* out) {
    const uint32_t ref = take_grid();
    if (PerfSlot* grid = timer_grid(ref)) {
        grid->session.store(0, std::memory_order_relaxed);
        grid->tid = tid;
        grid->interval_ns = 0;  // not armed
        grid->phase_ns = 0;
        grid->delivered = 0;
        grid->from_thread_start = from_thread_start;
        grid->ever_enabled = false;
        grid->cpu_base_ns.store(0, std::memory_order_relaxed);
        grid->session.store(session & 0xffffu ? session & 0xffffu : 1, std::memory_order_release);
    }
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGPROF;
    sev._sigev_un._tid = tid;
    sev.sigev_value.sival_ptr = encode_timer_value(session, ref);
    timer_t id{};
    if (timer_create(thread_cpu_clock(tid), &sev, &id) != 0) {
        const int err = errno;
        give_back_grid(ref);
        return err;
    }
    out->id = id;
    out->valid = true;
    out->grid = ref;
    return 0;
}

int arm_thread_timer(const ThreadTimer& t, int64_t interval_ns, int64_t first_ns) {
    if (t.is_perf()) return perf_timer_enable(t.perf, interval_ns > 0);
    if (!t.valid) return EINVAL;
    if (interval_ns > 0 && (first_ns <= 0 || first_ns > interval_ns)) first_ns = interval_ns;
    if (PerfSlot* grid = timer_grid(t.grid); grid != nullptr && interval_ns > 0) {
        // Laid before the timer runs: no signal of its is handled meanwhile.
        // Points at base + first + k * interval; the kernel reads the clock
        // a little later than `now`, so each expiration comes at or after
        // its point. A grid from the thread's start keeps the points of
        // its CPU time 0 and charges those passed with the first signal.
        const int64_t now = thread_cpu_ns(grid->tid);
        if (grid->from_thread_start && !grid->ever_enabled && now > 0) {
            grid->cpu_base_ns.store(0, std::memory_order_relaxed);
            grid->phase_ns = first_ns;
        } else {
            grid->cpu_base_ns.store(now < 0 ? 0 : now, std::memory_order_relaxed);
            grid->phase_ns = first_ns;
        }
        grid->interval_ns = interval_ns;
        grid->delivered = 0;
        grid->ever_enabled = true;
        std::atomic_thread_fence(std::memory_order_release);
    }
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

uint64_t thread_timer_points_owed(const ThreadTimer& t) {
    const PerfSlot* grid = nullptr;
    if (t.is_perf()) {
        if (perf_timer_still_ours(t.perf)) grid = perf_slot(t.perf.fd);
    } else if (t.valid) {
        grid = timer_grid(t.grid);
    }
    if (grid == nullptr || grid->session.load(std::memory_order_acquire) == 0 ||
        grid->interval_ns <= 0 || !grid->ever_enabled) {
        return 0;
    }
    int64_t cpu = grid->disabled ? grid->disabled_cpu_ns : thread_cpu_ns(grid->tid);
    if (cpu < 0) return 0;
    cpu -= grid->cpu_base_ns.load(std::memory_order_acquire);
    const uint64_t due = grid_points_due(grid, cpu);
    return due > grid->delivered ? due - grid->delivered : 0;
}

int delete_thread_timer(ThreadTimer* t) {
    if (t->is_perf()) {
        perf_timer_close(&t->perf);
        return 0;
    }
    if (!t->valid) return 0;
    int overrun = timer_getoverrun(t->id);
    timer_delete(t->id);
    give_back_grid(t->grid);
    t->grid = 0;
    t->valid = false;
    t->id = timer_t{};
    return overrun > 0 ? overrun : 0;
}

}  // namespace spprof
