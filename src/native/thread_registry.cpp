#include "thread_registry.h"

#include <errno.h>

#include <new>

#include "compat.h"

namespace spprof {

void ThreadRegistry::begin(uint32_t session, int64_t interval_ns, pid_t ignored_tid) {
    std::lock_guard<std::mutex> lock(mu_);
    session_ = session;
    interval_ns_ = interval_ns;
    ignored_tid_ = ignored_tid;
    counters_ = RegistryCounters{};
    opted_out_.clear();
}

bool ThreadRegistry::add_locked(pid_t tid, uint64_t uid) {
    Entry entry;
    entry.tstate_uid = uid;
    int err = create_thread_timer(tid, session_, &entry.timer);
    if (err == 0) err = arm_thread_timer(entry.timer, interval_ns_);
    if (err != 0) {
        if (entry.timer.valid) delete_thread_timer(&entry.timer);
        // EINVAL/ESRCH: the thread exited between discovery and now.
        if (err != EINVAL && err != ESRCH) {
            ++counters_.create_failures;
            counters_.last_create_errno = err;
            counters_.last_failed_tid = tid;
        }
        return false;
    }
    ++counters_.timers_created;
    entry.seen = scan_generation_;
    threads_[tid] = entry;
    return true;
}

void ThreadRegistry::remove_locked(std::unordered_map<pid_t, Entry>::iterator it) {
    counters_.overruns_at_delete += static_cast<uint64_t>(delete_thread_timer(&it->second.timer));
    ++counters_.timers_deleted;
    threads_.erase(it);
}

void ThreadRegistry::sync_with_interpreter(PyInterpreterState* interp) {
    // Every thread state's kernel tid. Several thread states can claim one
    // tid for a moment (3.11 fills a new thread's state with its creator's
    // tid until the new thread starts); the oldest (smallest unique id) is
    // the one running there.
    std::unordered_map<pid_t, uint64_t> present;
    for (PyThreadState* ts = PyInterpreterState_ThreadHead(interp); ts != nullptr;
         ts = PyThreadState_Next(ts)) {
        auto tid = static_cast<pid_t>(compat::thread_state_native_id(ts));
        if (tid <= 0) continue;  // not bound to a thread yet
        uint64_t uid = compat::thread_state_unique_id(ts);
        auto [it, inserted] = present.emplace(tid, uid);
        if (!inserted && uid < it->second) it->second = uid;
    }
    std::lock_guard<std::mutex> lock(mu_);
    ++scan_generation_;
    for (const auto& [tid, uid] : present) {
        if (tid == ignored_tid_) continue;
        auto opted = opted_out_.find(tid);
        if (opted != opted_out_.end()) {
            if (opted->second == uid) continue;
            opted_out_.erase(opted);  // a new thread reuses the tid
        }
        auto it = threads_.find(tid);
        if (it != threads_.end()) {
            if (it->second.tstate_uid == uid) {
                it->second.seen = scan_generation_;
                continue;
            }
            // Same tid, different thread state: the old thread exited and the
            // kernel reused its tid. Its timer is bound to the dead thread.
            remove_locked(it);
        }
        add_locked(tid, uid);
    }
    for (auto it = threads_.begin(); it != threads_.end();) {
        auto next = std::next(it);
        if (it->second.seen != scan_generation_) remove_locked(it);
        it = next;
    }
    for (auto it = opted_out_.begin(); it != opted_out_.end();) {
        it = present.count(it->first) ? std::next(it) : opted_out_.erase(it);
    }
}

bool ThreadRegistry::register_thread(pid_t tid, uint64_t tstate_uid) {
    std::lock_guard<std::mutex> lock(mu_);
    opted_out_.erase(tid);
    auto it = threads_.find(tid);
    if (it != threads_.end()) {
        if (it->second.tstate_uid == tstate_uid) return true;
        remove_locked(it);
    }
    return add_locked(tid, tstate_uid);
}

bool ThreadRegistry::unregister_thread(pid_t tid) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = threads_.find(tid);
    if (it == threads_.end()) return false;
    opted_out_[tid] = it->second.tstate_uid;
    remove_locked(it);
    return true;
}

bool ThreadRegistry::is_registered(pid_t tid) {
    std::lock_guard<std::mutex> lock(mu_);
    return threads_.count(tid) != 0;
}

void ThreadRegistry::set_interval(int64_t interval_ns) {
    std::lock_guard<std::mutex> lock(mu_);
    interval_ns_ = interval_ns;  // threads registered from now on start so too
    for (auto& [tid, entry] : threads_) arm_thread_timer(entry.timer, interval_ns);
}

void ThreadRegistry::end() {
    std::lock_guard<std::mutex> lock(mu_);
    while (!threads_.empty()) remove_locked(threads_.begin());
    opted_out_.clear();
}

void ThreadRegistry::forget_after_fork() {
    // The child must not lock mu_ (its owner may not exist here) nor delete
    // timers that belong to the parent's threads.
    new (&mu_) std::mutex();
    threads_.clear();
    opted_out_.clear();
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
