// messages.h: what spprof tells the program: ProfilerError when it cannot
// do what was asked, and warnings when profiling goes on with something
// missing.
//
// Warnings: any thread with the GIL queues a message; only a program thread issues
// them, as warnings of the category start() was given (ProfilerWarning).
// The service thread runs no Python code, so a message it queues is issued
// by a pending call on the main thread; start(), stats() and stop() issue
// the queue on their calling thread. The queue is bounded: the first
// messages matter.
#pragma once

#include <Python.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

namespace spprof {

// Set spprof.ProfilerError (RuntimeError if spprof._errors cannot be
// imported) with `message`.
void set_profiler_error(const std::string& message);

class WarningQueue {
public:
    // The category, kept for the life of the process (a pending call may
    // issue a warning after the session that queued it ended). Borrowed
    // reference; the first one given is kept.
    void set_category(PyObject* category);
    // Queue `message`; `from_service_thread` schedules a pending call that
    // issues it on the main thread.
    void push(const std::string& message, bool from_service_thread);
    // GIL held, on a program thread: issue the queued warnings. -1 with the
    // exception set when issuing one raised something that is not an
    // Exception (KeyboardInterrupt, SystemExit): the program's, never
    // swallowed. An Exception (a warnings filter set to "error") is
    // spprof's own warning and is dropped.
    int flush();

    static WarningQueue& instance();

private:
    static int pending_flush(void*);
    std::mutex mu_;  // guards pending_
    std::vector<std::string> pending_;
    std::atomic<bool> flush_scheduled_{false};
    PyObject* category_ = nullptr;
};

}  // namespace spprof
