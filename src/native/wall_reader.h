// wall_reader.h: wall-clock sampling of the time threads spend off CPU.
//
// In wall mode every thread is charged its real time: its CPU time, sampled
// by its CPU timer and the signal handler exactly as in CPU mode (those
// signals only ever reach a thread that is running), plus the time it is
// off CPU (blocked, sleeping, waiting for the GIL or for a processor), which
// this reader samples without sending anything to the thread: no signal
// can interrupt a blocked system call of the program.
//
// A native thread (`spprof-wall`, never runs Python, never takes the GIL)
// wakes on an absolute CLOCK_MONOTONIC grid every interval. For each sampled
// thread it reads the thread's CPU clock: whatever of the elapsed interval
// was not CPU time is added to the thread's off-CPU balance; each whole
// interval in the balance becomes weight on one sample of the thread's stack
// as it stands now, read with process_vm_readv and validated
// (walk_other_stack: a thread that exits or wakes up meanwhile never makes
// it fault or read garbage). A blocked thread's stack does not change, so
// the time is charged where it is spent. Per thread, weight of CPU samples
// plus weight of off-CPU samples is its real time over the session, in
// intervals.
//
// Each off-CPU sample is marked idle or waiting for the GIL: a thread that
// sleeps on a futex inside the GIL's state (its /proc task `syscall` file)
// waits for the GIL. That file is read only when the thread used CPU since
// it was last classified (a thread blocked all along keeps its state), so a
// process with many idle threads pays little.
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "proc_tasks.h"
#include "session_thread.h"
#include "thread_registry.h"

namespace spprof {

inline constexpr char kWallThreadName[] = "spprof-wall";

struct WallCounters {
    uint64_t ticks = 0;          // wake-ups of the reader
    uint64_t late_ticks = 0;     // wake-ups that came a whole interval or more late
    uint64_t idle_samples = 0;   // off-CPU samples written
    uint64_t gil_samples = 0;    // of those, waiting for the GIL
    uint64_t torn_walks = 0;     // the thread moved while read: sample kept as <unknown stack>
    uint64_t dropped = 0;        // buffer full
    uint64_t dropped_weight = 0;
    uint64_t syscall_reads = 0;  // /proc syscall files read to classify
    uint64_t lost_state_files = 0;  // closed or replaced by the program: reopened
    uint64_t exit_charges = 0;   // samples of the time between a thread's last tick and its exit
    int64_t cpu_ns = 0;          // the reader's own CPU time
};

class SampleBuffer;
struct SampleSlot;

class WallReader {
public:
    // Start the reader (GIL held): sample the registry's threads every
    // `interval_ns` into `buffer`; `gil`/`gil_size` is the GIL's state
    // (compat_internal.h). 0 or an errno value.
    int start(ThreadRegistry* registry, SampleBuffer* buffer, int64_t interval_ns,
              const void* gil, size_t gil_size);
    // Stop it and wait for it (GIL held; released while waiting). Idempotent.
    void stop();
    bool running() const { return thread_.running(); }

    // Pause/resume (the session's): while paused no time is charged; the
    // balances restart from the resume.
    void set_paused(bool paused);

    // A thread that is about to exit (on that thread, with no Python frame
    // left): the time since the reader last visited it, less the CPU it
    // used meanwhile, is charged at the next tick (under <no Python frame>:
    // its stack is gone) instead of being lost with it. On an overloaded
    // machine the reader can be held up for tens of milliseconds just
    // before a thread ends.
    void thread_exiting(pid_t tid, uint64_t uid);

    // Across fork: stopped before, started again after in the parent, where
    // it goes on from its last tick (the time the parent spent meanwhile,
    // e.g. waiting for the child, is charged at its first tick); a child
    // has no such thread.
    void stop_for_fork();
    int resume_after_fork();
    void forget_after_fork();

    WallCounters counters() const;
    void reset_counters();

private:
    // The thread's /proc `syscall` file, kept open (re-read with pread) at
    // a high descriptor number, out of the program's way (proc_tasks.h).
    using StateFile = ProcFile;
    struct Balance {
        uint64_t uid = 0;
        int64_t last_cpu_ns = 0;
        int64_t off_ns = 0;           // off-CPU time not yet charged
        int64_t classified_cpu_ns = -1;  // CPU time when its state was last read
        bool waits_for_gil = false;
        uint64_t seen = 0;
        StateFile file;
    };
    static void* main(void* arg);
    void loop();
    void tick(int64_t now, int64_t elapsed);
    bool waits_for_gil(pid_t tid, StateFile* file);
    bool open_state_file(pid_t tid, StateFile* file);
    void close_state_file(StateFile* file);
    void forget_thread(Balance* b) { close_state_file(&b->file); }
    void write_sample(const ThreadRegistry::Sampled& t, uint32_t weight, bool gil, int64_t now);
    // A slot for an off-CPU sample of thread `tid` with the fields every
    // one has (no frames yet), or nullptr when the buffer is full (counted
    // as dropped).
    SampleSlot* claim_off_cpu_slot(pid_t tid, uint32_t weight, bool gil, int64_t now, uint64_t epoch);
    void charge_exits(int64_t now, int64_t last_tick);
    void write_exit_sample(pid_t tid, uint32_t weight, bool gil, int64_t now);
    struct ExitNote {
        pid_t tid;
        uint64_t uid;
        int64_t mono_ns;
        int64_t cpu_ns;
    };

    ThreadRegistry* registry_ = nullptr;
    SampleBuffer* buffer_ = nullptr;
    int64_t interval_ns_ = 0;
    uintptr_t gil_lo_ = 0;
    uintptr_t gil_hi_ = 0;
    SessionThread thread_;
    std::atomic<bool> paused_{false};
    // Since when time is charged (start, the last resume): a thread that
    // registered itself later is charged from its registration.
    std::atomic<int64_t> charging_since_ns_{0};
    std::atomic<uint32_t> stop_word_{0};  // futex the reader sleeps on

    // Reader thread only.
    std::vector<ThreadRegistry::Sampled> threads_;
    std::vector<ExitNote> exit_batch_;
    // Filled by exiting threads, emptied by the reader (short holds only).
    std::mutex exits_mu_;
    std::vector<ExitNote> exits_;
    std::unordered_map<pid_t, Balance> balances_;
    int64_t last_tick_ns_ = 0;   // the last tick's time, kept across a fork
    bool resuming_ = false;      // the next loop goes on from last_tick_ns_
    std::atomic<bool> stopping_for_fork_{false};  // the loop keeps its balances
    uint64_t generation_ = 0;
    size_t state_files_ = 0;  // open now (at most kMaxStateFiles)

    std::atomic<uint64_t> ticks_{0}, late_ticks_{0}, idle_samples_{0}, gil_samples_{0},
        torn_walks_{0}, dropped_{0}, dropped_weight_{0}, syscall_reads_{0}, lost_state_files_{0},
        exit_charges_{0};
};

}  // namespace spprof
