// thread_registry.h: which threads are sampled, and their timers.
//
// Keyed by kernel thread id in a hash map: no size limit, average O(1)
// add/find/remove. Python threads (with a thread state of the profiled
// interpreter) and native threads (every other thread of the process: BLAS
// workers, C++ and Rust threads; found in /proc/self/task) both get a timer,
// so the profile's CPU is the process's; spprof's own threads are ignored. A mutex serialises registrations coming from any thread
// (the resolver's periodic scan, register_thread() calls, stop()); the
// signal handler never looks here, so it never meets that lock.
#pragma once

#include <Python.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "sampler.h"

namespace spprof {

struct RegistryCounters {
    uint64_t timers_created = 0;
    uint64_t perf_timers_created = 0;  // of timers_created, perf_event ones
    uint64_t perf_fallbacks = 0;       // perf_event refused for a thread: POSIX timer instead
    uint64_t perf_descriptors_lost = 0;  // closed or replaced by the program, timer recreated
    uint64_t timers_deleted = 0;
    uint64_t create_failures = 0;
    uint64_t overruns_at_delete = 0;
    uint64_t undelivered_weight = 0;   // grid points passed, signal not come, at deletion
    uint64_t native_threads = 0;       // native threads that got a timer (not spprof's)
    int last_create_errno = 0;
    pid_t last_failed_tid = 0;
};

class ThreadRegistry {
public:
    enum class Backend { timer_create, perf_event };
    // Start a session: new timers use `session`, `interval_ns` and `backend`.
    // `user_only`: perf_event timers count user mode only (wall mode,
    // perf_timer.h perf_events_user_only).
    void begin(uint32_t session, int64_t interval_ns, pid_t ignored_tid, Backend backend,
               bool user_only = false);
    Backend backend() const { return backend_; }
    // Never give `tid` a timer (spprof's own threads: the service thread,
    // which holds a thread state while it has the GIL but runs no Python
    // code, and the wall reader). Called by the thread itself as it starts;
    // its creator calls expect_own_thread() before creating it (and
    // own_thread_failed() if that fails): until it has said who it is, no
    // scan takes a new thread for a native one of the program's.
    void ignore_thread(pid_t tid);
    void expect_own_thread();
    void own_thread_failed();

    // GIL held. Bring the registry in line with the interpreter's thread
    // states and the process's threads: timers for new threads, none for
    // threads that are gone. A native thread that gets a thread state (a C
    // thread calling into Python) keeps its timer, and the other way round.
    void sync_with_interpreter(PyInterpreterState* interp);

    // Whether `tid` was a native thread (no thread state) when last seen in
    // this session: its samples are named after the thread.
    bool is_native(pid_t tid);

    // Register/unregister one thread explicitly. Both idempotent.
    // register: true if the thread is sampled afterwards.
    // unregister: true if it was sampled before the call.
    //
    // `birth_mark`: what birth_mark() returned in the thread that started
    // this one, when this thread registers itself at its start (0
    // otherwise). If the timers have run unchanged since then (same
    // session, not paused or resumed in between), the thread was born under
    // them: its samples cover its CPU from its first instruction (the CPU
    // it used before its timer existed is charged to its first sample).
    bool register_thread(pid_t tid, uint64_t tstate_uid, PyThreadState* tstate,
                         uint64_t birth_mark = 0);
    bool unregister_thread(pid_t tid);
    // The thread is about to exit: delete its timer now rather than at the
    // next scan (a program that churns short threads would otherwise hold
    // hundreds of dead timers). Not an opt-out.
    void thread_exiting(pid_t tid, uint64_t tstate_uid);
    bool is_registered(pid_t tid);

    // Which arming of the timers runs now (unique in the process; changes
    // at every begin(), set_interval() and end()); 0 while no timer runs.
    // Any thread may call it, the registry's lock is not taken.
    uint64_t birth_mark() const { return arming_.load(std::memory_order_acquire); }

    // Re-arm every timer with `interval_ns` (0 disarms), keeping them all.
    void set_interval(int64_t interval_ns);

    // Forget the timers whose perf_event descriptor the program closed or
    // replaced (without touching that descriptor); their threads get new
    // timers at the next scan. How many.
    size_t drop_lost_perf_timers();

    // Delete every timer and forget every thread.
    void end();

    // In a fork child: the timers were not inherited; forget them unused.
    void forget_after_fork();

    // Every sampled thread: kernel id, thread state (as last seen with the
    // GIL held: the thread may have exited since) and its unique id.
    struct Sampled {
        pid_t tid;
        PyThreadState* tstate;
        uint64_t uid;
        // When the thread registered itself (CLOCK_MONOTONIC, its CPU clock),
        // 0 when a scan found it: wall mode counts its time from there.
        int64_t registered_mono_ns;
        int64_t registered_cpu_ns;
    };
    void sampled_threads(std::vector<Sampled>* out);

    size_t size();
    RegistryCounters counters();
    std::vector<pid_t> thread_ids();

private:
    struct Entry {
        uint64_t tstate_uid = 0;
        PyThreadState* tstate = nullptr;  // as last seen with the GIL held
        ThreadTimer timer;
        uint64_t seen = 0;
        int64_t registered_mono_ns = 0;  // see Sampled
        int64_t registered_cpu_ns = 0;
        bool native = false;  // no thread state: tstate_uid and tstate are 0
    };
    // mu_ held.
    bool add_locked(pid_t tid, uint64_t uid, PyThreadState* tstate, bool from_thread_start = false);
    void new_arming_locked();
    int64_t random_phase_locked();
    void refresh_perf_budget_locked(int* min_fd);
    void remove_locked(std::unordered_map<pid_t, Entry>::iterator it);
    // A thread registering itself: when, by both clocks (Sampled).
    void note_registration_locked(Entry& entry, pid_t tid);

    std::mutex mu_;
    std::unordered_map<pid_t, Entry> threads_;
    // Threads unregistered explicitly: the scan leaves them alone until they
    // register again or exit. Value: the thread state's unique id.
    std::unordered_map<pid_t, uint64_t> opted_out_;
    uint32_t session_ = 0;
    int64_t interval_ns_ = 0;          // now (0 while paused)
    int64_t session_interval_ns_ = 0;  // the session's (begin())
    std::vector<pid_t> ignored_;  // kept across sessions while the thread is listed
    int own_threads_starting_ = 0;
    // Native threads of this session, by tid (kept after they end: their
    // last samples are resolved later), and the list read from /proc.
    std::unordered_set<pid_t> native_tids_;
    std::vector<pid_t> tasks_;
    // Python threads that said they are exiting: not native threads for
    // the moment they still run after their thread state is gone.
    std::unordered_set<pid_t> exiting_;
    uint64_t scan_generation_ = 0;
    uint64_t rng_ = 0;  // splitmix64 state for timer phases
    Backend backend_ = Backend::timer_create;
    // perf_event timers open now, and how many descriptors they may take:
    // a share of RLIMIT_NOFILE, so the program never runs out of them
    // because of us (threads past it get POSIX timers).
    size_t perf_open_ = 0;
    size_t perf_budget_ = 0;
    // Threads whose timer could not be created (tid -> thread state id): the
    // scan does not retry them until a timer was deleted (the usual cause is
    // the RLIMIT_SIGPENDING budget) or a second passed, so a process out of
    // timers does not pay for hundreds of failing calls on every scan.
    std::unordered_map<pid_t, uint64_t> failed_;
    uint64_t failed_deleted_mark_ = 0;
    int64_t failed_since_ns_ = 0;
    RegistryCounters counters_;
    std::atomic<uint64_t> arming_{0};  // see birth_mark()
};

}  // namespace spprof
