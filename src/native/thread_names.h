// thread_names.h: the names of the program's threads, for the profile.
//
// Read from threading's table of running threads (threading._active) with
// plain dict and attribute reads only: this runs on the service thread too,
// where no Python code may run and no container may be created (either
// could start a garbage collection there). GIL held for every call.
#pragma once

#include <Python.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "thread_registry.h"

namespace spprof {

class ThreadNames {
public:
    // Intern the attribute names (once per process, on a program thread).
    // False with an exception set.
    bool intern();
    // Forget the previous session's names.
    void clear();
    // Read the names now.
    void update();
    // Read them when new timers were created since the last read (new
    // threads), when `force`, or at least every refresh period; then name
    // the registry's threads that threading does not know from the kernel
    // (/proc/self/task/<tid>/comm), once each.
    void refresh(ThreadRegistry& registry, bool force);
    // A thread starting through spprof's thread-start hook: `function` is
    // what it runs; a bound method of an object with a plain string `_name`
    // (threading.Thread._bootstrap) names the thread `tid` from its first
    // sample, even if it ends before the next read of threading's table.
    void note_starting(pid_t tid, PyObject* function);

    const std::unordered_map<pid_t, std::string>& names() const { return names_; }
    // The frame that names a thread without Python: <native thread NAME>
    // (its tid when its name is not known).
    std::string native_label(pid_t tid) const {
        auto it = names_.find(tid);
        return "<native thread " + (it != names_.end() ? it->second : std::to_string(tid)) + ">";
    }
    size_t size() const { return names_.size(); }

private:
    PyObject* threading_ = nullptr;  // interned "threading", "_active", "_native_id", "_name"
    PyObject* active_ = nullptr;
    PyObject* native_id_ = nullptr;
    PyObject* name_ = nullptr;
    std::unordered_map<pid_t, std::string> names_;
    std::unordered_set<pid_t> asked_kernel_;  // tids whose comm was read (or could not be)
    uint64_t seen_created_ = ~uint64_t{0};
    int64_t updated_ns_ = 0;
};

}  // namespace spprof
