#include "session.h"

#include "compat_internal.h"

#include <errno.h>
#include <string.h>

#include <algorithm>
#include <exception>
#include <new>

#include "compat.h"
#include "messages.h"
#include "os_clock.h"
#include "perf_timer.h"
#include "result_export.h"
#include "sampler.h"
#include "sigprof_disposition.h"
#include "signal_handler.h"
#include "unwind_tables.h"

namespace spprof {

namespace {
// How long after an exec began spprof concludes that it failed (execve
// replaces the process long before; only then are timers armed again).
constexpr int64_t kExecGraceNs = 1'000'000'000;
}  // namespace

Session& Session::instance() {
    static Session* s = new Session();  // never destroyed: outlives atexit
    return *s;
}

void Session::code_death_trampoline(PyCodeObject* code) { instance().on_code_death(code); }

void Session::on_code_death(PyCodeObject* code) {
    HandlerState& st = handler_state();
    uint64_t epoch = st.code_epoch.fetch_add(1, std::memory_order_acq_rel) + 1;
    size_t budget = resolver_budget(run_.options.memory_limit_bytes, memory_use());
    size_t used = aggregator_.approx_bytes() + codes_.approx_bytes() + resolver_.approx_bytes();
    codes_.on_code_death(code, epoch, used < budget ? budget - used : 0);
}

void Session::warn(const std::string& message) {
    try {
        WarningQueue::instance().push(message, service_.is_current_thread());
    } catch (const std::bad_alloc&) {
        // Out of memory: the warning is dropped, never the caller's work
        // (stop() must end the session and keep its samples).
    }
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
    if (!thread_names_.intern()) return false;
    run_ = SessionRun{};
    run_.options = options;
    aggregator_.clear();
    codes_.clear();
    resolver_.clear();
    resolver_.set_thread_label([this](pid_t tid) {
        return registry_.is_native(tid) ? thread_names_.native_label(tid) : std::string();
    });
    thread_names_.clear();
    service_.reset_counters();
    if (const char* why = options.native ? native::prepare_native_unwinding() : nullptr) {
        set_profiler_error(std::string("native frames are not available: ") + why);
        return false;
    }
    const size_t slot_bytes = SampleBuffer::slot_bytes(options.native);
    if (!buffer_.init(buffer_slots(options.memory_limit_bytes, slot_bytes), options.native)) {
        set_profiler_error(std::string("cannot allocate the sample buffer: ") + strerror(errno));
        return false;
    }
    st.counters.reset();
    st.buffer = &buffer_;
    st.wake_word.store(0);
    st.wake_enabled.store(true);
    st.wake_threshold = std::max<size_t>(1, buffer_.capacity() / 4);
    st.wake_pending.store(false);
    st.paused.store(false);
    st.native.store(options.native);
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
        } else {
            run_.backend_note = "perf_event is not available here: " + why;
        }
    }
    if (backend == ThreadRegistry::Backend::timer_create && options.interval_ns < 1'000'000) {
        // A POSIX CPU timer is checked on scheduler ticks (1 to 10 ms): it
        // cannot sample more often, whatever it is asked.
        release_everything();
        set_profiler_error(
            options.backend == StartOptions::Backend::timer_create
                ? "intervals below 1 ms need backend='perf_event' (or 'auto' where perf_event is "
                  "available): backend='timer_create' fires at most once per scheduler tick"
                : "intervals below 1 ms need the perf_event backend, and " + run_.backend_note +
                      ". Use interval_ms=1 or more");
        return false;
    }
    st.main_interp = PyThreadState_GetInterpreter(PyThreadState_Get());
    st.gil = GilView{static_cast<const char*>(
                         spprof_gil_address(static_cast<PyInterpreterState*>(st.main_interp))),
                     spprof_gil_locked_offset(), spprof_gil_holder_offset()};
    st.gc_tid.store(0);
    st.gc_frame.store(nullptr);

    if (!compat::install_code_death_hook(code_death_trampoline)) {
        // Only a full set of code watchers fails here.
        if (PyErr_Occurred()) PyErr_Clear();  // ours: replaced by a precise error below
        release_everything();
        set_profiler_error("cannot watch code objects for the session (no code watcher is free; "
                           "CPython allows 8 per interpreter and other tools use them too)");
        return false;
    }
    if (!gc_.install()) {
        compat::remove_code_death_hook();
        release_everything();
        return false;
    }
    std::string error;
    if (!install_signal_handler(options.take_over_sigprof, &error)) {
        compat::remove_code_death_hook();
        gc_.remove();
        release_everything();
        set_profiler_error(error);
        return false;
    }
    run_.start_mono_ns = monotonic_now_ns();
    run_.start_process_cpu_ns = process_cpu_now_ns();
    registry_.begin(session, options.interval_ns, 0, backend, options.mode == StartOptions::Mode::wall);
    st.active.store(true, std::memory_order_seq_cst);
    active_ = true;

    // The thread that starts the session first: when timers are scarce
    // (RLIMIT_SIGPENDING, descriptors), the one that asked gets one.
    registry_.register_thread(current_tid(), compat::thread_state_unique_id(PyThreadState_Get()),
                              PyThreadState_Get());
    registry_.sync_with_interpreter(PyThreadState_GetInterpreter(PyThreadState_Get()));
    if (registry_.size() == 0) {
        RegistryCounters c = registry_.counters();
        return fail_start(c.last_create_errno
                              ? "cannot create any sampling timer, so nothing can be profiled: " +
                                    timer_failure_message(c.last_create_errno)
                              : std::string("no Python thread was found to profile"));
    }

    WarningQueue::instance().set_category(options.warning_category);
    thread_names_.update();
    run_.health.check(registry_, options.interval_ns, thread_names_, [this](const std::string& m) { warn(m); });

    int err = service_.start(&registry_, &Session::tick_on_service_thread);
    if (err != 0) return fail_start(std::string("cannot start the service thread: ") + strerror(err));
    wall_.reset_counters();
    if (options.mode == StartOptions::Mode::wall) {
        PyInterpreterState* interp = PyThreadState_GetInterpreter(PyThreadState_Get());
        wall_.set_paused(false);
        err = wall_.start(&registry_, &buffer_, options.interval_ns, spprof_gil_address(interp),
                          spprof_gil_size());
        if (err != 0) {
            return fail_start(std::string("cannot start the wall-clock reader thread: ") +
                              strerror(err));
        }
    }
    if (WarningQueue::instance().flush() != 0) {
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

bool Session::fail_start(const std::string& message) {
    PyObject* discarded = stop();
    Py_XDECREF(discarded);
    PyErr_Clear();
    set_profiler_error(message);
    return false;
}

void Session::tick_on_service_thread() { instance().service_tick(false); }

void Session::service_tick(bool force_names) {
    // Nothing thrown here may reach the service thread's top (that would
    // terminate the program): on allocation failure the tick is cut short
    // and the next one tries again; samples are dropped and counted.
    try {
        service_tick_unsafe(force_names);
    } catch (const std::exception&) {
        ++run_.tick_failures;
        if (PyErr_Occurred()) PyErr_Clear();  // ours, half-raised by the failed step
    }
}

void Session::service_tick_unsafe(bool force_names) {
    if (!active_) return;
    HandlerState& st = handler_state();
    if (exec_pending_.load() && monotonic_now_ns() - run_.exec_at_ns > kExecGraceNs) {
        resume_after_failed_exec();  // still here: the exec failed
    }
    WarnFn warn_fn = [this](const std::string& m) { warn(m); };
    // The program may close or replace any descriptor (a daemonizer's
    // closerange, dup2): ours are checked, never touched if not ours, and
    // their threads get new timers in the scan below.
    run_.health.check_descriptors(registry_, warn_fn);
    registry_.sync_with_interpreter(PyThreadState_GetInterpreter(PyThreadState_Get()));
    if (run_.options.native && st.native.load() && !native::keep_unwind_tables_current()) {
        st.native.store(false);  // the program closed libunwind's pipe: it would reopen on the program's
        warn("native frames stopped: the program closed or replaced libunwind's descriptors");
    }
    gc_.keep();
    thread_names_.refresh(registry_, force_names);
    run_.resolved_samples += resolver_.drain(buffer_, codes_, aggregator_,
                                             resolver_budget(run_.options.memory_limit_bytes, memory_use()),
                                             &run_.health.samples_by_thread());
    warn_about_memory();
    run_.health.check(registry_, run_.options.interval_ns, thread_names_, warn_fn);
    // Tombstones older than every capture that can still be in flight are
    // no longer needed: read the epoch, then confirm nothing is in flight
    // and nothing is left to resolve.
    uint64_t epoch = st.code_epoch.load(std::memory_order_seq_cst);
    if (st.inflight.load(std::memory_order_seq_cst) == 0 && buffer_.empty_for_consumer()) {
        codes_.prune_tombstones(epoch);
    }
}

MemoryUse Session::memory_use() const {
    return MemoryUse{buffer_.bytes(), aggregator_.approx_bytes(), codes_.approx_bytes(),
                     resolver_.approx_bytes(), run_.health.entries() + thread_names_.size()};
}

void Session::warn_about_memory() {
    if (run_.warned_memory || aggregator_.dropped_samples() == 0) return;
    run_.warned_memory = true;
    try {
        warn(memory_warning(run_.options.memory_limit_bytes, resolver_.allocation_failures() > 0));
    } catch (const std::bad_alloc&) {
        // the message itself could not be made: see warn()
    }
}

bool Session::paused() const { return active_ && handler_state().paused.load(); }

bool Session::pause() {
    if (!active_ || handler_state().paused.load()) return false;
    // Disarm first: a signal already queued is discarded by the handler.
    // A handler that passed the check before may still be reading a
    // perf_event grid, which disarming moves: wait for it.
    handler_state().paused.store(true);
    wall_.set_paused(true);
    wait_for_handlers_to_finish();
    if (!exec_pending_.load()) registry_.set_interval(0);
    run_.paused_at_ns = monotonic_now_ns();
    return true;
}

bool Session::resume() {
    if (!active_ || !handler_state().paused.load()) return false;
    if (!exec_pending_.load()) registry_.set_interval(run_.options.interval_ns);
    run_.paused_total_ns += monotonic_now_ns() - run_.paused_at_ns;
    handler_state().paused.store(false);
    if (!exec_pending_.load()) wall_.set_paused(false);
    return true;
}

PyObject* Session::stop() {
    if (!active_ && unbuilt_) return finish_result();
    if (!active_) {
        PyErr_SetString(PyExc_RuntimeError, "the profiler is not running; call start() first");
        return nullptr;
    }
    HandlerState& st = handler_state();
    wall_.stop();
    service_.stop();
    resume_after_failed_exec();  // our handler back, so the restore below finds it
    thread_names_.update();
    if (st.paused.load()) run_.paused_total_ns += monotonic_now_ns() - run_.paused_at_ns;
    int64_t end_mono = monotonic_now_ns();
    int64_t process_cpu = process_cpu_now_ns() - run_.start_process_cpu_ns;

    // Order matters: no new samples, no timers, no pending signals, no
    // handler running; only then put the previous disposition back.
    st.active.store(false, std::memory_order_seq_cst);
    active_ = false;  // from here on nothing may register threads again
    wait_for_handlers_to_finish();  // none charges a grid when end() reads what timers owe
    registry_.end();
    restore_signal_handler();
    wait_for_handlers_to_finish();
    run_.resolved_samples += resolver_.drain(buffer_, codes_, aggregator_,
                                             resolver_budget(run_.options.memory_limit_bytes, memory_use()));
    warn_about_memory();
    compat::remove_code_death_hook();
    gc_.remove();

    run_.stopped_duration_ns = end_mono - run_.start_mono_ns;
    run_.stopped_process_cpu_ns = process_cpu;
    unbuilt_ = true;
    return finish_result();
}

PyObject* Session::finish_result() {
    // The session has ended (no timers, no handler, nothing pending); its
    // samples are turned into the result dict. Out of memory, they are
    // kept (unbuilt_) and the next stop() tries again.
    PyObject* result = nullptr;
    try {
        result = stats_dict(collect_stats(*this));
        if (result != nullptr && !add_sample_columns(result, aggregator_, thread_names_, run_.start_mono_ns)) {
            Py_CLEAR(result);
        }
    } catch (const std::bad_alloc&) {
        Py_CLEAR(result);
        PyErr_NoMemory();
    }
    if (result == nullptr && PyErr_ExceptionMatches(PyExc_MemoryError)) {
        return nullptr;  // kept for a retry (has_unbuilt_result)
    }
    unbuilt_ = false;
    release_everything();
    if (WarningQueue::instance().flush() != 0) Py_CLEAR(result);
    return result;
}

void Session::release_everything() {
    HandlerState& st = handler_state();
    st.active.store(false);
    wait_for_handlers_to_finish();
    st.buffer = nullptr;
    st.native.store(false);
    st.wake_enabled.store(false);
    active_ = false;
    buffer_.release_memory();
    codes_.clear();
    resolver_.clear();
    aggregator_.clear();
    thread_names_.clear();
}

PyObject* Session::stats() {
    resume_service_after_fork();
    if (active_) service_tick(false);
    if (WarningQueue::instance().flush() != 0) return nullptr;
    return stats_dict(collect_stats(*this));
}

int Session::register_current_thread(uint64_t birth_mark) {
    if (!active_) return 0;
    resume_service_after_fork();
    PyThreadState* ts = PyThreadState_Get();
    const uint64_t uid = compat::thread_state_unique_id(ts);
    return registry_.register_thread(current_tid(), uid, ts, birth_mark) ? 1 : 0;
}

int Session::unregister_current_thread() {
    if (!active_) return 0;
    return registry_.unregister_thread(current_tid()) ? 1 : 0;
}

void Session::current_thread_exiting() {
    if (!active_) return;
    const pid_t tid = current_tid();
    const uint64_t uid = compat::thread_state_unique_id(PyThreadState_Get());
    wall_.thread_exiting(tid, uid);  // before the registry forgets it
    registry_.thread_exiting(tid, uid);
}

int Session::current_thread_registered() {
    return active_ && registry_.is_registered(current_tid()) ? 1 : 0;
}

}  // namespace spprof
