#include "health.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "sampler.h"
#include "os_clock.h"
#include "signal_handler.h"

namespace spprof {

namespace {
// How often the service thread checks that its descriptors are still its own.
constexpr int64_t kDescriptorCheckNs = 500'000'000;
}  // namespace

std::string timer_failure_message(int err) {
    std::string message = std::string("timer_create failed: ") + strerror(err);
    if (err == EAGAIN) {
        rlimit lim{};
        getrlimit(RLIMIT_SIGPENDING, &lim);
        std::string cur = lim.rlim_cur == RLIM_INFINITY ? "unlimited" : std::to_string(lim.rlim_cur);
        message +=
            ". Each sampled thread needs one POSIX timer, and the number of timers is capped "
            "by the limit on queued signals, RLIMIT_SIGPENDING (currently " +
            cur +
            "). Raise it before starting Python with `ulimit -i <larger number>` (or "
            "resource.setrlimit(resource.RLIMIT_SIGPENDING, ...) up to the hard limit)";
    } else if (err == EPERM) {
        message += ". The system (seccomp or a security policy) refuses POSIX CPU timers here";
    }
    return message;
}

namespace {
// Whether thread `tid` currently blocks SIGPROF (its SigBlk mask in
// /proc/self/task/<tid>/status). -1 when the thread is gone.
int thread_blocks_sigprof(pid_t tid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", static_cast<int>(tid));
    FILE* f = fopen(path, "re");
    if (f == nullptr) return -1;
    char line[256];
    int result = 0;
    while (fgets(line, sizeof line, f) != nullptr) {
        unsigned long long mask = 0;
        if (sscanf(line, "SigBlk: %llx", &mask) == 1) {
            result = (mask >> (SIGPROF - 1)) & 1u ? 1 : 0;
            break;
        }
    }
    fclose(f);
    return result;
}
}  // namespace

uint64_t HealthCheck::blocked_threads() const {
    return static_cast<uint64_t>(
        std::count_if(blocked_.begin(), blocked_.end(), [](const auto& kv) { return kv.second >= 2; }));
}

void HealthCheck::check_descriptors(ThreadRegistry& registry, const WarnFn& warn) {
    int64_t now_ns = monotonic_now_ns();
    if (now_ns - descriptors_checked_ns_ <= kDescriptorCheckNs) return;
    descriptors_checked_ns_ = now_ns;
    if (registry.drop_lost_perf_timers() > 0 && !warned_descriptors_) {
        warned_descriptors_ = true;
        warn("spprof: the program closed or replaced descriptors of spprof's sampling "
             "timers (perf_event); spprof left them alone and gave the threads new timers.");
    }
}

void HealthCheck::check(ThreadRegistry& registry, int64_t interval_ns, const ThreadNames& names,
                        const WarnFn& warn) {
    RegistryCounters c = registry.counters();
    if (c.create_failures > 0 && !warned_timer_failure_) {
        warned_timer_failure_ = true;
        warn("spprof: could not create a sampling timer for " + std::to_string(c.create_failures) +
             " thread(s), which will not be sampled (the others still are). " +
             timer_failure_message(c.last_create_errno) + ".");
    }
    // A thread that blocks SIGPROF never runs our handler: its signal stays
    // pending and later expirations become overruns of it. Nothing hangs,
    // but its CPU time is missing from the profile, so say so. Checking
    // every thread every tick would cost too much with thousands of
    // threads: look at a few per tick, in rotation. Reading a thread's
    // /proc status is the expensive part (tens of microseconds), so only
    // a thread that burnt CPU worth two intervals since the last look and
    // produced no sample meanwhile is read; an idle thread loses nothing,
    // and a sampled one does not block the signal.
    if (handler_state().paused.load()) return;
    std::vector<pid_t> tids = registry.thread_ids();
    if (tids.empty()) return;
    std::sort(tids.begin(), tids.end());
    if (seen_.size() > 2 * tids.size() + 64 || samples_by_thread_.size() > 2 * tids.size() + 64) {
        // Forget threads that are gone (tids are reused, so they must not
        // inherit anything).
        auto gone = [&](const auto& kv) { return !std::binary_search(tids.begin(), tids.end(), kv.first); };
        std::erase_if(seen_, gone);
        std::erase_if(samples_by_thread_, gone);
        std::erase_if(blocked_, gone);
    }
    constexpr size_t kPerTick = 8;
    for (size_t n = 0; n < std::min(kPerTick, tids.size()); ++n) {
        pid_t tid = tids[(cursor_ + n) % tids.size()];
        timespec ts;
        if (clock_gettime(thread_cpu_clock(tid), &ts) != 0) continue;  // gone
        int64_t cpu = int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
        uint64_t samples = samples_by_thread_[tid];
        auto [seen, first] = seen_.try_emplace(tid, Seen{cpu, samples});
        bool busy = !first && cpu - seen->second.cpu_ns >= 2 * interval_ns;
        bool sampled = samples != seen->second.samples;
        seen->second = Seen{cpu, samples};
        if (sampled) blocked_.erase(tid);
        if (!busy || sampled) continue;
        int blocked = thread_blocks_sigprof(tid);
        if (blocked == 1) {
            // Libraries block every signal for a moment (around fork, in
            // posix_spawn): only a block seen on two checks in a row counts.
            if (++blocked_[tid] >= 2 && !warned_blocked_) {
                warned_blocked_ = true;
                auto name = names.names().find(tid);
                warn("spprof: thread " + (name != names.names().end() ? "'" + name->second + "' " : std::string()) +
                     "(tid " + std::to_string(tid) +
                     ") blocks SIGPROF, so it contributes no samples while it does. "
                     "Unblock SIGPROF in that thread to profile it.");
            }
        } else {
            blocked_.erase(tid);
        }
    }
    cursor_ = (cursor_ + kPerTick) % tids.size();
}

}  // namespace spprof
