// result_export.h: the session's numbers and samples as Python objects.
//
// The stats dict is generated from the one table in stats_schema.h; stop()'s
// result is that dict plus the sample columns (the keys of RESULT_KEYS in
// src/spprof/_results.py): strings, frames, stacks and the per-sample
// columns as packed int64 arrays, thread names, and the monotonic time the
// capture times count from. GIL held.
#pragma once

#include <Python.h>

#include <cstdint>

#include "stats_schema.h"

namespace spprof {

class Aggregator;
class ThreadNames;

// New reference, or nullptr with an exception set.
PyObject* stats_dict(const Stats& stats);
// Add the sample columns to `result`; false with an exception set (a
// std::bad_alloc may also escape: the caller keeps the samples then).
bool add_sample_columns(PyObject* result, const Aggregator& aggregator, const ThreadNames& names,
                        int64_t start_monotonic_ns);

}  // namespace spprof
