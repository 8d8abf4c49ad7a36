// stats_schema.h: the one declaration of what stats() returns.
//
// Every key of the native stats dict (and of stop()'s result, which adds
// the sample columns listed in RESULT_KEYS below), with its C++ type.
// struct Stats is generated from this table, and so is the dict
// (result_export.cpp). The Python side reads it through one table too
// (src/spprof/_results.py, STATS_KEYS); tests/test_surface.py checks that
// the two agree key for key and type for type.
#pragma once

#include <cstdint>

// X(key, C++ type)
#define SPPROF_STATS_FIELDS(X)                                                    \
    X(active, bool)                                                               \
    X(paused, bool)                                                               \
    X(backend, const char*)                                                       \
    X(backend_note, const char*)   /* why auto did not use perf_event, or "" */   \
    X(mode, const char*)           /* cpu or wall */                              \
    X(interval_ns, int64_t)                                                       \
    X(signals, uint64_t)           /* SIGPROFs from our timers */                 \
    X(captured_samples, uint64_t)  /* stacks the handler recorded */              \
    X(collected_samples, uint64_t) /* resolved and kept */                        \
    X(buffer_dropped, uint64_t)                                                   \
    X(buffer_dropped_weight, uint64_t)                                            \
    X(memory_dropped, uint64_t)                                                   \
    X(memory_dropped_weight, uint64_t)                                            \
    X(timer_overruns, uint64_t)                                                   \
    X(overruns_at_delete, uint64_t)                                               \
    X(undelivered_weight, uint64_t) /* intervals used, signal not come, at stop */ \
    X(sigprof_blocked_threads, uint64_t)                                          \
    X(no_thread_state, uint64_t)                                                  \
    X(walk_errors, uint64_t)                                                      \
    X(truncated_stacks, uint64_t)                                                 \
    X(recovered_walks, uint64_t)                                                  \
    X(paused_signals, uint64_t)                                                   \
    X(foreign_signals, uint64_t)                                                  \
    X(stale_signals, uint64_t)                                                    \
    X(early_signals, uint64_t)                                                    \
    X(gc_samples, uint64_t)                                                       \
    X(subinterpreter_samples, uint64_t)                                           \
    X(native, bool)                /* native frames in the samples */             \
    X(native_samples, uint64_t)    /* samples with native frames */               \
    X(native_uncovered, uint64_t)  /* ... cut at a frame without unwind table */  \
    X(timers_created, uint64_t)                                                   \
    X(timers_deleted, uint64_t)                                                   \
    X(timer_create_failures, uint64_t)                                            \
    X(last_create_errno, uint64_t)                                                \
    X(perf_timers_created, uint64_t)                                              \
    X(perf_fallbacks, uint64_t)                                                   \
    X(native_threads, uint64_t)    /* threads without Python that got a timer */  \
    X(perf_descriptors_lost, uint64_t)                                            \
    X(perf_include_kernel, bool)                                                  \
    X(registered_threads, int64_t)                                                \
    X(handler_ns, int64_t)                                                        \
    X(service_cpu_ns, int64_t)                                                    \
    X(service_wakes, uint64_t)                                                    \
    X(service_gil_ticks, uint64_t)                                                \
    X(duration_ns, int64_t)                                                       \
    X(process_cpu_ns, int64_t)                                                    \
    X(paused_ns, int64_t)                                                         \
    X(buffer_capacity, int64_t)                                                   \
    X(memory_bytes, int64_t)                                                      \
    X(memory_limit_bytes, int64_t)                                                \
    X(allocation_failures, uint64_t)                                              \
    X(wall_ticks, uint64_t)        /* wall mode: the reader's wake-ups */         \
    X(wall_late_ticks, uint64_t)   /* ... a whole interval or more late */        \
    X(off_cpu_samples, uint64_t)   /* ... samples of time off CPU */              \
    X(gil_wait_samples, uint64_t)  /* ... of those, waiting for the GIL */        \
    X(torn_walks, uint64_t)        /* ... thread moved while read */              \
    X(wall_dropped, uint64_t)      /* ... buffer full */                          \
    X(wall_dropped_weight, uint64_t)                                              \
    X(wall_exit_charges, uint64_t) /* wall: time from a last tick to an exit */ \
    X(state_reads, uint64_t)       /* ... /proc syscall files read */             \
    X(state_files_lost, uint64_t)  /* ... closed by the program, reopened */      \
    X(wall_cpu_ns, int64_t)        /* ... the reader's CPU time */

namespace spprof {

struct Stats {
#define SPPROF_STATS_MEMBER(key, type) type key{};
    SPPROF_STATS_FIELDS(SPPROF_STATS_MEMBER)
#undef SPPROF_STATS_MEMBER
};

}  // namespace spprof
