// session.h: one profiling session, from start() to stop().
//
// Owns the pieces and their order: the code-death hook and the signal
// handler go in before any timer is armed and come out after the last timer
// is deleted; a service thread keeps the thread registry in sync with the
// interpreter and drains the sample buffer while the session runs.
//
// All public functions are called with the GIL held. One session at a time
// per process.
#pragma once

#include <Python.h>
#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <mutex>
#include <vector>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "aggregator.h"
#include "code_registry.h"
#include "resolver.h"
#include "sample_buffer.h"
#include "thread_registry.h"

namespace spprof {

struct StartOptions {
    int64_t interval_ns = 10'000'000;
    size_t memory_limit_bytes = 100u << 20;
    bool take_over_sigprof = false;
    PyObject* warning_category = nullptr;  // class for warn(); borrowed (kept alive by start)
    enum class Backend { automatic, perf_event, timer_create };
    Backend backend = Backend::automatic;
};

class Session {
public:
    // Returns false with a Python exception set on failure (and leaves
    // nothing installed).
    bool start(const StartOptions& options);
    // Stops and returns the result dict (new reference), or nullptr with an
    // exception set.
    PyObject* stop();
    bool active() const { return active_; }
    bool paused() const;
    bool pause();
    bool resume();

    PyObject* stats();  // new reference (dict)

    int register_current_thread();    // 1 yes, 0 no
    int unregister_current_thread();  // 1 was registered, 0 was not
    int current_thread_registered();
    void current_thread_exiting();

    // pthread_atfork child handler (registered once): the child inherits our
    // memory and signal handler but none of the timers or threads.
    static void after_fork_in_child();
    // os.fork() hooks in the parent (GIL held): the service thread is not
    // running while the process forks.
    // Audit hook, "os.exec" (GIL held): nothing of ours may reach the new
    // image. Disarms every timer and hands SIGPROF back to the program; if
    // the process is still here kExecGraceNs later, the exec failed and
    // sampling resumes (service thread).
    void before_exec();
    // stop() ran out of memory building its result: the samples are kept
    // and the next stop() returns them.
    bool has_unbuilt_result() const { return unbuilt_; }
    void before_fork();
    void after_fork_in_parent();
    void resume_service_after_fork();  // GIL held; no-op unless paused for a fork

    // Work done on the service thread with the GIL held; also run by
    // stop() and stats() so results are current.
    void service_tick(bool force_names);
    uint64_t tick_failures() const { return tick_failures_; }

    static Session& instance();

private:
    static void* service_main(void* arg);
    int start_service_thread();  // 0 or an errno value
    void stop_service_thread();  // GIL held; releases it while joining
    void service_loop();
    void service_tick_unsafe(bool force_names);
    void update_thread_names();
    void check_health();
    // Queue a warning for the program. Any thread, GIL held. Warnings are
    // never issued on the service thread (that would run Python code there):
    // a pending call delivers them on the main thread, and start(), stats()
    // and stop() deliver the queue on their calling thread.
    void warn(const std::string& message);
public:
    // GIL held, on a program thread: issue the queued warnings. Returns -1
    // with the exception set when issuing one raised something that is not
    // an Exception (KeyboardInterrupt, SystemExit): the program's, so it is
    // never swallowed. An Exception (a warnings filter set to "error") is
    // spprof's own warning and is dropped.
    static int flush_warnings();
private:
    static int pending_flush(void*);
    static int restart_service_pending(void*);
    std::string timer_failure_message(int err) const;
    void on_code_death(PyCodeObject* code);
    static void code_death_trampoline(PyCodeObject* code);
    void release_everything();
    size_t thread_state_bytes() const;
    size_t memory_bytes() const;
    // Bytes the aggregator, code registry and resolver may hold together.
    size_t resolver_budget() const;
    void warn_about_memory();
    bool install_gc_callback();  // GIL held; false with an exception set
    void keep_gc_callback();
    void remove_gc_callback();
    PyObject* build_result();

    bool active_ = false;
    StartOptions options_;
    // Attribute and module names, interned once (first start, program thread).
    struct InternedNames {
        PyObject* threading = nullptr;
        PyObject* active = nullptr;
        PyObject* native_id = nullptr;
        PyObject* name = nullptr;
    };
    InternedNames names_;
    std::mutex warn_mu_;                       // guards pending_warnings_
    std::vector<std::string> pending_warnings_;
    std::atomic<bool> flush_scheduled_{false};
    bool warned_timer_failure_ = false;
    bool warned_blocked_ = false;
    bool warned_descriptors_ = false;
    int64_t descriptors_checked_ns_ = 0;
    bool warned_memory_ = false;
    uint64_t tick_failures_ = 0;
    size_t blocked_check_cursor_ = 0;
    std::unordered_map<pid_t, int> sigprof_blocked_;  // tid -> consecutive checks seen blocking
    // What the blocked-SIGPROF check saw of a thread last time: its CPU time
    // and how many samples it had produced.
    struct HealthSeen {
        int64_t cpu_ns = 0;
        uint64_t samples = 0;
    };
    std::unordered_map<pid_t, HealthSeen> health_seen_;
    std::unordered_map<pid_t, uint64_t> samples_by_thread_;
    SampleBuffer buffer_;
    CodeRegistry codes_;
    Resolver resolver_;
    Aggregator aggregator_;
    ThreadRegistry registry_;
    std::unordered_map<pid_t, std::string> thread_names_;

    pthread_t service_thread_{};
    bool service_running_ = false;
    bool service_paused_for_fork_ = false;
    std::atomic<bool> service_stop_{false};
    std::atomic<pid_t> service_tid_{0};
    std::atomic<int64_t> service_cpu_ns_{0};
    // How often the service thread woke up, and how many of those wakes
    // took the GIL.
    std::atomic<uint64_t> service_wakes_{0};
    std::atomic<uint64_t> service_gil_ticks_{0};
    uint64_t names_seen_created_ = ~uint64_t{0};
    int64_t names_updated_ns_ = 0;

    uint32_t session_counter_ = 0;
    PyObject* gc_callback_ = nullptr;  // our entry in gc.callbacks (kept for the process)
    bool gc_callback_installed_ = false;
    int64_t start_mono_ns_ = 0;
    int64_t start_process_cpu_ns_ = 0;
    int64_t paused_at_ns_ = 0;
    // An exec is under way (before_exec) since exec_at_ns_.
    std::atomic<bool> exec_pending_{false};
    bool unbuilt_ = false;
    int64_t stopped_duration_ns_ = 0;
    int64_t stopped_process_cpu_ns_ = 0;
    PyObject* finish_result();
    int64_t exec_at_ns_ = 0;
    void resume_after_failed_exec();
    int64_t paused_total_ns_ = 0;
    uint64_t resolved_samples_ = 0;
};

// Make sure the calling thread can throw (and so report) std::bad_alloc
// when memory has run out: the C++ runtime keeps its per-thread exception
// state in thread-local storage that glibc allocates on first use for a
// library loaded at run time, and aborts the process ("cannot allocate
// memory for thread-local data") if that allocation fails. Touching it
// early, while memory is there, avoids that. Cheap; call on every thread
// that runs spprof's native code.
void prepare_thread_for_exceptions();

int64_t monotonic_now_ns();
int64_t process_cpu_now_ns();
pid_t current_tid();

}  // namespace spprof
