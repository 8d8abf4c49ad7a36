#include "thread_registry.h"

#include <errno.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <new>

#include "compat.h"
#include "os_clock.h"
#include "perf_timer.h"
#include "proc_tasks.h"
#include "signal_handler.h"

namespace spprof {

void ThreadRegistry::begin(uint32_t session, int64_t interval_ns, pid_t ignored_tid,
                           Backend backend, bool user_only) {
    std::lock_guard<std::mutex> lock(mu_);
    perf_events_user_only(user_only);
    session_ = session;
    backend_ = backend;
    perf_open_ = 0;
    perf_budget_ = 0;
    interval_ns_ = interval_ns;
    session_interval_ns_ = interval_ns;
    // ignored_ is kept: a thread of spprof's from the last session may
    // still be listed for a moment after it was joined. Room for spprof's
    // threads to add themselves as they start (ignore_thread), where an
    // allocation could fail with nothing to catch it.
    ignored_.reserve(ignored_.size() + 8);
    if (ignored_tid != 0 && std::find(ignored_.begin(), ignored_.end(), ignored_tid) == ignored_.end()) {
        ignored_.push_back(ignored_tid);
    }
    native_tids_.clear();
    exiting_.clear();
    counters_ = RegistryCounters{};
    opted_out_.clear();
    failed_.clear();
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    rng_ ^= (uint64_t(ts.tv_sec) << 32) ^ uint64_t(ts.tv_nsec) ^ (uint64_t(getpid()) << 16);
    new_arming_locked();
}

void ThreadRegistry::new_arming_locked() {
    static std::atomic<uint64_t> armings{0};  // never reused in the process
    arming_.store(interval_ns_ > 0 ? armings.fetch_add(1) + 1 : 0, std::memory_order_release);
}

void ThreadRegistry::refresh_perf_budget_locked(int* min_fd) {
    // From the current RLIMIT_NOFILE (the program may lower it at any
    // time): a quarter of it for our descriptors, placed from half of it
    // (at most from 1024) upwards, so the low numbers stay the program's and
    // select(), which takes descriptors below 1024 only, keeps working.
    rlimit nofile{};
    perf_budget_ = 0;
    *min_fd = 0;
    if (getrlimit(RLIMIT_NOFILE, &nofile) != 0) return;
    rlim_t soft = nofile.rlim_cur == RLIM_INFINITY ? rlim_t{1} << 20 : nofile.rlim_cur;
    perf_budget_ = std::min<size_t>(static_cast<size_t>(soft / 4), kMaxPerfFd / 2);
    *min_fd = static_cast<int>(std::min<rlim_t>(soft / 2, 1024));
}

size_t ThreadRegistry::drop_lost_perf_timers() {
    std::lock_guard<std::mutex> lock(mu_);
    size_t lost = 0;
    for (auto it = threads_.begin(); it != threads_.end();) {
        auto next = std::next(it);
        if (it->second.timer.is_perf() && !perf_timer_still_ours(it->second.timer.perf)) {
            // Closed or replaced by the program: the number is not ours to
            // touch. The thread gets a new timer at the next scan.
            perf_timer_forget(&it->second.timer.perf);
            if (perf_open_ > 0) --perf_open_;
            threads_.erase(it);
            ++lost;
        }
        it = next;
    }
    counters_.perf_descriptors_lost += lost;
    return lost;
}

void ThreadRegistry::ignore_thread(pid_t tid) {
    std::lock_guard<std::mutex> lock(mu_);
    if (own_threads_starting_ > 0) --own_threads_starting_;
    if (std::find(ignored_.begin(), ignored_.end(), tid) == ignored_.end()) {
        try {
            ignored_.push_back(tid);  // within the room begin() reserved, normally
        } catch (const std::bad_alloc&) {
            // Out of memory: the thread may be sampled as a native one.
        }
    }
    native_tids_.erase(tid);
    auto it = threads_.find(tid);
    if (it != threads_.end()) remove_locked(it);
}

void ThreadRegistry::expect_own_thread() {
    std::lock_guard<std::mutex> lock(mu_);
    ++own_threads_starting_;
}

void ThreadRegistry::own_thread_failed() {
    std::lock_guard<std::mutex> lock(mu_);
    if (own_threads_starting_ > 0) --own_threads_starting_;
}

int64_t ThreadRegistry::random_phase_locked() {
    if (interval_ns_ <= 0) return 0;
    // splitmix64: cheap, and good enough to spread phases uniformly.
    uint64_t z = (rng_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return 1 + static_cast<int64_t>(z % static_cast<uint64_t>(interval_ns_));  // (0, interval]
}

bool ThreadRegistry::add_locked(pid_t tid, uint64_t uid, PyThreadState* tstate,
                                bool from_thread_start) {
    Entry entry;
    entry.tstate_uid = uid;
    entry.tstate = tstate;
    int64_t phase = random_phase_locked();
    int err = -1;
    int min_fd = 0;
    if (backend_ == Backend::perf_event) refresh_perf_budget_locked(&min_fd);
    if (backend_ == Backend::perf_event && perf_open_ < perf_budget_) {
        // The session's interval even while paused (interval_ns_ is 0 then):
        // the event's period is fixed at creation, and resume only enables it.
        err = perf_timer_create(tid, session_, session_interval_ns_, phase, min_fd, from_thread_start,
                                &entry.timer.perf);
        if (err == 0) {
            err = interval_ns_ > 0 ? perf_timer_enable(entry.timer.perf, true) : 0;
            if (err != 0) perf_timer_close(&entry.timer.perf);
        }
        if (err == ESRCH) return false;  // the thread is gone
        if (err != 0) ++counters_.perf_fallbacks;
    }
    if (err != 0) {
        err = create_thread_timer(tid, session_, from_thread_start, &entry.timer);
        if (err == 0) err = arm_thread_timer(entry.timer, interval_ns_, phase);
    }
    if (err != 0) {
        if (entry.timer.valid) delete_thread_timer(&entry.timer);
        // EINVAL/ESRCH: the thread exited between discovery and now.
        if (err != EINVAL && err != ESRCH) {
            ++counters_.create_failures;
            counters_.last_create_errno = err;
            counters_.last_failed_tid = tid;
            if (failed_.empty()) {
                timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                failed_since_ns_ = int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
                failed_deleted_mark_ = counters_.timers_deleted;
            }
            failed_[tid] = uid;
        }
        return false;
    }
    ++counters_.timers_created;
    if (entry.timer.is_perf()) {
        ++counters_.perf_timers_created;
        ++perf_open_;
    }
    entry.seen = scan_generation_;
    threads_[tid] = entry;
    return true;
}

void ThreadRegistry::remove_locked(std::unordered_map<pid_t, Entry>::iterator it) {
    if (it->second.timer.is_perf() && perf_open_ > 0) --perf_open_;
    counters_.undelivered_weight += thread_timer_points_owed(it->second.timer);
    counters_.overruns_at_delete += static_cast<uint64_t>(delete_thread_timer(&it->second.timer));
    ++counters_.timers_deleted;
    threads_.erase(it);
}

void ThreadRegistry::sync_with_interpreter(PyInterpreterState* interp) {
    // Every thread state's kernel tid. Several thread states can claim one
    // tid for a moment (3.11 fills a new thread's state with its creator's
    // tid until the new thread starts); the oldest (smallest unique id) is
    // the one running there.
    std::unordered_map<pid_t, std::pair<uint64_t, PyThreadState*>> present;
    for (PyThreadState* ts = PyInterpreterState_ThreadHead(interp); ts != nullptr;
         ts = PyThreadState_Next(ts)) {
        auto tid = static_cast<pid_t>(compat::thread_state_native_id(ts));
        if (tid <= 0) continue;  // not bound to a thread yet
        uint64_t uid = compat::thread_state_unique_id(ts);
        auto [it, inserted] = present.emplace(tid, std::make_pair(uid, ts));
        if (!inserted && uid < it->second.first) it->second = {uid, ts};
    }
    // Every thread of the process (read before taking the lock: it is I/O).
    const bool listed = list_process_threads(&tasks_);
    std::lock_guard<std::mutex> lock(mu_);
    auto ignored = [this](pid_t tid) {
        return std::find(ignored_.begin(), ignored_.end(), tid) != ignored_.end();
    };
    ++scan_generation_;
    if (!failed_.empty()) {
        timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t now = int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
        if (counters_.timers_deleted != failed_deleted_mark_ || now - failed_since_ns_ > 1'000'000'000) {
            failed_.clear();  // a timer was freed, or time passed: try those threads again
        }
    }
    for (const auto& [tid, seen] : present) {
        const uint64_t uid = seen.first;
        PyThreadState* const tstate = seen.second;
        if (ignored(tid)) continue;
        auto failed = failed_.find(tid);
        if (failed != failed_.end()) {
            if (failed->second == uid) continue;
            failed_.erase(failed);
        }
        auto opted = opted_out_.find(tid);
        if (opted != opted_out_.end()) {
            if (opted->second == uid) continue;
            opted_out_.erase(opted);  // a new thread reuses the tid
        }
        auto it = threads_.find(tid);
        if (it != threads_.end()) {
            if (it->second.native) {
                // A native thread that now has a thread state (a C thread
                // calling into Python, or a Python thread seen before its
                // state was bound): the same thread, the same timer.
                it->second.native = false;
                it->second.tstate_uid = uid;
                native_tids_.erase(tid);
            }
            if (it->second.tstate_uid == uid) {
                it->second.seen = scan_generation_;
                it->second.tstate = tstate;
                continue;
            }
            // Same tid, different thread state: the old thread exited and the
            // kernel reused its tid. Its timer is bound to the dead thread.
            remove_locked(it);
        }
        add_locked(tid, uid, tstate);
    }
    // Native threads: the process's other threads, sampled on their own CPU
    // clocks as Python threads are (their samples name the thread).
    std::unordered_set<pid_t> alive;
    // While a thread of spprof's is starting, it is not told from the
    // program's yet: the new native threads wait for the next scan.
    const bool discover = listed && own_threads_starting_ == 0;
    if (listed) {
        for (pid_t tid : tasks_) {
            alive.insert(tid);
            if (present.count(tid) != 0 || ignored(tid) || exiting_.count(tid) != 0) continue;
            auto failed = failed_.find(tid);
            if (failed != failed_.end() && failed->second == 0) continue;
            auto it = threads_.find(tid);
            if (it != threads_.end()) {
                if (!it->second.native) {
                    // Its thread state is gone but the thread runs on (a C
                    // thread back from Python): it keeps its timer.
                    it->second.native = true;
                    it->second.tstate_uid = 0;
                    it->second.tstate = nullptr;
                }
                it->second.seen = scan_generation_;
                native_tids_.insert(tid);
                continue;
            }
            if (discover && add_locked(tid, 0, nullptr)) {
                Entry& entry = threads_[tid];
                entry.native = true;
                entry.seen = scan_generation_;
                native_tids_.insert(tid);
                ++counters_.native_threads;
            }
        }
    }
    for (auto it = threads_.begin(); it != threads_.end();) {
        auto next = std::next(it);
        // A native thread stays while the list could not be read.
        const bool kept = it->second.native && !listed;
        if (it->second.seen != scan_generation_ && !kept) remove_locked(it);
        it = next;
    }
    for (auto it = opted_out_.begin(); it != opted_out_.end();) {
        it = present.count(it->first) ? std::next(it) : opted_out_.erase(it);
    }
    for (auto it = failed_.begin(); it != failed_.end();) {
        const bool gone = present.count(it->first) == 0 && (!listed || alive.count(it->first) == 0);
        it = gone ? failed_.erase(it) : std::next(it);
    }
    if (listed) {
        for (auto it = exiting_.begin(); it != exiting_.end();) {
            it = alive.count(*it) != 0 ? std::next(it) : exiting_.erase(it);
        }
        ignored_.erase(std::remove_if(ignored_.begin(), ignored_.end(),
                                      [&](pid_t tid) { return alive.count(tid) == 0; }),
                       ignored_.end());
    }
}

bool ThreadRegistry::register_thread(pid_t tid, uint64_t tstate_uid, PyThreadState* tstate,
                                     uint64_t birth_mark) {
    std::lock_guard<std::mutex> lock(mu_);
    const bool born_under_these_timers =
        birth_mark != 0 && birth_mark == arming_.load(std::memory_order_relaxed);
    opted_out_.erase(tid);
    exiting_.erase(tid);
    auto it = threads_.find(tid);
    if (it != threads_.end()) {
        if (it->second.native) {
            // Seen as a native thread before its thread state existed.
            it->second.native = false;
            it->second.tstate_uid = tstate_uid;
            native_tids_.erase(tid);
        }
        if (it->second.tstate_uid == tstate_uid) {
            it->second.tstate = tstate;
            note_registration_locked(it->second, tid);
            return true;
        }
        remove_locked(it);
    }
    if (!add_locked(tid, tstate_uid, tstate, born_under_these_timers)) return false;
    note_registration_locked(threads_[tid], tid);
    return true;
}

void ThreadRegistry::note_registration_locked(Entry& entry, pid_t tid) {
    if (entry.registered_mono_ns != 0 || tid != current_tid()) return;
    entry.registered_mono_ns = monotonic_now_ns();
    entry.registered_cpu_ns = thread_cpu_now_ns();
}

bool ThreadRegistry::unregister_thread(pid_t tid) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = threads_.find(tid);
    if (it == threads_.end()) return false;
    opted_out_[tid] = it->second.tstate_uid;
    remove_locked(it);
    return true;
}

void ThreadRegistry::thread_exiting(pid_t tid, uint64_t tstate_uid) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = threads_.find(tid);
    if (it == threads_.end() || it->second.tstate_uid != tstate_uid) return;
    try {
        exiting_.insert(tid);
    } catch (const std::bad_alloc&) {
        // then a poll may time its last microseconds as a native thread's
    }
    const ThreadTimer& timer = it->second.timer;
    if (timer.is_perf() && tid == current_tid() && perf_timer_still_ours(timer.perf)) {
        charge_perf_points_at_exit(timer.perf.fd);
    }
    // A POSIX timer's signal comes on a tick, often milliseconds after its
    // point: the stack now is not where that CPU went. Its points passed
    // are counted as undelivered (remove_locked), not charged here.
    remove_locked(it);
}

bool ThreadRegistry::is_native(pid_t tid) {
    std::lock_guard<std::mutex> lock(mu_);
    return native_tids_.count(tid) != 0;
}

bool ThreadRegistry::is_registered(pid_t tid) {
    std::lock_guard<std::mutex> lock(mu_);
    return threads_.count(tid) != 0;
}

void ThreadRegistry::set_interval(int64_t interval_ns) {
    std::lock_guard<std::mutex> lock(mu_);
    interval_ns_ = interval_ns;  // threads registered from now on start so too
    new_arming_locked();
    for (auto& [tid, entry] : threads_) {
        // A POSIX timer's grid is laid anew when it is armed again: what its
        // thread used since its last signal is not charged (called with no
        // handler running: the session is paused, or its timers about to be
        // disarmed for an exec). A perf_event grid is kept across a pause.
        if (interval_ns == 0 && !entry.timer.is_perf()) {
            counters_.undelivered_weight += thread_timer_points_owed(entry.timer);
        }
        arm_thread_timer(entry.timer, interval_ns, random_phase_locked());
    }
}

void ThreadRegistry::end() {
    std::lock_guard<std::mutex> lock(mu_);
    while (!threads_.empty()) remove_locked(threads_.begin());
    opted_out_.clear();
    failed_.clear();
    arming_.store(0, std::memory_order_release);
}

void ThreadRegistry::forget_after_fork() {
    // The child must not lock mu_ (its owner may not exist here) nor delete
    // timers that belong to the parent's threads.
    new (&mu_) std::mutex();
    // Descriptors of the parent's perf events were inherited: close them
    // (POSIX timers were not inherited, there is nothing to delete).
    for (auto& [tid, entry] : threads_) perf_timer_close_in_child(&entry.timer.perf);
    perf_open_ = 0;
    timer_grids_after_fork();
    arming_.store(0, std::memory_order_release);
    threads_.clear();
    opted_out_.clear();
    failed_.clear();
    native_tids_.clear();
    ignored_.clear();
    own_threads_starting_ = 0;
    exiting_.clear();
}

void ThreadRegistry::sampled_threads(std::vector<Sampled>* out) {
    out->clear();
    std::lock_guard<std::mutex> lock(mu_);
    out->reserve(threads_.size());
    for (const auto& [tid, entry] : threads_) {
        if (entry.tstate != nullptr) {
            out->push_back({tid, entry.tstate, entry.tstate_uid, entry.registered_mono_ns,
                            entry.registered_cpu_ns});
        }
    }
}

size_t ThreadRegistry::size() {
    std::lock_guard<std::mutex> lock(mu_);
    return threads_.size();
}

RegistryCounters ThreadRegistry::counters() {
    std::lock_guard<std::mutex> lock(mu_);
    return counters_;
}

std::vector<pid_t> ThreadRegistry::thread_ids() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<pid_t> out;
    out.reserve(threads_.size());
    for (const auto& [tid, entry] : threads_) out.push_back(tid);
    return out;
}

}  // namespace spprof
