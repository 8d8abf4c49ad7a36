// session.h: one profiling session, from start() to stop(): the lifecycle.
//
// Owns the pieces and their order: the code-death hook, the gc marker and
// the signal handler go in before any timer is armed and come out after the
// last timer is deleted; the service thread (service_thread.h) keeps the
// thread registry in sync with the interpreter and drains the sample buffer
// while the session runs. Health checks (health.h), thread names
// (thread_names.h), the memory budget (memory_budget.h), warnings
// (messages.h) and the export of stats and samples (result_export.h)
// are their own units.
//
// All public functions are called with the GIL held. One session at a time
// per process.
#pragma once

#include <Python.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "aggregator.h"
#include "code_registry.h"
#include "gc_marker.h"
#include "health.h"
#include "memory_budget.h"
#include "os_clock.h"
#include "resolver.h"
#include "sample_buffer.h"
#include "service_thread.h"
#include "stats_schema.h"
#include "thread_names.h"
#include "thread_registry.h"
#include "wall_reader.h"

namespace spprof {

struct StartOptions {
    int64_t interval_ns = 10'000'000;
    size_t memory_limit_bytes = 100u << 20;
    bool take_over_sigprof = false;
    PyObject* warning_category = nullptr;  // class for warnings; borrowed (kept by WarningQueue)
    enum class Backend { automatic, perf_event, timer_create };
    Backend backend = Backend::automatic;
    // cpu: CPU time only. wall: also the time threads spend off CPU
    // (wall_reader.h), so each thread is charged its real time.
    enum class Mode { cpu, wall };
    Mode mode = Mode::cpu;
    // Native (C/C++) frames in the samples (native_unwind.h).
    bool native = false;
};

// Everything one session accumulates besides its samples. Replaced as a
// whole at start(), never reset field by field.
struct SessionRun {
    StartOptions options;
    HealthCheck health;
    int64_t start_mono_ns = 0;
    int64_t start_process_cpu_ns = 0;
    int64_t paused_at_ns = 0;
    int64_t paused_total_ns = 0;
    int64_t exec_at_ns = 0;  // when the exec under way began (before_exec)
    int64_t stopped_duration_ns = 0;
    int64_t stopped_process_cpu_ns = 0;
    uint64_t resolved_samples = 0;
    uint64_t tick_failures = 0;
    bool warned_memory = false;
    std::string backend_note;  // stats' backend_note
};

class Session {
public:
    // Returns false with a Python exception set on failure (and leaves
    // nothing installed).
    bool start(const StartOptions& options);
    // Stops and returns the result dict (new reference), or nullptr with an
    // exception set. Out of memory building it: the samples are kept
    // (has_unbuilt_result) and the next stop() returns them.
    PyObject* stop();
    bool has_unbuilt_result() const { return unbuilt_; }
    bool active() const { return active_; }
    bool paused() const;
    bool pause();
    bool resume();

    PyObject* stats();  // new reference (dict)

    // `birth_mark`: thread_birth_mark() in the thread that started this one,
    // when called by the thread-start hook (see ThreadRegistry).
    int register_current_thread(uint64_t birth_mark = 0);  // 1 yes, 0 no
    // In a thread about to start another: what the new thread passes to
    // register_current_thread().
    uint64_t thread_birth_mark() const { return active_ ? registry_.birth_mark() : 0; }
    int unregister_current_thread();  // 1 was registered, 0 was not
    int current_thread_registered();
    void current_thread_exiting();
    // The thread-start hook, in the new thread before its function runs.
    void name_starting_thread(PyObject* function) {
        if (active_) thread_names_.note_starting(current_tid(), function);
    }

    // Fork: the service thread is not running while the process forks
    // (os.fork() hooks in the parent, GIL held). The child inherits our
    // memory and signal handler but none of the timers or threads.
    void before_fork();
    void after_fork_in_parent();
    static void after_fork_in_child();
    // Audit hook, "os.exec" (GIL held): nothing of ours may reach the new
    // image. Disarms every timer and hands SIGPROF back to the program; if
    // the process is still here a second later, the exec failed and
    // sampling resumes (service thread).
    void before_exec();

    static Session& instance();

private:
    static void tick_on_service_thread();
    // The work of the service thread, GIL held; also run by stop() and
    // stats() so results are current.
    void service_tick(bool force_names);
    void service_tick_unsafe(bool force_names);
    void resume_service_after_fork();  // no-op unless stopped for a fork
    static int restart_service_pending(void*);
    void resume_after_failed_exec();
    void warn(const std::string& message);
    static void code_death_trampoline(PyCodeObject* code);
    void on_code_death(PyCodeObject* code);
    MemoryUse memory_use() const;
    void warn_about_memory();
    friend Stats collect_stats(Session& session);  // result_export.cpp
    PyObject* finish_result();
    bool fail_start(const std::string& message);  // stops what started; ProfilerError
    void release_everything();

    bool active_ = false;
    bool unbuilt_ = false;
    std::atomic<bool> exec_pending_{false};  // an exec is under way (before_exec)
    uint32_t session_counter_ = 0;
    SessionRun run_;

    SampleBuffer buffer_;
    CodeRegistry codes_;
    Resolver resolver_;
    Aggregator aggregator_;
    ThreadRegistry registry_;
    ThreadNames thread_names_;
    GcMarker gc_;
    ServiceThread service_;
    WallReader wall_;
};

}  // namespace spprof
