#include "session.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <new>
#include <cstdio>
#include <vector>

#include "compat.h"
#include "perf_timer.h"
#include "sampler.h"
#include "signal_handler.h"
#include "wakeup.h"

namespace spprof {

namespace {
// The service thread polls, without the GIL, for a change in the number of
// threads: every 20 ms while threads come and go (a change in the last
// second), every 50 ms in a steady state. Each wake costs a context
// switch, which is not free in a virtual machine.
constexpr int kBusyPollMs = 20;
constexpr int kSteadyPollMs = 50;
// How long after an exec began spprof concludes that it failed (execve
// replaces the process long before; only then are timers armed again).
constexpr int64_t kExecGraceNs = 1'000'000'000;
// How often the service thread checks that its descriptors are still its own.
constexpr int64_t kDescriptorCheckNs = 500'000'000;
constexpr int64_t kBusyWindowNs = 1'000'000'000;
// It takes the GIL (to scan thread states, resolve and aggregate samples)
// at least this often, and early when the thread count changes or the
// buffer is a quarter full. Every GIL acquisition also costs the program a
// GIL hand-off, so an idle tick must not take it.
constexpr int64_t kFullTickNs = 100'000'000;
// After the thread count changes, this many polls in a row take the GIL:
// a new thread's state gets its kernel id only once the thread runs.
constexpr int kHotTicks = 3;
// Thread names are refreshed when new threads appear, and at least this often.
constexpr int64_t kNamesRefreshNs = 500'000'000;

// The warning class, kept for the life of the process: a pending call may
// issue a warning after the session that queued it ended.
PyObject* g_warning_category = nullptr;

int64_t clock_ns(clockid_t clock) {
    timespec ts;
    clock_gettime(clock, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

PyObject* set_profiler_error(const std::string& message) {
    PyObject* module = PyImport_ImportModule("spprof._errors");
    PyObject* cls = module ? PyObject_GetAttrString(module, "ProfilerError") : nullptr;
    Py_XDECREF(module);
    if (cls == nullptr) {
        PyErr_Clear();
        cls = Py_NewRef(PyExc_RuntimeError);
    }
    PyErr_SetString(cls, message.c_str());
    Py_DECREF(cls);
    return nullptr;
}
}  // namespace

void prepare_thread_for_exceptions() {
    // Reads the runtime's per-thread exception globals (allocating them).
    volatile int n = std::uncaught_exceptions();
    (void)n;
}

int64_t monotonic_now_ns() { return clock_ns(CLOCK_MONOTONIC); }
int64_t process_cpu_now_ns() { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }
pid_t current_tid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

Session& Session::instance() {
    static Session* s = new Session();  // never destroyed: outlives atexit
    return *s;
}

void Session::code_death_trampoline(PyCodeObject* code) { instance().on_code_death(code); }

namespace {
// gc.callbacks entry: tells the signal handler which thread is collecting
// and from which frame, so its samples get a <gc> frame there. Runs on the
// collecting thread with the GIL; creates no objects.
//
// CPython calls the entries by index, reading the list's length as it goes:
// an entry before ours that removes itself during "stop" (a one-shot
// callback) would make it skip ours, and the thread would stay marked as
// collecting. So ours is kept first: inserted at the front, and moved back
// there at each "start" if the program inserted before it (moving the
// current entry to the front changes no position after it, so CPython's
// walk neither skips nor repeats an entry).
PyObject* g_gc_list = nullptr;  // gc.callbacks while ours is in it
PyObject* g_gc_self = nullptr;  // our entry

void keep_gc_callback_first() {
    PyObject* list = g_gc_list;
    if (list == nullptr || !PyList_Check(list)) return;
    for (Py_ssize_t i = 1; i < PyList_GET_SIZE(list); ++i) {
        if (PyList_GET_ITEM(list, i) != g_gc_self) continue;
        Py_INCREF(g_gc_self);
        if (PyList_SetSlice(list, i, i + 1, nullptr) < 0 || PyList_Insert(list, 0, g_gc_self) < 0) {
            PyErr_Clear();  // out of memory: left where it is
        }
        Py_DECREF(g_gc_self);
        return;
    }
}

PyObject* gc_phase(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    HandlerState& st = handler_state();
    if (nargs >= 1 && PyUnicode_Check(args[0])) {
        if (PyUnicode_CompareWithASCIIString(args[0], "start") == 0) {
            keep_gc_callback_first();
            static thread_local pid_t tid = 0;
            if (tid == 0) tid = current_tid();
            PyThreadState* ts = PyThreadState_Get();
            st.gc_frame.store(compat::current_frame(ts), std::memory_order_release);
            st.gc_tid.store(tid, std::memory_order_release);
        } else {
            st.gc_tid.store(0, std::memory_order_release);
        }
    }
    Py_RETURN_NONE;
}

PyMethodDef g_gc_phase_def = {"_spprof_gc_phase", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(gc_phase)),
                              METH_FASTCALL, "spprof: marks garbage collections for the sampler."};

PyObject* gc_callbacks_list() {
    // New reference to gc.callbacks, or nullptr (no exception) when absent.
    PyObject* gc = PyImport_ImportModule("gc");
    PyObject* list = gc ? PyObject_GetAttrString(gc, "callbacks") : nullptr;
    Py_XDECREF(gc);
    if (list == nullptr || !PyList_Check(list)) {
        PyErr_Clear();
        Py_XDECREF(list);
        return nullptr;
    }
    return list;
}
}  // namespace

bool Session::install_gc_callback() {
    if (gc_callback_ == nullptr) {
        gc_callback_ = PyCFunction_New(&g_gc_phase_def, nullptr);
        if (gc_callback_ == nullptr) return false;
    }
    PyObject* list = gc_callbacks_list();
    if (list == nullptr) return true;  // no gc.callbacks: GC simply is not marked
    int rc = PyList_Insert(list, 0, gc_callback_);
    if (rc < 0) {
        Py_DECREF(list);
        return false;
    }
    g_gc_list = list;  // our reference
    g_gc_self = gc_callback_;
    gc_callback_installed_ = true;
    return true;
}

void Session::keep_gc_callback() {
    // The program may edit gc.callbacks at any time (clear it, remove our
    // entry, replace the list's contents), also during a collection, when
    // our "stop" would then never come. Not in the list any more: whatever
    // collection we saw start is not ours to mark, and the entry goes back
    // in front. GIL held (service thread).
    if (!gc_callback_installed_ || g_gc_list == nullptr || !PyList_Check(g_gc_list)) return;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(g_gc_list); ++i) {
        if (PyList_GET_ITEM(g_gc_list, i) == gc_callback_) return;
    }
    handler_state().gc_tid.store(0, std::memory_order_release);
    if (PyList_Insert(g_gc_list, 0, gc_callback_) < 0) PyErr_Clear();
}

void Session::remove_gc_callback() {
    handler_state().gc_tid.store(0);
    if (!gc_callback_installed_) return;
    gc_callback_installed_ = false;
    Py_CLEAR(g_gc_list);
    g_gc_self = nullptr;
    PyObject* list = gc_callbacks_list();
    if (list == nullptr) return;
    for (Py_ssize_t i = PyList_GET_SIZE(list) - 1; i >= 0; --i) {
        if (PyList_GET_ITEM(list, i) == gc_callback_) {
            if (PyList_SetSlice(list, i, i + 1, nullptr) < 0) PyErr_Clear();
            break;
        }
    }
    Py_DECREF(list);
}

void Session::on_code_death(PyCodeObject* code) {
    HandlerState& st = handler_state();
    uint64_t epoch = st.code_epoch.fetch_add(1, std::memory_order_acq_rel) + 1;
    size_t budget = resolver_budget();
    size_t used = aggregator_.approx_bytes() + codes_.approx_bytes() + resolver_.approx_bytes();
    codes_.on_code_death(code, epoch, used < budget ? budget - used : 0);
}

bool Session::start(const StartOptions& options) {
    if (active_) {
        PyErr_SetString(PyExc_RuntimeError, "the profiler is already running; call stop() first");
        return false;
    }
    HandlerState& st = handler_state();
    exec_pending_.store(false);
    if (unbuilt_) {
        unbuilt_ = false;  // a result nobody asked for again: dropped
        release_everything();
    }
    if (names_.threading == nullptr) {
        names_.threading = PyUnicode_InternFromString("threading");
        names_.active = PyUnicode_InternFromString("_active");
        names_.native_id = PyUnicode_InternFromString("_native_id");
        names_.name = PyUnicode_InternFromString("_name");
        if (!names_.threading || !names_.active || !names_.native_id || !names_.name) {
            Py_CLEAR(names_.threading);
            Py_CLEAR(names_.active);
            Py_CLEAR(names_.native_id);
            Py_CLEAR(names_.name);
            return false;
        }
    }
    options_ = options;
    aggregator_.clear();
    codes_.clear();
    resolver_.clear();
    thread_names_.clear();
    resolved_samples_ = 0;
    tick_failures_ = 0;
    paused_total_ns_ = 0;
    paused_at_ns_ = 0;
    names_seen_created_ = ~uint64_t{0};
    names_updated_ns_ = 0;
    service_cpu_ns_.store(0);
    service_wakes_.store(0);
    service_gil_ticks_.store(0);
    warned_timer_failure_ = false;
    warned_blocked_ = false;
    warned_descriptors_ = false;
    descriptors_checked_ns_ = 0;
    blocked_check_cursor_ = 0;
    sigprof_blocked_.clear();
    health_seen_.clear();
    samples_by_thread_.clear();

    // The raw-sample buffer takes at most a quarter of the memory budget
    // (and 8 MiB): it only has to hold what arrives between two drains.
    size_t budget = std::min<size_t>(options.memory_limit_bytes / 4, 8u << 20);
    size_t slots = std::max<size_t>(16, budget / sizeof(SampleSlot));
    if (!buffer_.init(slots)) {
        set_profiler_error(std::string("cannot allocate the sample buffer: ") + strerror(errno));
        return false;
    }
    warned_memory_ = false;
    st.counters.reset();
    st.buffer = &buffer_;
    st.wake_word.store(0);
    st.wake_enabled.store(true);
    st.wake_threshold = std::max<size_t>(1, buffer_.capacity() / 4);
    st.wake_pending.store(false);
    st.paused.store(false);
    uint32_t session = ++session_counter_;
    if ((session & 0xffffu) == 0) session = ++session_counter_;  // 0 means "not ours" in signals
    st.session.store(session);

    ThreadRegistry::Backend backend = ThreadRegistry::Backend::timer_create;
    if (options.backend != StartOptions::Backend::timer_create) {
        std::string why;
        if (perf_events_available(&why)) {
            backend = ThreadRegistry::Backend::perf_event;
        } else if (options.backend == StartOptions::Backend::perf_event) {
            release_everything();
            set_profiler_error("backend='perf_event' is not available here: " + why +
                               ". Use backend='timer_create' (or 'auto', which falls back to it)");
            return false;
        }
    }
    st.main_interp = PyThreadState_GetInterpreter(PyThreadState_Get());
    st.gc_tid.store(0);
    st.gc_frame.store(nullptr);

    if (!compat::install_code_death_hook(code_death_trampoline)) {
        // Only a full set of code watchers fails here.
        std::string detail = "no code watcher is free";
        if (PyErr_Occurred()) PyErr_Clear();  // ours: replaced by a precise error below
        release_everything();
        set_profiler_error("cannot watch code objects for the session (" + detail +
                           "; CPython allows 8 per interpreter and other tools use them too)");
        return false;
    }
    if (!install_gc_callback()) {
        compat::remove_code_death_hook();
        release_everything();
        return false;
    }
    std::string error;
    if (!install_signal_handler(options.take_over_sigprof, &error)) {
        compat::remove_code_death_hook();
        remove_gc_callback();
        release_everything();
        set_profiler_error(error);
        return false;
    }
    start_mono_ns_ = monotonic_now_ns();
    start_process_cpu_ns_ = process_cpu_now_ns();
    registry_.begin(session, options.interval_ns, 0, backend);
    st.active.store(true, std::memory_order_seq_cst);
    active_ = true;

    // The thread that starts the session first: when timers are scarce
    // (RLIMIT_SIGPENDING, descriptors), the one that asked gets one.
    registry_.register_thread(current_tid(), compat::thread_state_unique_id(PyThreadState_Get()));
    registry_.sync_with_interpreter(PyThreadState_GetInterpreter(PyThreadState_Get()));
    if (registry_.size() == 0) {
        RegistryCounters c = registry_.counters();
        std::string message =
            c.last_create_errno
                ? "cannot create any sampling timer, so nothing can be profiled: " +
                      timer_failure_message(c.last_create_errno)
                : std::string("no Python thread was found to profile");
        PyObject* discarded = stop();
        Py_XDECREF(discarded);
        PyErr_Clear();
        set_profiler_error(message);
        return false;
    }

    if (options.warning_category != nullptr && g_warning_category == nullptr) {
        g_warning_category = Py_NewRef(options.warning_category);  // kept for pending calls
    }
    update_thread_names();
    check_health();

    int err = start_service_thread();
    if (err != 0) {
        PyObject* discarded = stop();
        Py_XDECREF(discarded);
        PyErr_Clear();
        set_profiler_error(std::string("cannot start the service thread: ") + strerror(err));
        return false;
    }
    if (flush_warnings() != 0) {
        // Interrupted (Ctrl-C) while warning: the program's exception wins
        // and the session does not stay running behind its back.
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject* discarded = stop();
        Py_XDECREF(discarded);
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return false;
    }
    return true;
}

std::string Session::timer_failure_message(int err) const {
    std::string message = std::string("timer_create failed: ") + strerror(err);
    if (err == EAGAIN) {
        rlimit lim{};
        getrlimit(RLIMIT_SIGPENDING, &lim);
        std::string cur = lim.rlim_cur == RLIM_INFINITY ? "unlimited" : std::to_string(lim.rlim_cur);
        message +=
            ". Each sampled thread needs one POSIX timer, and the number of timers is capped "
            "by the limit on queued signals, RLIMIT_SIGPENDING (currently " +
            cur +
            "). Raise it before starting Python with `ulimit -i <larger number>` (or "
            "resource.setrlimit(resource.RLIMIT_SIGPENDING, ...) up to the hard limit)";
    } else if (err == EPERM) {
        message += ". The system (seccomp or a security policy) refuses POSIX CPU timers here";
    }
    return message;
}

void Session::warn(const std::string& message) {
    {
        std::lock_guard<std::mutex> lock(warn_mu_);
        if (pending_warnings_.size() >= 64) return;  // a bounded queue: the first ones matter
        pending_warnings_.push_back(message);
    }
    if (pthread_equal(pthread_self(), service_thread_) && service_running_ &&
        !flush_scheduled_.exchange(true)) {
        // The service thread runs no Python code: the main thread issues it
        // at its next check for pending calls.
        if (Py_AddPendingCall(&Session::pending_flush, nullptr) != 0) flush_scheduled_.store(false);
    }
}

int Session::pending_flush(void*) {
    instance().flush_scheduled_.store(false);
    return flush_warnings();
}

int Session::flush_warnings() {
    Session& s = instance();
    std::vector<std::string> messages;
    {
        std::lock_guard<std::mutex> lock(s.warn_mu_);
        messages.swap(s.pending_warnings_);
    }
    PyObject* category = g_warning_category ? g_warning_category : PyExc_RuntimeWarning;
    for (const std::string& m : messages) {
        if (PyErr_WarnEx(category, m.c_str(), 1) == 0) continue;
        if (PyErr_ExceptionMatches(PyExc_Exception)) {
            PyErr_Clear();  // our warning, made an error by a filter: never break the program for it
            continue;
        }
        return -1;  // KeyboardInterrupt, SystemExit...: the program's, propagate
    }
    return 0;
}

namespace {
// Whether thread `tid` currently blocks SIGPROF (its SigBlk mask in
// /proc/self/task/<tid>/status). -1 when the thread is gone.
// Threads in this process: procfs gives a task directory 2 + that many
// links. One stat() is far cheaper than a GIL hand-off, so the service
// thread checks it on every poll. -1 when procfs is not there (then only
// the periodic scans find new threads).
long process_thread_count() {
    struct stat sb;
    if (stat("/proc/self/task", &sb) != 0) return -1;
    return static_cast<long>(sb.st_nlink);
}

int thread_blocks_sigprof(pid_t tid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", static_cast<int>(tid));
    FILE* f = fopen(path, "re");
    if (f == nullptr) return -1;
    char line[256];
    int result = 0;
    while (fgets(line, sizeof line, f) != nullptr) {
        unsigned long long mask = 0;
        if (sscanf(line, "SigBlk: %llx", &mask) == 1) {
            result = (mask >> (SIGPROF - 1)) & 1u ? 1 : 0;
            break;
        }
    }
    fclose(f);
    return result;
}
}  // namespace

void Session::check_health() {
    RegistryCounters c = registry_.counters();
    if (c.create_failures > 0 && !warned_timer_failure_) {
        warned_timer_failure_ = true;
        warn("spprof: could not create a sampling timer for " + std::to_string(c.create_failures) +
             " thread(s), which will not be sampled (the others still are). " +
             timer_failure_message(c.last_create_errno) + ".");
    }
    // A thread that blocks SIGPROF never runs our handler: its signal stays
    // pending and later expirations become overruns of it. Nothing hangs,
    // but its CPU time is missing from the profile, so say so. Checking
    // every thread every tick would cost too much with thousands of
    // threads: look at a few per tick, in rotation. Reading a thread's
    // /proc status is the expensive part (tens of microseconds), so only
    // a thread that burnt CPU worth two intervals since the last look and
    // produced no sample meanwhile is read; an idle thread loses nothing,
    // and a sampled one does not block the signal.
    if (handler_state().paused.load()) return;
    std::vector<pid_t> tids = registry_.thread_ids();
    if (tids.empty()) return;
    std::sort(tids.begin(), tids.end());
    if (health_seen_.size() > 2 * tids.size() + 64 || samples_by_thread_.size() > 2 * tids.size() + 64) {
        // Forget threads that are gone (tids are reused, so they must not
        // inherit anything).
        auto gone = [&](const auto& kv) { return !std::binary_search(tids.begin(), tids.end(), kv.first); };
        std::erase_if(health_seen_, gone);
        std::erase_if(samples_by_thread_, gone);
        std::erase_if(sigprof_blocked_, gone);
    }
    constexpr size_t kPerTick = 8;
    for (size_t n = 0; n < std::min(kPerTick, tids.size()); ++n) {
        pid_t tid = tids[(blocked_check_cursor_ + n) % tids.size()];
        timespec ts;
        if (clock_gettime(thread_cpu_clock(tid), &ts) != 0) continue;  // gone
        int64_t cpu = int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
        uint64_t samples = samples_by_thread_[tid];
        auto [seen, first] = health_seen_.try_emplace(tid, HealthSeen{cpu, samples});
        bool busy = !first && cpu - seen->second.cpu_ns >= 2 * options_.interval_ns;
        bool sampled = samples != seen->second.samples;
        seen->second = HealthSeen{cpu, samples};
        if (sampled) sigprof_blocked_.erase(tid);
        if (!busy || sampled) continue;
        int blocked = thread_blocks_sigprof(tid);
        if (blocked == 1) {
            // Libraries block every signal for a moment (around fork, in
            // posix_spawn): only a block seen on two checks in a row counts.
            if (++sigprof_blocked_[tid] >= 2 && !warned_blocked_) {
                warned_blocked_ = true;
                auto name = thread_names_.find(tid);
                warn("spprof: thread " + (name != thread_names_.end() ? "'" + name->second + "' " : std::string()) +
                     "(tid " + std::to_string(tid) +
                     ") blocks SIGPROF, so it contributes no samples while it does. "
                     "Unblock SIGPROF in that thread to profile it.");
            }
        } else {
            sigprof_blocked_.erase(tid);
        }
    }
    blocked_check_cursor_ = (blocked_check_cursor_ + kPerTick) % tids.size();
}

void* Session::service_main(void* arg) {
    static_cast<Session*>(arg)->service_loop();
    return nullptr;
}

void Session::service_loop() {
    prepare_thread_for_exceptions();
    service_tid_.store(current_tid());
    // Before this thread first holds a thread state (next line): a timer
    // made for it by a scan would sample a thread that runs no Python code.
    registry_.ignore_thread(current_tid());
    PyGILState_STATE gil = PyGILState_Ensure();
    PyThreadState* tstate = PyEval_SaveThread();
    long threads_seen = process_thread_count();
    int64_t last_full_ns = monotonic_now_ns();
    int64_t last_change_ns = last_full_ns;
    // Threads started right after start() may already be in the first count
    // read above, so the first polls take the GIL as after a change.
    int hot = kHotTicks;
    while (!service_stop_.load(std::memory_order_acquire)) {
        bool busy = monotonic_now_ns() - last_change_ns < kBusyWindowNs;
        // Woken early when the buffer is a quarter full.
        bool work = wakeup_wait(&handler_state().wake_word, busy ? kBusyPollMs : kSteadyPollMs);
        service_wakes_.fetch_add(1, std::memory_order_relaxed);
        if (service_stop_.load(std::memory_order_acquire)) break;
        long threads_now = process_thread_count();
        if (threads_now != threads_seen) {
            threads_seen = threads_now;
            last_change_ns = monotonic_now_ns();
            hot = kHotTicks;
        }
        if (hot > 0) {
            --hot;
            work = true;
        }
        int64_t now = monotonic_now_ns();
        if (!work && now - last_full_ns < kFullTickNs) continue;
        last_full_ns = now;
        service_gil_ticks_.fetch_add(1, std::memory_order_relaxed);
        handler_state().wake_pending.store(false, std::memory_order_release);
        PyEval_RestoreThread(tstate);
        service_tick(false);
        tstate = PyEval_SaveThread();
    }
    service_cpu_ns_.fetch_add(clock_ns(CLOCK_THREAD_CPUTIME_ID));
    PyEval_RestoreThread(tstate);
    PyGILState_Release(gil);
}

void Session::service_tick(bool force_names) {
    // Nothing thrown here may reach the service thread's top (that would
    // terminate the program): on allocation failure the tick is cut short
    // and the next one tries again; samples are dropped and counted.
    try {
        service_tick_unsafe(force_names);
    } catch (const std::exception&) {
        ++tick_failures_;
        if (PyErr_Occurred()) PyErr_Clear();  // ours, half-raised by the failed step
    }
}

void Session::service_tick_unsafe(bool force_names) {
    if (!active_) return;
    HandlerState& st = handler_state();
    if (exec_pending_.load() && monotonic_now_ns() - exec_at_ns_ > kExecGraceNs) {
        resume_after_failed_exec();  // still here: the exec failed
    }
    // The service thread itself has a thread state (it holds the GIL here)
    // but must not be sampled.
    int64_t now_ns = monotonic_now_ns();
    if (now_ns - descriptors_checked_ns_ > kDescriptorCheckNs) {
        // The program may close or replace any descriptor (a daemonizer's
        // closerange, dup2): ours are checked, never touched if not ours,
        // and their threads get new timers in the scan below.
        descriptors_checked_ns_ = now_ns;
        if (registry_.drop_lost_perf_timers() > 0 && !warned_descriptors_) {
            warned_descriptors_ = true;
            warn("spprof: the program closed or replaced descriptors of spprof's sampling "
                 "timers (perf_event); spprof left them alone and gave the threads new timers.");
        }
    }
    registry_.sync_with_interpreter(PyThreadState_GetInterpreter(PyThreadState_Get()));
    keep_gc_callback();
    RegistryCounters c = registry_.counters();
    if (force_names || c.timers_created != names_seen_created_ ||
        monotonic_now_ns() - names_updated_ns_ > kNamesRefreshNs) {
        names_seen_created_ = c.timers_created;
        update_thread_names();
    }
    resolved_samples_ += resolver_.drain(buffer_, codes_, aggregator_, resolver_budget(), &samples_by_thread_);
    warn_about_memory();
    check_health();
    // Tombstones older than every capture that can still be in flight are
    // no longer needed: read the epoch, then confirm nothing is in flight
    // and nothing is left to resolve.
    uint64_t epoch = st.code_epoch.load(std::memory_order_seq_cst);
    if (st.inflight.load(std::memory_order_seq_cst) == 0 && buffer_.empty_for_consumer()) {
        codes_.prune_tombstones(epoch);
    }
}

namespace {
// An attribute stored on a plain object, read without running Python code:
// only through the generic attribute lookup, and only if the class does not
// define it as a descriptor (a property would run code). New reference or
// nullptr (never an exception left set).
PyObject* plain_attribute(PyObject* obj, PyObject* name) {
    PyTypeObject* type = Py_TYPE(obj);
    if (type->tp_getattro != PyObject_GenericGetAttr) return nullptr;
    PyObject* descr = _PyType_Lookup(type, name);  // borrowed, no code runs
    if (descr != nullptr && Py_TYPE(descr)->tp_descr_get != nullptr) return nullptr;
    PyObject* value = PyObject_GenericGetAttr(obj, name);
    if (value == nullptr) PyErr_Clear();  // our own lookup's AttributeError
    return value;
}
}  // namespace

size_t Session::thread_state_bytes() const {
    return (samples_by_thread_.size() + health_seen_.size() + sigprof_blocked_.size() +
            thread_names_.size()) * 96;
}

size_t Session::memory_bytes() const {
    return buffer_.bytes() + aggregator_.approx_bytes() + codes_.approx_bytes() +
           resolver_.approx_bytes() + thread_state_bytes();
}

size_t Session::resolver_budget() const {
    // A reserve for what grows between drains without a check of its own
    // (per-thread records of new threads, tombstones of dying code).
    size_t reserve = std::min<size_t>(options_.memory_limit_bytes / 32, 64u << 10);
    size_t fixed = buffer_.bytes() + thread_state_bytes() + reserve;
    return options_.memory_limit_bytes > fixed ? options_.memory_limit_bytes - fixed : 0;
}

void Session::warn_about_memory() {
    if (warned_memory_) return;
    uint64_t dropped = aggregator_.dropped_samples();
    if (dropped == 0) return;
    warned_memory_ = true;
    char limit[64];
    snprintf(limit, sizeof limit, "%.3g MB", static_cast<double>(options_.memory_limit_bytes) / (1 << 20));
    std::string message = std::string("spprof: the memory limit of ") + limit +
                          " is reached; samples from now on are dropped (counted in "
                          "stats().dropped_samples). Raise memory_limit_mb to keep them";
    if (resolver_.allocation_failures() > 0) {
        message = "spprof: out of memory while storing samples; samples that could not be "
                  "stored are dropped (counted in stats().dropped_samples)";
    }
    warn(message);
}

void Session::update_thread_names() {
    // Names come from threading's table of running threads. This runs on the
    // service thread too, so it must not run Python code or create container
    // objects (that could start a garbage collection there): plain dict and
    // attribute reads only, with names interned at start().
    if (names_.active == nullptr) return;
    PyObject* modules = PyImport_GetModuleDict();  // borrowed
    PyObject* threading = modules ? PyDict_GetItemWithError(modules, names_.threading) : nullptr;
    if (threading == nullptr || !PyModule_Check(threading)) {
        PyErr_Clear();
        return;
    }
    PyObject* active = PyDict_GetItemWithError(PyModule_GetDict(threading), names_.active);
    if (active == nullptr || !PyDict_CheckExact(active)) {
        PyErr_Clear();
        return;
    }
    Py_INCREF(active);
    PyObject *key, *thread;
    Py_ssize_t pos = 0;
    while (PyDict_Next(active, &pos, &key, &thread)) {
        PyObject* tid_obj = plain_attribute(thread, names_.native_id);
        PyObject* name_obj = tid_obj ? plain_attribute(thread, names_.name) : nullptr;
        if (tid_obj != nullptr && name_obj != nullptr && PyLong_CheckExact(tid_obj) &&
            PyUnicode_Check(name_obj)) {
            long tid = PyLong_AsLong(tid_obj);
            Py_ssize_t n = 0;
            const char* name = PyUnicode_AsUTF8AndSize(name_obj, &n);
            if (tid > 0 && name != nullptr) {
                thread_names_[static_cast<pid_t>(tid)].assign(name, static_cast<size_t>(n));
            }
            if (PyErr_Occurred()) PyErr_Clear();  // our own conversion's error
        }
        Py_XDECREF(tid_obj);
        Py_XDECREF(name_obj);
    }
    Py_DECREF(active);
    names_updated_ns_ = monotonic_now_ns();
}

bool Session::paused() const { return active_ && handler_state().paused.load(); }

bool Session::pause() {
    if (!active_ || handler_state().paused.load()) return false;
    // Disarm first: a signal already queued is discarded by the handler.
    // A handler that passed the check before may still be reading a
    // perf_event grid, which disarming moves: wait for it.
    handler_state().paused.store(true);
    wait_for_handlers_to_finish();
    if (!exec_pending_.load()) registry_.set_interval(0);
    paused_at_ns_ = monotonic_now_ns();
    return true;
}

void Session::before_exec() {
    if (!active_ || exec_pending_.load()) return;
    exec_pending_.store(true);
    exec_at_ns_ = monotonic_now_ns();
    // No timer of ours fires again (threads found meanwhile get disarmed
    // ones), then nothing of ours is pending and the program's disposition
    // is in place. Our POSIX timers and perf_event descriptors (close on
    // exec) do not survive execve.
    registry_.set_interval(0);
    suspend_signal_handler_for_exec();
}

void Session::resume_after_failed_exec() {
    if (!exec_pending_.load()) return;
    resume_signal_handler_after_exec();
    exec_pending_.store(false);
    if (!handler_state().paused.load()) registry_.set_interval(options_.interval_ns);
}

bool Session::resume() {
    if (!active_ || !handler_state().paused.load()) return false;
    if (!exec_pending_.load()) registry_.set_interval(options_.interval_ns);
    paused_total_ns_ += monotonic_now_ns() - paused_at_ns_;
    handler_state().paused.store(false);
    return true;
}

int Session::start_service_thread() {
    service_stop_.store(false);
    service_tid_.store(0);
    // A small stack: the service thread needs little, and a default 8 MiB
    // reservation can fail under an address-space limit.
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    int err = pthread_create(&service_thread_, &attr, &Session::service_main, this);
    pthread_attr_destroy(&attr);
    if (err == 0) service_running_ = true;
    return err;
}

void Session::stop_service_thread() {
    if (!service_running_) return;
    service_stop_.store(true, std::memory_order_release);
    wakeup_signal(&handler_state().wake_word);
    Py_BEGIN_ALLOW_THREADS pthread_join(service_thread_, nullptr);
    Py_END_ALLOW_THREADS service_running_ = false;
    service_tid_.store(0);
}

void Session::before_fork() {
    // os.fork() warns (3.12+) when the process has other threads, counting
    // them in /proc: ours would make every fork of a single-threaded program
    // warn. The service thread is stopped across the fork; sampling goes on
    // meanwhile (the handler does not need it), the buffer waits.
    if (!active_ || !service_running_) return;
    stop_service_thread();
    service_paused_for_fork_ = true;
}

void Session::after_fork_in_parent() {
    if (!active_ || !service_paused_for_fork_) return;
    // Not from this hook: 3.13 counts the process's threads for its warning
    // after the fork hooks ran. The main thread restarts it at its next
    // check for pending calls, or any spprof call that comes first.
    if (Py_AddPendingCall(&Session::restart_service_pending, nullptr) != 0) resume_service_after_fork();
}

int Session::restart_service_pending(void*) {
    instance().resume_service_after_fork();
    return 0;
}

void Session::resume_service_after_fork() {
    if (!active_ || !service_paused_for_fork_) return;
    service_paused_for_fork_ = false;
    if (start_service_thread() != 0) {
        warn("spprof: cannot restart the service thread after fork(); samples are resolved "
             "only at stop() from now on (and dropped when the buffer is full)");
    }
}

PyObject* Session::stop() {
    if (!active_ && unbuilt_) return finish_result();
    if (!active_) {
        PyErr_SetString(PyExc_RuntimeError, "the profiler is not running; call start() first");
        return nullptr;
    }
    HandlerState& st = handler_state();
    stop_service_thread();
    resume_after_failed_exec();  // our handler back, so the restore below finds it
    service_paused_for_fork_ = false;
    update_thread_names();
    if (st.paused.load()) paused_total_ns_ += monotonic_now_ns() - paused_at_ns_;
    int64_t end_mono = monotonic_now_ns();
    int64_t process_cpu = process_cpu_now_ns() - start_process_cpu_ns_;

    // Order matters: no new samples, no timers, no pending signals, no
    // handler running; only then put the previous disposition back.
    st.active.store(false, std::memory_order_seq_cst);
    active_ = false;  // from here on nothing may register threads again
    registry_.end();
    restore_signal_handler();
    wait_for_handlers_to_finish();
    resolved_samples_ += resolver_.drain(buffer_, codes_, aggregator_, resolver_budget());
    warn_about_memory();
    compat::remove_code_death_hook();
    remove_gc_callback();

    stopped_duration_ns_ = end_mono - start_mono_ns_;
    stopped_process_cpu_ns_ = process_cpu;
    unbuilt_ = true;
    return finish_result();
}

PyObject* Session::finish_result() {
    // The session has ended (no timers, no handler, nothing pending); its
    // samples are turned into the result dict. Out of memory, they are
    // kept (unbuilt_) and the next stop() tries again.
    PyObject* result = nullptr;
    try {
        result = build_result();
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    }
    if (result != nullptr) {
        PyObject* extra = Py_BuildValue("{s:L,s:L,s:L}", "duration_ns",
                                        static_cast<long long>(stopped_duration_ns_),
                                        "process_cpu_ns", static_cast<long long>(stopped_process_cpu_ns_),
                                        "paused_ns", static_cast<long long>(paused_total_ns_));
        if (extra == nullptr || PyDict_Update(result, extra) < 0) Py_CLEAR(result);
        Py_XDECREF(extra);
    }
    if (result == nullptr && PyErr_ExceptionMatches(PyExc_MemoryError)) {
        return nullptr;  // kept for a retry (has_unbuilt_result)
    }
    unbuilt_ = false;
    release_everything();
    if (flush_warnings() != 0) Py_CLEAR(result);
    return result;
}

void Session::release_everything() {
    HandlerState& st = handler_state();
    st.active.store(false);
    wait_for_handlers_to_finish();
    st.buffer = nullptr;
    st.wake_enabled.store(false);
    active_ = false;
    buffer_.release_memory();
    codes_.clear();
    resolver_.clear();
    aggregator_.clear();
    thread_names_.clear();
}

namespace {
PyObject* int64_bytes(const std::vector<int64_t>& v) {
    return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(v.data()),
                                     static_cast<Py_ssize_t>(v.size() * sizeof(int64_t)));
}

// Steals `value`; false (exception set) if it is null or cannot be stored.
// Keys are interned once and kept: PyDict_SetItemString would intern a new
// key string on every call, and once the result dict is gone the interned
// table would drop it again; the churn makes the interpreter's table of
// interned strings grow and shrink with every session.
bool put(PyObject* dict, const char* key, PyObject* value) {
    if (value == nullptr) return false;
    // Never destroyed (like the session): the strings stay referenced
    // until the process ends, so leak checkers see them as reachable.
    static auto* keys = new std::unordered_map<const char*, PyObject*>();  // GIL held
    PyObject*& k = (*keys)[key];
    if (k == nullptr) k = PyUnicode_InternFromString(key);
    int rc = k != nullptr ? PyDict_SetItem(dict, k, value) : -1;
    Py_DECREF(value);
    return rc == 0;
}
}  // namespace

PyObject* Session::stats() {
    resume_service_after_fork();
    if (active_) service_tick(false);
    if (flush_warnings() != 0) return nullptr;
    HandlerState& st = handler_state();
    HandlerCounters& c = st.counters;
    RegistryCounters rc = registry_.counters();
    pid_t self = service_tid_.load();
    int64_t service_cpu = service_cpu_ns_.load();  // of service threads that ended
    if (active_ && service_running_ && self != 0) {
        clockid_t clock;
        timespec ts;
        if (pthread_getcpuclockid(service_thread_, &clock) == 0 && clock_gettime(clock, &ts) == 0) {
            service_cpu += int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
        }
    }
    int64_t now = monotonic_now_ns();
    int64_t paused_ns = paused_total_ns_ + (paused() ? now - paused_at_ns_ : 0);
    PyObject* result = Py_BuildValue(
        "{s:O,s:O,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:n,s:K,s:K,"
        "s:L,s:L,s:L,s:L,s:L,s:n,s:n,s:n,s:K,s:K,s:K}",
        "active", active_ ? Py_True : Py_False, "paused", paused() ? Py_True : Py_False,
        "signals", c.signals.load(), "captured_samples", c.samples.load(), "collected_samples",
        static_cast<unsigned long long>(aggregator_.samples().size()), "buffer_dropped",
        c.dropped.load(), "buffer_dropped_weight", c.dropped_weight.load(), "memory_dropped",
        static_cast<unsigned long long>(aggregator_.dropped_samples()), "memory_dropped_weight",
        static_cast<unsigned long long>(aggregator_.dropped_weight()), "timer_overruns",
        c.overruns.load(), "overruns_at_delete", static_cast<unsigned long long>(rc.overruns_at_delete),
        "sigprof_blocked_threads", static_cast<unsigned long long>(std::count_if(
            sigprof_blocked_.begin(), sigprof_blocked_.end(), [](const auto& kv) { return kv.second >= 2; })), "no_thread_state", c.no_thread_state.load(),
        "walk_errors", c.walk_errors.load(), "truncated_stacks", c.truncated.load(),
        "paused_signals", c.paused_signals.load(), "foreign_signals", c.foreign_signals.load(),
        "stale_signals", c.stale_signals.load(), "timers_created",
        static_cast<unsigned long long>(rc.timers_created), "timers_deleted",
        static_cast<unsigned long long>(rc.timers_deleted), "registered_threads",
        static_cast<Py_ssize_t>(active_ ? registry_.size() : 0), "timer_create_failures",
        static_cast<unsigned long long>(rc.create_failures), "last_create_errno",
        static_cast<unsigned long long>(rc.last_create_errno), "handler_ns",
        static_cast<long long>(c.handler_ns.load()), "service_cpu_ns",
        static_cast<long long>(service_cpu), "duration_ns",
        static_cast<long long>(active_ ? now - start_mono_ns_ : 0), "process_cpu_ns",
        static_cast<long long>(active_ ? process_cpu_now_ns() - start_process_cpu_ns_ : 0),
        "paused_ns", static_cast<long long>(paused_ns), "buffer_capacity",
        static_cast<Py_ssize_t>(buffer_.capacity()), "memory_bytes",
        static_cast<Py_ssize_t>(memory_bytes()),
        "interval_ns", static_cast<Py_ssize_t>(options_.interval_ns), "service_wakes",
        static_cast<unsigned long long>(service_wakes_.load()), "service_gil_ticks",
        static_cast<unsigned long long>(service_gil_ticks_.load()), "recovered_walks",
        c.recovered_walks.load());
    if (result == nullptr) return nullptr;
    const char* backend = registry_.backend() == ThreadRegistry::Backend::perf_event ? "perf_event"
                                                                                      : "timer_create";
    bool ok = put(result, "backend", PyUnicode_FromString(backend)) &&
              put(result, "perf_timers_created", PyLong_FromUnsignedLongLong(rc.perf_timers_created)) &&
              put(result, "perf_fallbacks", PyLong_FromUnsignedLongLong(rc.perf_fallbacks)) &&
              put(result, "perf_descriptors_lost", PyLong_FromUnsignedLongLong(rc.perf_descriptors_lost)) &&
              put(result, "perf_include_kernel", PyBool_FromLong(perf_events_include_kernel())) &&
              put(result, "gc_samples", PyLong_FromUnsignedLongLong(c.gc_samples.load())) &&
              put(result, "subinterpreter_samples",
                  PyLong_FromUnsignedLongLong(c.subinterpreter_samples.load())) &&
              put(result, "early_signals", PyLong_FromUnsignedLongLong(c.early_signals.load())) &&
              put(result, "allocation_failures",
                  PyLong_FromUnsignedLongLong(resolver_.allocation_failures() + tick_failures_ +
                                              codes_.lost_deaths())) &&
              put(result, "memory_limit_bytes", PyLong_FromSize_t(options_.memory_limit_bytes));
    if (!ok) Py_CLEAR(result);
    return result;
}

PyObject* Session::build_result() {
    PyObject* result = stats();
    if (result == nullptr) return nullptr;
    const auto& strings = aggregator_.strings();
    const auto& frames = aggregator_.frames();
    const auto& stacks = aggregator_.stacks();
    const auto& samples = aggregator_.samples();

    PyObject* py_strings = PyList_New(static_cast<Py_ssize_t>(strings.size()));
    for (size_t i = 0; py_strings && i < strings.size(); ++i) {
        PyObject* s = PyUnicode_DecodeUTF8(strings[i].data(), static_cast<Py_ssize_t>(strings[i].size()),
                                           "replace");
        if (s == nullptr) {
            Py_CLEAR(py_strings);
            break;
        }
        PyList_SET_ITEM(py_strings, static_cast<Py_ssize_t>(i), s);
    }
    std::vector<int64_t> frame_cols;
    frame_cols.reserve(frames.size() * 3);
    for (const FrameKey& f : frames) {
        frame_cols.push_back(f.name);
        frame_cols.push_back(f.file);
        frame_cols.push_back(f.line);
    }
    std::vector<int64_t> stack_cols;
    stack_cols.reserve(stacks.size() * 2);
    for (const auto& [parent, frame] : stacks) {
        stack_cols.push_back(parent);
        stack_cols.push_back(frame);
    }
    // Producers on different threads interleave in the buffer; export in
    // capture-time order (each thread's own samples are already ordered).
    std::vector<SampleRecord> sorted(samples.begin(), samples.end());
    std::stable_sort(sorted.begin(), sorted.end(), [](const SampleRecord& a, const SampleRecord& b) {
        return a.timestamp_ns < b.timestamp_ns;
    });
    std::vector<int64_t> ts, tid, stack, weight;
    ts.reserve(samples.size());
    tid.reserve(samples.size());
    stack.reserve(samples.size());
    weight.reserve(samples.size());
    for (const SampleRecord& r : sorted) {
        ts.push_back(r.timestamp_ns);
        tid.push_back(r.tid);
        stack.push_back(r.stack);
        weight.push_back(r.weight);
    }
    PyObject* names = PyDict_New();
    for (const auto& [t, name] : thread_names_) {
        if (names == nullptr) break;
        PyObject* k = PyLong_FromLong(t);
        PyObject* v = PyUnicode_DecodeUTF8(name.data(), static_cast<Py_ssize_t>(name.size()), "replace");
        if (k == nullptr || v == nullptr || PyDict_SetItem(names, k, v) < 0) Py_CLEAR(names);
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    bool ok = put(result, "strings", py_strings) && put(result, "frames", int64_bytes(frame_cols)) &&
              put(result, "stacks", int64_bytes(stack_cols)) &&
              put(result, "timestamps", int64_bytes(ts)) && put(result, "thread_ids", int64_bytes(tid)) &&
              put(result, "stack_ids", int64_bytes(stack)) && put(result, "weights", int64_bytes(weight)) &&
              put(result, "thread_names", names) &&
              put(result, "start_monotonic_ns", PyLong_FromLongLong(start_mono_ns_));
    if (!ok) Py_CLEAR(result);
    return result;
}

int Session::register_current_thread() {
    if (!active_) return 0;
    resume_service_after_fork();
    PyThreadState* ts = PyThreadState_Get();
    return registry_.register_thread(current_tid(), compat::thread_state_unique_id(ts)) ? 1 : 0;
}

int Session::unregister_current_thread() {
    if (!active_) return 0;
    return registry_.unregister_thread(current_tid()) ? 1 : 0;
}

void Session::current_thread_exiting() {
    if (!active_) return;
    registry_.thread_exiting(current_tid(), compat::thread_state_unique_id(PyThreadState_Get()));
}

int Session::current_thread_registered() {
    return active_ && registry_.is_registered(current_tid()) ? 1 : 0;
}

void Session::after_fork_in_child() {
    Session& s = instance();
    HandlerState& st = handler_state();
    if (!s.active_) return;
    st.active.store(false);
    st.inflight.store(0);
    restore_signal_handler_after_fork();
    s.registry_.forget_after_fork();
    s.service_running_ = false;  // that thread does not exist in the child
    s.service_paused_for_fork_ = false;
    compat::remove_code_death_hook();
    s.remove_gc_callback();
    s.release_everything();
}

}  // namespace spprof
