// os_clock.h: clocks and thread ids, and the per-thread C++ runtime state.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace spprof {

int64_t monotonic_now_ns();
int64_t process_cpu_now_ns();
int64_t thread_cpu_now_ns();  // the calling thread's CPU time
pid_t current_tid();

// Make sure the calling thread can throw (and so report) std::bad_alloc
// when memory has run out: the C++ runtime keeps its per-thread exception
// state in thread-local storage that glibc allocates on first use for a
// library loaded at run time, and aborts the process ("cannot allocate
// memory for thread-local data") if that allocation fails. Touching it
// early, while memory is there, avoids that. Cheap; call on every thread
// that runs spprof's native code.
void prepare_thread_for_exceptions();

}  // namespace spprof
