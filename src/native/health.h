// health.h: what the session tells the program about its own health.
//
// Checked on the service thread (GIL held) and at start(): threads that got
// no timer, threads that block SIGPROF (and so contribute no samples), and
// perf_event descriptors the program closed or replaced. Each problem is
// warned about once per session; the counts go into stats().
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include "thread_names.h"
#include "thread_registry.h"

namespace spprof {

using WarnFn = std::function<void(const std::string&)>;

// Why timer_create failed, with what to do about it.
std::string timer_failure_message(int err);

class HealthCheck {
public:
    // Timer failures and SIGPROF-blocking threads (a few threads per call,
    // in rotation).
    void check(ThreadRegistry& registry, int64_t interval_ns, const ThreadNames& names,
               const WarnFn& warn);
    // At most every half second: descriptors of ours the program took are
    // left alone, and their threads get new timers at the next scan.
    void check_descriptors(ThreadRegistry& registry, const WarnFn& warn);

    // Samples resolved per thread (the resolver counts them here): a thread
    // that produces samples does not block SIGPROF.
    std::unordered_map<pid_t, uint64_t>& samples_by_thread() { return samples_by_thread_; }
    uint64_t blocked_threads() const;
    size_t entries() const { return samples_by_thread_.size() + seen_.size() + blocked_.size(); }

private:
    bool warned_timer_failure_ = false;
    bool warned_blocked_ = false;
    bool warned_descriptors_ = false;
    int64_t descriptors_checked_ns_ = 0;
    size_t cursor_ = 0;
    std::unordered_map<pid_t, int> blocked_;  // tid -> consecutive checks seen blocking
    // What the check saw of a thread last time: its CPU time and how many
    // samples it had produced.
    struct Seen {
        int64_t cpu_ns = 0;
        uint64_t samples = 0;
    };
    std::unordered_map<pid_t, Seen> seen_;
    std::unordered_map<pid_t, uint64_t> samples_by_thread_;
};

}  // namespace spprof
