#include "result_export.h"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

#include "aggregator.h"
#include "perf_timer.h"
#include "session.h"
#include "signal_handler.h"
#include "thread_names.h"

namespace spprof {

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

namespace {
PyObject* to_python(bool v) { return PyBool_FromLong(v); }
PyObject* to_python(uint64_t v) { return PyLong_FromUnsignedLongLong(v); }
PyObject* to_python(int64_t v) { return PyLong_FromLongLong(v); }
PyObject* to_python(const char* v) { return PyUnicode_FromString(v ? v : ""); }
}  // namespace

PyObject* stats_dict(const Stats& stats) {
    PyObject* result = PyDict_New();
    if (result == nullptr) return nullptr;
    bool ok = true;
#define SPPROF_STATS_PUT(key, type) ok = ok && put(result, #key, to_python(stats.key));
    SPPROF_STATS_FIELDS(SPPROF_STATS_PUT)
#undef SPPROF_STATS_PUT
    if (!ok) Py_CLEAR(result);
    return result;
}

bool add_sample_columns(PyObject* result, const Aggregator& aggregator, const ThreadNames& names,
                        int64_t start_monotonic_ns) {
    const auto& strings = aggregator.strings();
    const auto& frames = aggregator.frames();
    const auto& stacks = aggregator.stacks();
    const auto& samples = aggregator.samples();

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
    frame_cols.reserve(frames.size() * 4);
    for (const FrameKey& f : frames) {
        frame_cols.push_back(f.name);
        frame_cols.push_back(f.file);
        frame_cols.push_back(f.line);
        frame_cols.push_back(f.module == kNoModule ? -1 : int64_t{f.module});
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
    std::vector<int64_t> ts, tid, stack, weight, state, gil;
    ts.reserve(samples.size());
    tid.reserve(samples.size());
    stack.reserve(samples.size());
    weight.reserve(samples.size());
    state.reserve(samples.size());
    gil.reserve(samples.size());
    for (const SampleRecord& r : sorted) {
        ts.push_back(r.timestamp_ns);
        tid.push_back(r.tid);
        stack.push_back(r.stack);
        weight.push_back(r.weight);
        state.push_back(static_cast<int64_t>(r.state));
        gil.push_back(static_cast<int64_t>(r.gil));
    }
    PyObject* py_names = PyDict_New();
    for (const auto& [t, name] : names.names()) {
        if (py_names == nullptr) break;
        PyObject* k = PyLong_FromLong(t);
        PyObject* v = PyUnicode_DecodeUTF8(name.data(), static_cast<Py_ssize_t>(name.size()), "replace");
        if (k == nullptr || v == nullptr || PyDict_SetItem(py_names, k, v) < 0) Py_CLEAR(py_names);
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    bool ok = put(result, "strings", py_strings) && put(result, "frames", int64_bytes(frame_cols)) &&
              put(result, "stacks", int64_bytes(stack_cols)) &&
              put(result, "timestamps", int64_bytes(ts)) && put(result, "thread_ids", int64_bytes(tid)) &&
              put(result, "stack_ids", int64_bytes(stack)) && put(result, "weights", int64_bytes(weight)) &&
              put(result, "states", int64_bytes(state)) && put(result, "gil", int64_bytes(gil)) &&
              put(result, "thread_names", py_names) &&
              put(result, "start_monotonic_ns", PyLong_FromLongLong(start_monotonic_ns));
    return ok;
}


Stats collect_stats(Session& session) {
    Session& x = session;
    HandlerCounters& c = handler_state().counters;
    RegistryCounters rc = x.registry_.counters();
    int64_t now = monotonic_now_ns();
    bool finished = !x.active_ && x.unbuilt_;  // stop() building its result
    Stats s;
    s.active = x.active_;
    s.paused = x.paused();
    s.backend = x.registry_.backend() == ThreadRegistry::Backend::perf_event ? "perf_event" : "timer_create";
    s.backend_note = x.run_.backend_note.c_str();
    s.mode = x.run_.options.mode == StartOptions::Mode::wall ? "wall" : "cpu";
    s.interval_ns = x.run_.options.interval_ns;
    s.signals = c.signals.load();
    s.captured_samples = c.samples.load();
    s.collected_samples = x.aggregator_.samples().size();
    s.buffer_dropped = c.dropped.load();
    s.buffer_dropped_weight = c.dropped_weight.load();
    s.memory_dropped = x.aggregator_.dropped_samples();
    s.memory_dropped_weight = x.aggregator_.dropped_weight();
    s.timer_overruns = c.overruns.load();
    s.overruns_at_delete = rc.overruns_at_delete;
    s.undelivered_weight = rc.undelivered_weight;
    s.sigprof_blocked_threads = x.run_.health.blocked_threads();
    s.no_thread_state = c.no_thread_state.load();
    s.walk_errors = c.walk_errors.load();
    s.truncated_stacks = c.truncated.load();
    s.recovered_walks = c.recovered_walks.load();
    s.paused_signals = c.paused_signals.load();
    s.foreign_signals = c.foreign_signals.load();
    s.stale_signals = c.stale_signals.load();
    s.early_signals = c.early_signals.load();
    s.gc_samples = c.gc_samples.load();
    s.subinterpreter_samples = c.subinterpreter_samples.load();
    s.native = x.run_.options.native;
    s.native_samples = c.native_samples.load();
    s.native_uncovered = c.native_uncovered.load();
    s.timers_created = rc.timers_created;
    s.timers_deleted = rc.timers_deleted;
    s.timer_create_failures = rc.create_failures;
    s.last_create_errno = static_cast<uint64_t>(rc.last_create_errno);
    s.perf_timers_created = rc.perf_timers_created;
    s.perf_fallbacks = rc.perf_fallbacks;
    s.native_threads = rc.native_threads;
    s.perf_descriptors_lost = rc.perf_descriptors_lost;
    s.perf_include_kernel = perf_events_include_kernel();
    s.registered_threads = x.active_ ? static_cast<int64_t>(x.registry_.size()) : 0;
    s.handler_ns = c.handler_ns.load();
    s.service_cpu_ns = x.service_.cpu_ns();
    s.service_wakes = x.service_.wakes();
    s.service_gil_ticks = x.service_.gil_ticks();
    s.duration_ns = finished ? x.run_.stopped_duration_ns : x.active_ ? now - x.run_.start_mono_ns : 0;
    s.process_cpu_ns = finished ? x.run_.stopped_process_cpu_ns
                       : x.active_ ? process_cpu_now_ns() - x.run_.start_process_cpu_ns
                                 : 0;
    s.paused_ns = x.run_.paused_total_ns + (x.paused() ? now - x.run_.paused_at_ns : 0);
    s.buffer_capacity = static_cast<int64_t>(x.buffer_.capacity());
    s.memory_bytes = static_cast<int64_t>(memory_in_use(x.memory_use()));
    s.memory_limit_bytes = static_cast<int64_t>(x.run_.options.memory_limit_bytes);
    s.allocation_failures = x.resolver_.allocation_failures() + x.run_.tick_failures + x.codes_.lost_deaths();
    WallCounters w = x.wall_.counters();
    s.wall_ticks = w.ticks;
    s.wall_late_ticks = w.late_ticks;
    s.off_cpu_samples = w.idle_samples;
    s.gil_wait_samples = w.gil_samples;
    s.torn_walks = w.torn_walks;
    s.wall_dropped = w.dropped;
    s.wall_dropped_weight = w.dropped_weight;
    s.state_reads = w.syscall_reads;
    s.state_files_lost = w.lost_state_files;
    s.wall_exit_charges = w.exit_charges;
    s.wall_cpu_ns = w.cpu_ns;
    return s;
}

}  // namespace spprof
