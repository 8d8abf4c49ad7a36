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
    // threads), when `force`, or at least every refresh period.
    void refresh(uint64_t timers_created, bool force);

    const std::unordered_map<pid_t, std::string>& names() const { return names_; }
    size_t size() const { return names_.size(); }

private:
    PyObject* threading_ = nullptr;  // interned "threading", "_active", "_native_id", "_name"
    PyObject* active_ = nullptr;
    PyObject* native_id_ = nullptr;
    PyObject* name_ = nullptr;
    std::unordered_map<pid_t, std::string> names_;
    uint64_t seen_created_ = ~uint64_t{0};
    int64_t updated_ns_ = 0;
};

}  // namespace spprof
