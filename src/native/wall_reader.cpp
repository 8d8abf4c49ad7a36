#include "wall_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <Python.h>

#include <algorithm>
#include <exception>

#include "frame_walker.h"
#include "os_clock.h"
#include "sample_buffer.h"
#include "sampler.h"
#include "signal_handler.h"
#include "wakeup.h"

namespace spprof {

namespace {

// Off-CPU time of a thread that keeps running is charged once it adds up
// to this many intervals (see tick()).
constexpr int64_t kMaxDeferredIntervals = 2;
// /proc syscall files kept open at once; threads past it are not told
// apart (a wait counts as idle).
constexpr size_t kMaxStateFiles = 256;
// Exits noted between two ticks, at most (a program that ends threads
// faster than that while the reader is held up loses their last moments).
constexpr size_t kMaxExitNotes = 4096;

int64_t thread_cpu_ns_of(pid_t tid) {
    timespec ts;
    if (clock_gettime(thread_cpu_clock(tid), &ts) != 0) return -1;
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Sleep until `deadline_ns` (CLOCK_MONOTONIC) or until `word` is set.
void sleep_until(std::atomic<uint32_t>* word, int64_t deadline_ns) {
    if (word->load(std::memory_order_acquire) != 0) return;
    timespec ts{static_cast<time_t>(deadline_ns / 1'000'000'000),
                static_cast<long>(deadline_ns % 1'000'000'000)};
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline.
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_BITSET_PRIVATE, 0, &ts,
            nullptr, FUTEX_BITSET_MATCH_ANY);
}

}  // namespace

int WallReader::start(ThreadRegistry* registry, SampleBuffer* buffer, int64_t interval_ns,
                      const void* gil, size_t gil_size) {
    registry_ = registry;
    buffer_ = buffer;
    interval_ns_ = interval_ns;
    gil_lo_ = reinterpret_cast<uintptr_t>(gil);
    gil_hi_ = gil_lo_ + gil_size;
    stop_word_.store(0);
    if (!resuming_) {
        for (auto& [tid, b] : balances_) forget_thread(&b);
        balances_.clear();
        charging_since_ns_.store(monotonic_now_ns());
    }
    threads_.clear();
    // A small stack: it keeps one stack's frames on it (2 KiB).
    registry_->expect_own_thread();
    int err = thread_.start(&WallReader::main, this, 256 * 1024);
    if (err != 0) registry_->own_thread_failed();
    return err;
}

void WallReader::stop() {
    thread_.stop(&stop_word_);
    // Stopped for a fork and not resumed: what it kept goes now.
    for (auto& [tid, b] : balances_) forget_thread(&b);
    balances_.clear();
    resuming_ = false;
}

void WallReader::set_paused(bool paused) {
    if (!paused && paused_.load(std::memory_order_acquire)) charging_since_ns_.store(monotonic_now_ns());
    paused_.store(paused, std::memory_order_release);
}

void WallReader::stop_for_fork() {
    stopping_for_fork_.store(true, std::memory_order_release);
    thread_.stop_for_fork(&stop_word_);
    stopping_for_fork_.store(false, std::memory_order_release);
}

int WallReader::resume_after_fork() {
    if (!thread_.take_stopped_for_fork()) return -1;
    resuming_ = true;
    const int err = start(registry_, buffer_, interval_ns_, reinterpret_cast<const void*>(gil_lo_),
                          gil_hi_ - gil_lo_);
    if (err != 0) resuming_ = false;
    return err;
}

void WallReader::forget_after_fork() {
    // The child has no reader thread: its /proc files (inherited if the
    // fork bypassed os.fork's hooks) are closed here, if still ours.
    thread_.forget_after_fork();
    for (auto& [tid, b] : balances_) forget_thread(&b);
    balances_.clear();
}

WallCounters WallReader::counters() const {
    WallCounters c;
    c.ticks = ticks_.load();
    c.late_ticks = late_ticks_.load();
    c.idle_samples = idle_samples_.load();
    c.gil_samples = gil_samples_.load();
    c.torn_walks = torn_walks_.load();
    c.dropped = dropped_.load();
    c.dropped_weight = dropped_weight_.load();
    c.syscall_reads = syscall_reads_.load();
    c.lost_state_files = lost_state_files_.load();
    c.exit_charges = exit_charges_.load();
    c.cpu_ns = thread_.cpu_ns();
    return c;
}

void WallReader::reset_counters() {
    for (auto* a : {&ticks_, &late_ticks_, &idle_samples_, &gil_samples_, &torn_walks_, &dropped_,
                    &dropped_weight_, &syscall_reads_, &lost_state_files_, &exit_charges_}) {
        a->store(0);
    }
    thread_.reset_cpu();
}

void* WallReader::main(void* arg) {
    static_cast<WallReader*>(arg)->loop();
    return nullptr;
}

void WallReader::loop() {
    prepare_thread_for_exceptions();
    prctl(PR_SET_NAME, kWallThreadName, 0, 0, 0);
    // spprof's own: never sampled as a native thread.
    registry_->ignore_thread(current_tid());
    thread_.note_started();
    int64_t last = monotonic_now_ns();
    int64_t next = last + interval_ns_;
    if (resuming_ && last_tick_ns_ > 0 && last_tick_ns_ <= last) last = last_tick_ns_;
    resuming_ = false;
    while (!thread_.stop_requested()) {
        sleep_until(&stop_word_, next);
        if (thread_.stop_requested()) break;
        int64_t now = monotonic_now_ns();
        if (now < next) continue;  // woken early (spuriously)
        ticks_.fetch_add(1, std::memory_order_relaxed);
        // The next point of the grid after now: a reader that was held up
        // (the machine overloaded) charges the whole time it missed at its
        // next tick, in the balances, not by catching up tick after tick.
        if (now - next >= interval_ns_) late_ticks_.fetch_add(1, std::memory_order_relaxed);
        next += ((now - next) / interval_ns_ + 1) * interval_ns_;
        try {
            tick(now, now - last);
        } catch (const std::exception&) {
            // Out of memory listing the threads: this tick is skipped, its
            // time is charged at the next one.
            continue;
        }
        last = now;
    }
    last_tick_ns_ = last;
    if (!stopping_for_fork_.load(std::memory_order_acquire)) {
        for (auto& [tid, b] : balances_) forget_thread(&b);
        balances_.clear();
    }
    thread_.note_ending();
}

void WallReader::tick(int64_t now, int64_t elapsed) {
    registry_->sampled_threads(&threads_);
    ++generation_;
    const bool paused = paused_.load(std::memory_order_acquire);
    for (const ThreadRegistry::Sampled& t : threads_) {
        const int64_t cpu = thread_cpu_ns_of(t.tid);
        if (cpu < 0) continue;  // exited
        auto [it, inserted] = balances_.try_emplace(t.tid);
        Balance& b = it->second;
        int64_t span = elapsed;
        if (inserted || b.uid != t.uid) {
            // First seen (or a new thread with a reused id): its time counts
            // from its registration when it registered itself since
            // charging began (its first instruction, for a thread started
            // through the thread-start hook), else from here.
            forget_thread(&b);
            b = Balance{};
            b.uid = t.uid;
            b.seen = generation_;
            const int64_t since = charging_since_ns_.load(std::memory_order_acquire);
            if (paused || t.registered_mono_ns == 0 || t.registered_mono_ns < since ||
                t.registered_mono_ns > now || t.registered_cpu_ns > cpu) {
                b.last_cpu_ns = cpu;
                continue;
            }
            b.last_cpu_ns = t.registered_cpu_ns;
            span = now - t.registered_mono_ns;
        }
        b.seen = generation_;
        const int64_t used = cpu - b.last_cpu_ns;
        b.last_cpu_ns = cpu;
        if (paused) {
            b.off_ns = 0;
            continue;
        }
        const int64_t off = span - used;
        if (off > 0) b.off_ns += off;
        if (b.off_ns < interval_ns_) continue;
        // Charged to the stack the thread is blocked in now: only when it
        // stayed off CPU (almost) the whole last interval, so the time it
        // waited goes to where it waits, not to code it runs between two
        // waits. A thread that never stays off CPU that long (preempted,
        // contending for the GIL) is charged once the balance grows.
        if (used > interval_ns_ / 10 && b.off_ns < kMaxDeferredIntervals * interval_ns_) continue;
        const int64_t whole = b.off_ns / interval_ns_;
        b.off_ns -= whole * interval_ns_;
        if (b.classified_cpu_ns != cpu) {
            b.waits_for_gil = waits_for_gil(t.tid, &b.file);
            b.classified_cpu_ns = cpu;
        }
        write_sample(t, static_cast<uint32_t>(whole > UINT32_MAX ? UINT32_MAX : whole),
                     b.waits_for_gil, now);
    }
    if (!paused) charge_exits(now, now - elapsed);
    for (auto it = balances_.begin(); it != balances_.end();) {
        if (it->second.seen == generation_) {
            ++it;
        } else {
            forget_thread(&it->second);
            it = balances_.erase(it);
        }
    }
}

void WallReader::thread_exiting(pid_t tid, uint64_t uid) {
    if (!thread_.running() || paused_.load(std::memory_order_acquire)) return;
    ExitNote note{tid, uid, monotonic_now_ns(), thread_cpu_now_ns()};
    std::lock_guard<std::mutex> lock(exits_mu_);
    if (exits_.size() >= kMaxExitNotes) return;  // the reader is far behind: lost, as before
    try {
        exits_.push_back(note);
    } catch (const std::bad_alloc&) {
        // lost, as before
    }
}

void WallReader::charge_exits(int64_t now, int64_t last_tick) {
    {
        std::lock_guard<std::mutex> lock(exits_mu_);
        exit_batch_.swap(exits_);
    }
    for (const ExitNote& note : exit_batch_) {
        auto it = balances_.find(note.tid);
        // Visited in this tick (it had not left the registry yet): nothing
        // is owed. Never visited: it is charged from its first tick only.
        if (it == balances_.end() || it->second.uid != note.uid || it->second.seen == generation_) continue;
        Balance& b = it->second;
        const int64_t off = (note.mono_ns - last_tick) - (note.cpu_ns - b.last_cpu_ns);
        const int64_t owed = b.off_ns + (off > 0 ? off : 0);
        b.off_ns = 0;
        const int64_t whole = owed / interval_ns_;  // the last partial interval is dropped, as at every tick
        if (whole > 0) write_exit_sample(note.tid, static_cast<uint32_t>(std::min<int64_t>(whole, UINT32_MAX)),
                                         b.waits_for_gil, now);
    }
    exit_batch_.clear();
}

namespace {
// Counted as a capture in flight while it lives, like a handler: stop()
// and the code registry's pruning wait for it. `active` says whether the
// session still runs (else nothing may be written).
struct InflightCapture {
    HandlerState& st;
    bool active;
    explicit InflightCapture(HandlerState& s) : st(s) {
        st.inflight.fetch_add(1, std::memory_order_seq_cst);
        active = st.active.load(std::memory_order_seq_cst);
    }
    ~InflightCapture() { st.inflight.fetch_sub(1, std::memory_order_release); }
    InflightCapture(const InflightCapture&) = delete;
    InflightCapture& operator=(const InflightCapture&) = delete;
};
}  // namespace

SampleSlot* WallReader::claim_off_cpu_slot(pid_t tid, uint32_t weight, bool gil, int64_t now,
                                           uint64_t epoch) {
    SampleSlot* slot = buffer_->try_claim();
    if (slot == nullptr) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        dropped_weight_.fetch_add(weight, std::memory_order_relaxed);
        return nullptr;
    }
    slot->timestamp_ns = now;
    slot->code_epoch = epoch;
    slot->tid = tid;
    slot->weight = weight;
    slot->gc_pos = -1;
    slot->depth = 0;
    slot->truncated = 0;
    slot->flags = kSampleOffCpu | (gil ? kSampleGilWait : 0) |
                  (handler_state().gil.known() ? kSampleGilKnown : 0);
    // Read from outside the thread: no native frames.
    if (NativeTrace* trace = buffer_->trace_of(slot)) trace->depth = 0;
    return slot;
}

void WallReader::write_exit_sample(pid_t tid, uint32_t weight, bool gil, int64_t now) {
    HandlerState& st = handler_state();
    InflightCapture capture(st);
    if (!capture.active) return;
    // Off CPU before its exit: asleep or waiting, not holding the GIL.
    SampleSlot* slot = claim_off_cpu_slot(tid, weight, gil, now, st.code_epoch.load(std::memory_order_acquire));
    if (slot == nullptr) return;
    buffer_->publish(slot);
    idle_samples_.fetch_add(1, std::memory_order_relaxed);
    exit_charges_.fetch_add(1, std::memory_order_relaxed);
}

bool WallReader::open_state_file(pid_t tid, StateFile* file) {
    // Opened once per thread, moved out of the program's way and checked
    // at every use (ProcFile, proc_tasks.h): a program that closes every
    // descriptor and opens its own (a daemonizer) never has its files read
    // or closed by us.
    if (state_files_ >= kMaxStateFiles) return false;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", static_cast<int>(tid));
    if (!file->open(path, O_RDONLY)) return false;
    ++state_files_;
    return true;
}

void WallReader::close_state_file(StateFile* file) {
    if (!file->is_open()) return;
    file->close();
    if (state_files_ > 0) --state_files_;
}

bool WallReader::waits_for_gil(pid_t tid, StateFile* file) {
    // "<nr> <arg0> <arg1> ... <sp> <pc>" for a thread blocked in a system
    // call, "running" or "-1 <sp> <pc>" otherwise (proc(5)); made anew at
    // every read from offset 0.
    if (!file->is_open() && !open_state_file(tid, file)) return false;
    const int fd = file->fd();
    if (fd < 0) {
        // Closed or replaced by the program: forgotten (not closed), and
        // opened again next time.
        file->forget();
        if (state_files_ > 0) --state_files_;
        lost_state_files_.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    char text[256];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    syscall_reads_.fetch_add(1, std::memory_order_relaxed);
    if (n <= 0) return false;
    text[n] = '\0';
    char* end = nullptr;
    long nr = strtol(text, &end, 10);
    if (end == text || nr != SYS_futex) return false;
    unsigned long long address = strtoull(end, nullptr, 16);
    return address >= gil_lo_ && address < gil_hi_;
}

void WallReader::write_sample(const ThreadRegistry::Sampled& t, uint32_t weight, bool gil,
                              int64_t now) {
    HandlerState& st = handler_state();
    InflightCapture capture(st);
    if (!capture.active) return;
    const uint64_t epoch = st.code_epoch.load(std::memory_order_acquire);
    RawFrame frames[kMaxDepth];
    bool gone = false;
    WalkResult walk = walk_other_stack(t.tstate, t.tid, t.uid, frames, kMaxDepth, &gone);
    if (gone) return;  // exited meanwhile: its last off-CPU time goes with it
    SampleSlot* slot = claim_off_cpu_slot(t.tid, weight, gil, now, epoch);
    if (slot == nullptr) return;
    // Blocked while holding the GIL stops every other thread: worth seeing.
    if (st.gil.known() && !gil && st.gil.held_by(t.tstate)) slot->flags |= kSampleGilHeld;
    if (walk.invalid) {
        slot->flags |= kSampleIncomplete;
        torn_walks_.fetch_add(1, std::memory_order_relaxed);
    } else {
        memcpy(slot->frames, frames, sizeof(RawFrame) * walk.depth);
        slot->depth = walk.depth;
        slot->truncated = walk.truncated ? 1 : 0;
    }
    buffer_->publish(slot);
    idle_samples_.fetch_add(1, std::memory_order_relaxed);
    if (gil) gil_samples_.fetch_add(1, std::memory_order_relaxed);
    if (st.wake_enabled.load(std::memory_order_relaxed) &&
        buffer_->approx_size() >= st.wake_threshold &&
        !st.wake_pending.exchange(true, std::memory_order_acq_rel)) {
        wakeup_signal(&st.wake_word);
    }
}

}  // namespace spprof
